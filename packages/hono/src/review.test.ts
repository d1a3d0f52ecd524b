// Adversarial review of the hono adapter on a real @hono/node-server: what middleware before it sets (c.header,
// setCookie), the detached refresh and HEAD fill, the hit-for-pass fast path, streams, onError over a stale copy.
import { request as httpRequest } from 'node:http'
import { Hono } from 'hono'
import { setCookie } from 'hono/cookie'
import { describe, expect, it } from 'vitest'
import { closeAfterEach, listen, newCache } from './fixtures/server.js'
import { cacheResponse } from './index.js'

interface Raw {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

closeAfterEach()

function raw(base: string, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
      )
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

function status(res: Raw): Record<string, string | true> {
  const header = res.headers['cache-status']
  expect(typeof header).toBe('string')
  const params: Record<string, string | true> = {}
  for (const part of String(header).split(';').slice(1)) {
    const p = part.trim()
    const eq = p.indexOf('=')
    if (eq < 0) params[p] = true
    else params[p.slice(0, eq)] = p.slice(eq + 1)
  }
  return params
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** An app whose first middleware gives each request its own id, as request-id middleware does. */
function withRequestIds(): Hono {
  const app = new Hono()
  let n = 0
  app.use(async (c, next) => {
    c.header('x-request-id', `req-${++n}`)
    await next()
  })
  return app
}

describe('cacheResponse (hono) review', () => {
  it('c.header() before next() in earlier middleware: each client gets its own value on misses and hits', async () => {
    const app = withRequestIds()
    app.get('/p', cacheResponse(newCache(), { ttl: '1m' }), (c) => c.text('page'))
    const base = await listen(app)
    const first = await raw(base, '/p')
    expect(first.headers['x-request-id']).toBe('req-1')
    const second = await raw(base, '/p')
    expect(status(second).hit).toBe(true)
    expect(second.headers['x-request-id']).toBe('req-2')
  })

  it('a HEAD miss fills the entry through a detached GET without storing that GET’s per-request headers', async () => {
    const app = withRequestIds()
    app.get('/p', cacheResponse(newCache(), { ttl: '1m' }), (c) => c.text('page'))
    const base = await listen(app)
    const head = await raw(base, '/p', {}, 'HEAD')
    expect(head.status).toBe(200)
    expect(head.body).toBe('')
    expect(head.headers['content-length']).toBe('4')
    const get = await raw(base, '/p')
    expect(status(get).hit).toBe(true)
    expect(get.body).toBe('page')
    // req-1 is the HEAD, req-2 the detached GET it made, req-3 this one.
    expect(get.headers['x-request-id']).toBe('req-3')
  })

  it('a background refresh (stale-while-revalidate) does not store its own per-request headers', async () => {
    const app = withRequestIds()
    let version = 0
    app.get('/p', cacheResponse(newCache(), { ttl: 1, staleWhileRevalidate: '1m' }), (c) => c.text(`v${++version}`))
    const base = await listen(app)
    expect((await raw(base, '/p')).body).toBe('v1')
    await sleep(1100)
    const stale = await raw(base, '/p')
    expect(stale.body).toBe('v1')
    expect(Number(status(stale).ttl)).toBeLessThan(0)
    await sleep(100)
    const fresh = await raw(base, '/p')
    expect(fresh.body).toBe('v2')
    expect(status(fresh).hit).toBe(true)
    // req-1 miss, req-2 stale, req-3 the detached refresh, req-4 this one.
    expect(fresh.headers['x-request-id']).toBe('req-4')
  })

  it('a background refresh in a sub-app mounted with app.route() refreshes the full URL', async () => {
    const api = new Hono()
    let version = 0
    api.get('/item', cacheResponse(newCache(), { ttl: 1, staleWhileRevalidate: '1m' }), (c) => c.text(`v${++version}`))
    const app = new Hono()
    app.route('/api', api)
    app.get('/item', (c) => c.text('WRONG ROUTE'))
    const base = await listen(app)
    expect((await raw(base, '/api/item')).body).toBe('v1')
    await sleep(1100)
    expect((await raw(base, '/api/item')).body).toBe('v1')
    await sleep(100)
    const fresh = await raw(base, '/api/item')
    expect(fresh.body).toBe('v2')
    expect(status(fresh).hit).toBe(true)
  })

  it('with scope public, a cookie set by the handler is stored without it and never replayed', async () => {
    const app = new Hono()
    let n = 0
    app.get('/p', cacheResponse(newCache(), { ttl: '1m', scope: 'public' }), (c) => {
      setCookie(c, 'visit', `v${++n}`)
      return c.text('page')
    })
    const base = await listen(app)
    const first = await raw(base, '/p')
    expect(String(first.headers['set-cookie'])).toContain('visit=v1')
    const second = await raw(base, '/p')
    expect(status(second).hit).toBe(true)
    expect(second.headers['set-cookie']).toBeUndefined()
  })

  it('the hit-for-pass fast path keeps Cache-Status when the handler returns a plain Response', async () => {
    const app = new Hono()
    let calls = 0
    app.get(
      '/nostore',
      cacheResponse(newCache(), { ttl: '1m' }),
      () => new Response(`n${++calls}`, { headers: { 'cache-control': 'no-store', 'x-own': 'yes' } }),
    )
    const base = await listen(app)
    const seen: unknown[] = []
    for (let i = 1; i <= 6; i++) {
      const res = await raw(base, '/nostore')
      expect(res.body).toBe(`n${i}`)
      expect(res.headers['x-own']).toBe('yes')
      seen.push(res.headers['cache-status'] === undefined ? undefined : status(res).detail)
    }
    // The first three are judged (forward), the next ones take pass(): all must say why they were not stored.
    expect(seen).toEqual(Array(6).fill('no-store'))
  })

  it('the hit-for-pass fast path keeps Cache-Status and earlier headers with c.text(), and onError still answers', async () => {
    const app = withRequestIds()
    app.onError((_e, c) => c.text('oops', 500))
    let calls = 0
    let fail = false
    app.get('/nostore', cacheResponse(newCache(), { ttl: '1m' }), (c) => {
      calls++
      if (fail) throw new Error('boom')
      c.header('cache-control', 'no-store')
      return c.text(`n${calls}`)
    })
    const base = await listen(app)
    for (let i = 1; i <= 6; i++) {
      const res = await raw(base, '/nostore')
      expect(res.body).toBe(`n${i}`)
      expect(res.headers['x-request-id']).toBe(`req-${i}`)
      expect(status(res).detail).toBe('no-store')
    }
    fail = true
    const failed = await raw(base, '/nostore')
    expect(failed.status).toBe(500)
    expect(failed.body).toBe('oops')
  })

  it('HEAD hit and HEAD 304 keep content-length and send no body', async () => {
    const app = new Hono()
    app.get('/doc', cacheResponse(newCache(), { ttl: '1m' }), (c) => {
      c.header('etag', '"v1"')
      return c.text('0123456789')
    })
    const base = await listen(app)
    await raw(base, '/doc')
    const head = await raw(base, '/doc', {}, 'HEAD')
    expect(status(head).hit).toBe(true)
    expect(head.body).toBe('')
    expect(head.headers['content-length']).toBe('10')
    const cond = await raw(base, '/doc', { 'if-none-match': '"v1"' })
    expect(cond.status).toBe(304)
    expect(cond.body).toBe('')
    expect(cond.headers.etag).toBe('"v1"')
  })

  it('a ReadableStream that fails midway is never stored', async () => {
    const app = new Hono()
    let calls = 0
    app.get('/s', cacheResponse(newCache(), { ttl: '1m' }), (c) => {
      const n = ++calls
      const stream = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(new TextEncoder().encode('a;'))
          await sleep(20)
          if (n === 1) return controller.error(new Error('source died'))
          controller.enqueue(new TextEncoder().encode('b'))
          controller.close()
        },
      })
      return c.body(stream, 200, { 'content-type': 'text/plain' })
    })
    const base = await listen(app)
    await raw(base, '/s').catch(() => undefined)
    const second = await raw(base, '/s')
    expect(second.body).toBe('a;b')
    expect(status(second).hit).toBeUndefined()
    const third = await raw(base, '/s')
    expect(status(third).hit).toBe(true)
    expect(third.body).toBe('a;b')
  })

