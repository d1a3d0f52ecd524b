// hono-specific behaviour of cacheResponse on a real @hono/node-server: c.json, immutable Response headers, and
// hono's own etag()/compress() middleware on either side of it.
import { request as httpRequest } from 'node:http'
import { gunzipSync } from 'node:zlib'
import { isCacheError } from '@cache/core'
import { Hono } from 'hono'
import { compress } from 'hono/compress'
import { setCookie } from 'hono/cookie'
import { cors } from 'hono/cors'
import { etag } from 'hono/etag'
import { describe, expect, it } from 'vitest'
import { closeAfterEach, listen, newCache } from './fixtures/server.js'
import { cacheResponse } from './index.js'

interface Raw {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

closeAfterEach()

/** node:http, not fetch: fetch would decode gzip bodies behind our back. */
function raw(base: string, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** The Cache-Status member as a name, flags and params (never compared as a whole string). */
function cacheStatus(res: Raw): { name: string; params: Record<string, string | true> } {
  const header = res.headers['cache-status']
  expect(typeof header).toBe('string')
  const [name = '', ...rest] = String(header)
    .split(';')
    .map((part) => part.trim())
  const params: Record<string, string | true> = {}
  for (const part of rest) {
    const eq = part.indexOf('=')
    if (eq < 0) params[part] = true
    else params[part.slice(0, eq)] = part.slice(eq + 1)
  }
  return { name, params }
}

const isHit = (res: Raw) => cacheStatus(res).params.hit === true

describe('cacheResponse (hono)', () => {
  it('rejects a missing cache with E_INVALID_OPTION', () => {
    let caught: unknown
    try {
      cacheResponse(undefined as never)
    } catch (error) {
      caught = error
    }
    expect(isCacheError(caught, 'E_INVALID_OPTION')).toBe(true)
  })

  it('caches c.json(): a miss, then a hit with the same JSON', async () => {
    let calls = 0
    const app = new Hono()
    app.get('/users/:id', cacheResponse(newCache(), { ttl: '1m' }), (c) => {
      calls++
      return c.json({ id: c.req.param('id'), calls })
    })
    const base = await listen(app)
    const first = await raw(base, '/users/7')
    expect(first.status).toBe(200)
    expect(cacheStatus(first).params.fwd).toBe('miss')
    expect(cacheStatus(first).params.stored).toBe(true)
    const second = await raw(base, '/users/7')
    expect(isHit(second)).toBe(true)
    expect(second.headers['content-type']).toMatch(/^application\/json/)
    expect(JSON.parse(second.body.toString())).toEqual({ id: '7', calls: 1 })
    expect(second.headers.age).toBeDefined()
    const head = await raw(base, '/users/7', {}, 'HEAD')
    expect(isHit(head)).toBe(true)
    expect(head.body.length).toBe(0)
    expect(head.headers['content-length']).toBe(String(first.body.length))
    expect(calls).toBe(1)
  })

  it('stores and replays a Response whose headers are immutable (Response.redirect)', async () => {
    let calls = 0
    const app = new Hono()
    app.get('/old', cacheResponse(newCache(), { ttl: '1m' }), () => {
      calls++
      return Response.redirect('http://127.0.0.1/new', 301)
    })
    const base = await listen(app)
    const first = await raw(base, '/old')
    expect(first.status).toBe(301)
    expect(cacheStatus(first).params.stored).toBe(true)
    const second = await raw(base, '/old')
    expect(second.status).toBe(301)
    expect(isHit(second)).toBe(true)
    expect(second.headers.location).toBe('http://127.0.0.1/new')
    expect(calls).toBe(1)
  })

  it('a handler that throws reaches hono.onError (500) and is not stored', async () => {
    let calls = 0
    const app = new Hono()
    app.onError((_error, c) => c.text('oops', 500))
    app.get('/boom', cacheResponse(newCache(), { ttl: '1m' }), () => {
      calls++
      throw new Error('boom')
    })
    const base = await listen(app)
    for (const _ of [1, 2]) {
      const res = await raw(base, '/boom')
      expect(res.status).toBe(500)
      expect(res.body.toString()).toBe('oops')
      expect(isHit(res)).toBe(false)
    }
    expect(calls).toBe(2)
  })

  it('never stores what middleware before it set (cors), and puts it on misses, hits and stale copies', async () => {
    let calls = 0
    const app = new Hono()
    app.onError((_error, c) => c.text('down', 503))
    app.use(cors({ origin: ['https://app.example', 'https://other.example'] }))
    app.get('/c', cacheResponse(newCache(), { ttl: 300, staleIfError: '1m' }), (c) => {
      if (++calls > 1) throw new Error('origin down')
      return c.text('cors body')
    })
    const base = await listen(app)
    const origin = { origin: 'https://app.example' }
    const miss = await raw(base, '/c', origin)
    const hit = await raw(base, '/c', origin)
    expect(isHit(hit)).toBe(true)
    // Each request gets its own CORS answer, not the one of the request that filled the cache.
    const other = await raw(base, '/c', { origin: 'https://other.example' })
    expect(other.headers['access-control-allow-origin']).toBe('https://other.example')
    const stranger = await raw(base, '/c', { origin: 'https://evil.example' })
    expect(isHit(stranger)).toBe(true)
    expect(stranger.headers['access-control-allow-origin']).toBeUndefined()
    await new Promise((resolve) => setTimeout(resolve, 400))
    const stale = await raw(base, '/c', origin)
    expect(stale.status).toBe(200)
    expect(stale.body.toString()).toBe('cors body')
    expect(cacheStatus(stale).params.detail).toBe('stale-if-error')
    expect(stale.headers['content-length']).toBe(String('cors body'.length))
    for (const res of [miss, hit, stale]) {
      expect(res.headers['access-control-allow-origin']).toBe('https://app.example')
      expect(res.headers.vary).toMatch(/origin/i)
    }
  })

  it('a cookie set by middleware before it goes to its own client only, and stops storing unless the route is public', async () => {
    let calls = 0
    let session = 0
    const app = new Hono()
    app.use(async (c, next) => {
      setCookie(c, 'sid', `s${++session}`)
      await next()
    })
    // The final headers decide: a page served with a new session cookie may hold what belongs to that session.
    app.get('/p', cacheResponse(newCache(), { ttl: '1m' }), (c) => c.text(`page ${++calls}`))
    app.get('/pub', cacheResponse(newCache(), { ttl: '1m', scope: 'public' }), (c) => c.text(`public ${++calls}`))
    const base = await listen(app)
    for (let i = 1; i <= 2; i++) {
      const res = await raw(base, '/p')
      expect(res.body.toString()).toBe(`page ${i}`)
      expect(res.headers['set-cookie']).toEqual([expect.stringMatching(new RegExp(`^sid=s${i};`))])
      expect(cacheStatus(res).params.detail).toBe('set-cookie')
    }
    for (let i = 3; i <= 5; i++) {
      const res = await raw(base, '/pub')
      expect(res.body.toString()).toBe('public 3')
      expect(res.headers['set-cookie']).toEqual([expect.stringMatching(new RegExp(`^sid=s${i};`))])
      if (i > 3) expect(isHit(res)).toBe(true)
    }
  })

  it('works without a Node server (app.request): a miss, then a hit', async () => {
    let calls = 0
    const app = new Hono()
    app.get('/n', cacheResponse(newCache(), { ttl: '1m' }), (c) => c.text(`n${++calls}`))
    const first = await app.request('/n')
    const second = await app.request('/n')
    expect(await first.text()).toBe('n1')
    expect(await second.text()).toBe('n1')
    expect(second.headers.get('cache-status')).toMatch(/hit/)
    expect(calls).toBe(1)
  })
})

describe('cacheResponse with hono compress()', () => {
  const text = `${'hono and the cache, '.repeat(120)}end`
  const gzip = { 'accept-encoding': 'gzip' }
  const identity = { 'accept-encoding': 'identity' }

  /** No identity request ever gets a gzip body; gzip answers decode to the same text. */
  function check(res: Raw, accepts: 'gzip' | 'identity') {
    expect(res.status).toBe(200)
    if (accepts === 'identity') {
      expect(res.headers['content-encoding']).toBeUndefined()
      expect(res.body.toString()).toBe(text)
    } else {
      const decoded = res.headers['content-encoding'] === 'gzip' ? gunzipSync(res.body) : res.body
      expect(decoded.toString()).toBe(text)
    }
  }

  for (const order of ['compress before cacheResponse', 'compress after cacheResponse'] as const) {
    for (const first of ['gzip', 'identity'] as const) {
      it(`${order}, ${first} first`, async () => {
        let calls = 0
        const app = new Hono()
        const cached = cacheResponse(newCache(), { ttl: '1m' })
        if (order === 'compress before cacheResponse') app.get('/t', compress(), cached)
        else app.get('/t', cached, compress())
        app.get('/t', (c) => {
          calls++
          return c.text(text)
        })
        const base = await listen(app)
        const sequence =
          first === 'gzip'
            ? (['gzip', 'identity', 'gzip', 'identity'] as const)
            : (['identity', 'gzip', 'identity', 'gzip'] as const)
        for (const accepts of sequence) check(await raw(base, '/t', accepts === 'gzip' ? gzip : identity), accepts)
        // Outside, compress works on the stored identity copy (one handler run); inside, each encoding is its own entry.
        expect(calls).toBe(order === 'compress before cacheResponse' ? 1 : 2)
        if (order === 'compress before cacheResponse') {
          expect((await raw(base, '/t', gzip)).headers['content-encoding']).toBe('gzip')
        }
      })
    }
  }
})

describe('cacheResponse with hono etag()', () => {
  for (const order of ['etag before cacheResponse', 'etag after cacheResponse'] as const) {
    it(`${order}: hits keep one ETag and If-None-Match answers 304`, async () => {
      let calls = 0
      const app = new Hono()
      const cached = cacheResponse(newCache(), { ttl: '1m' })
      if (order === 'etag before cacheResponse') app.get('/e', etag(), cached)
      else app.get('/e', cached, etag())
      app.get('/e', (c) => {
        calls++
        return c.text('tagged body')
      })
      const base = await listen(app)
      const miss = await raw(base, '/e')
      const hit = await raw(base, '/e')
      expect(hit.body.toString()).toBe('tagged body')
      expect(typeof hit.headers.etag).toBe('string')
      // Inside, etag() is the origin's validator and the engine stores it; outside, it only adds one to a miss (the
      // engine's own weak ETag needs the whole body, known once the miss is sent).
      if (order === 'etag after cacheResponse') expect(hit.headers.etag).toBe(miss.headers.etag)
      const notModified = await raw(base, '/e', { 'if-none-match': String(hit.headers.etag) })
      expect(notModified.status).toBe(304)
      expect(notModified.body.length).toBe(0)
      expect(calls).toBe(1)
    })
  }
})

describe('headers that middleware before cacheResponse adds after next()', () => {
  for (const between of ['nothing', 'etag()', 'compress()'] as const) {
    for (const wait of [false, true]) {
      it(`Cache-Control: private keeps the answer out of the cache (${between} in between, ${wait ? 'after an await' : 'at once'})`, async () => {
        let calls = 0
        const app = new Hono()
        app.use(async (c, next) => {
          await next()
          if (wait) await new Promise((resolve) => setTimeout(resolve, 20))
          c.header('Cache-Control', 'private')
        })
        // etag() and compress() read the body before the outer middleware is done with the answer.
        if (between === 'etag()') app.use(etag())
        if (between === 'compress()') app.use(compress())
        app.get('/x', cacheResponse(newCache()), (c) => {
          calls++
          c.header('cache-control', 'public, max-age=60')
          return c.text(`secret of ${c.req.header('x-user')} ${'y'.repeat(2000)}`)
        })
        const base = await listen(app)
        const alice = await raw(base, '/x', { 'x-user': 'alice', 'accept-encoding': 'identity' })
        expect(alice.headers['cache-control']).toBe('private')
        const mallory = await raw(base, '/x', { 'x-user': 'mallory', 'accept-encoding': 'identity' })
        expect(mallory.body.toString()).toMatch(/^secret of mallory/)
        expect(calls).toBe(2)
      })
    }
  }
})