  it('a streamed body is stored whole and replayed byte for byte', async () => {
    const app = new Hono()
    app.get('/s', cacheResponse(newCache(), { ttl: '1m' }), (c) => {
      const stream = new ReadableStream<Uint8Array>({
        async start(controller) {
          for (let i = 0; i < 20; i++) {
            controller.enqueue(new TextEncoder().encode(`${i};`))
            if (i % 5 === 0) await sleep(2)
          }
          controller.close()
        },
      })
      return c.body(stream)
    })
    const base = await listen(app)
    const want = Array.from({ length: 20 }, (_, i) => `${i};`).join('')
    expect((await raw(base, '/s')).body).toBe(want)
    const hit = await raw(base, '/s')
    expect(status(hit).hit).toBe(true)
    expect(hit.body).toBe(want)
    expect(hit.headers['content-length']).toBe(String(want.length))
  })

  it('stale-if-error with a thrown handler: onError’s answer is dropped, the stale copy goes out clean', async () => {
    const app = new Hono()
    app.onError((_e, c) => {
      c.header('retry-after', '5')
      return c.text('down', 503)
    })
    let fail = false
    app.get('/p', cacheResponse(newCache(), { ttl: 1, staleIfError: '1m' }), (c) => {
      if (fail) throw new Error('db down')
      return c.json({ ok: true })
    })
    const base = await listen(app)
    await raw(base, '/p')
    await sleep(1100)
    fail = true
    const stale = await raw(base, '/p')
    expect(stale.status).toBe(200)
    expect(JSON.parse(stale.body)).toEqual({ ok: true })
    expect(stale.headers['content-type']).toMatch(/json/)
    expect(stale.headers['retry-after']).toBeUndefined()
    expect(status(stale).detail).toBe('stale-if-error')
  })
})
