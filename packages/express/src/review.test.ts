// Adversarial review of the express adapter: what earlier middleware sets, error handlers over a stale copy, aborted
// streams, the hit-for-pass fast path, HEAD, sub-apps. Real servers on loopback, real requests.
import { request as httpRequest } from 'node:http'
import type { NextFunction, Request, Response } from 'express'
import { describe, expect, it } from 'vitest'
import { loadExpress } from './fixtures/harness.js'
import { cacheStatus, outcome } from './fixtures/http.js'
import { closeAfterEach, newCache, serve } from './fixtures/servers.js'
import { cacheResponse } from './index.js'

closeAfterEach()

interface Raw {
  status: number
  message: string
  headers: Headers
  cookies: string[]
  text: string
}

function raw(url: string, init: { method?: string; headers?: Record<string, string> } = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: init.method ?? 'GET', headers: init.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', reject)
      res.on('end', () => {
        const headers = new Headers()
        for (const [name, value] of Object.entries(res.headers)) {
          if (name === 'set-cookie') continue
          for (const one of Array.isArray(value) ? value : value === undefined ? [] : [value]) headers.append(name, one)
        }
        resolve({
          status: res.statusCode ?? 0,
          message: res.statusMessage ?? '',
          headers,
          cookies: res.headers['set-cookie'] ?? [],
          text: Buffer.concat(chunks).toString('utf8'),
        })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

/** Starts a GET, reads the first chunk, then drops the connection. */
function abortAfterFirstChunk(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      res.once('data', (chunk: Buffer) => {
        req.destroy()
        resolve(chunk.toString('utf8'))
      })
    })
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ECONNRESET') reject(err)
    })
    req.end()
  })
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe.each([
  ['express 5', loadExpress('express')],
  ['express 4', loadExpress('express4')],
])('%s review', (_name, express) => {
  it('a per-request header set by earlier middleware (X-Request-Id) is not replayed to another client on a hit', async () => {
    const app = express()
    let n = 0
    app.use((_req: Request, res: Response, next: NextFunction) => {
      res.setHeader('x-request-id', `req-${++n}`)
      next()
    })
    app.get('/page', cacheResponse(newCache(), { ttl: '1m' }), (_req: Request, res: Response) => {
      res.send('page')
    })
    const base = await serve(app)
    const first = await raw(`${base}/page`)
    expect(first.headers.get('x-request-id')).toBe('req-1')
    const second = await raw(`${base}/page`)
    expect(outcome(second.headers)).toBe('hit')
    // The second request's own id, as on any uncached route; never the first client's.
    expect(second.headers.get('x-request-id')).toBe('req-2')
  })

  it('with scope public, a session cookie set by earlier middleware goes to its own client only', async () => {
    const app = express()
    let n = 0
    app.use((_req: Request, res: Response, next: NextFunction) => {
      res.cookie('sid', `s${++n}`)
      next()
    })
    app.get('/page', cacheResponse(newCache(), { ttl: '1m', scope: 'public' }), (_req: Request, res: Response) => {
      res.send('page')
    })
    const base = await serve(app)
    const first = await raw(`${base}/page`)
    expect(first.cookies.join()).toContain('sid=s1')
    const second = await raw(`${base}/page`)
    expect(outcome(second.headers)).toBe('hit')
    expect(second.cookies.join()).toContain('sid=s2')
    expect(second.cookies.join()).not.toContain('sid=s1')
  })

  it('stale-if-error through next(err) and the default error handler: the stale copy is sent as a clean 200', async () => {
    const app = express()
    let fail = false
    app.get(
      '/page',
      cacheResponse(newCache(), { ttl: 1, staleIfError: '1m' }),
      (_req: Request, res: Response, next: NextFunction) => {
        if (fail) return next(new Error('db down'))
        res.type('html').send('<p>page</p>')
      },
    )
    const base = await serve(app)
    expect((await raw(`${base}/page`)).text).toBe('<p>page</p>')
    await sleep(1100)
    fail = true
    const stale = await raw(`${base}/page`)
    expect(stale.status).toBe(200)
    expect(stale.text).toBe('<p>page</p>')
    expect(cacheStatus(stale.headers)?.params.detail).toBe('stale-if-error')
    expect(stale.headers.get('content-type')).toContain('text/html')
    // Nothing of the error page may stick to the stale copy.
    expect(stale.headers.get('content-security-policy')).toBeNull()
    expect(stale.message).toBe('OK')
  })

  it('stale-if-error through a custom error handler that sets its own headers', async () => {
    const app = express()
    let fail = false
    app.get(
      '/page',
      cacheResponse(newCache(), { ttl: 1, staleIfError: '1m' }),
      (_req: Request, res: Response, next: NextFunction) => {
        if (fail) return next(new Error('db down'))
        res.json({ ok: true })
      },
    )
    app.use((_err: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(503).set('retry-after', '5').json({ error: 'down' })
    })
    const base = await serve(app)
    await raw(`${base}/page`)
    await sleep(1100)
    fail = true
    const stale = await raw(`${base}/page`)
    expect(stale.status).toBe(200)
    expect(JSON.parse(stale.text)).toEqual({ ok: true })
    expect(stale.headers.get('retry-after')).toBeNull()
    expect(cacheStatus(stale.headers)?.params['fwd-status']).toBe('503')
  })

  it('a streamed body the handler destroys midway is never stored', async () => {
    const app = express()
    let calls = 0
    app.get('/stream', cacheResponse(newCache(), { ttl: '1m' }), async (_req: Request, res: Response) => {
      calls++
      res.setHeader('content-type', 'text/plain')
      res.write('part-1;')
      await sleep(20)
      if (calls === 1) {
        res.destroy()
        return
      }
      res.end('part-2')
    })
    const base = await serve(app)
    await raw(`${base}/stream`).catch(() => undefined)
    const next = await raw(`${base}/stream`)
    expect(next.text).toBe('part-1;part-2')
    expect(outcome(next.headers)).toBe('miss')
    const third = await raw(`${base}/stream`)
    expect(outcome(third.headers)).toBe('hit')
    expect(third.text).toBe('part-1;part-2')
  })

  it('a client that goes away mid-stream stores nothing cut short', async () => {
    const app = express()
    let calls = 0
    app.get('/stream', cacheResponse(newCache(), { ttl: '1m' }), async (_req: Request, res: Response) => {
      calls++
      res.setHeader('content-type', 'text/plain')
      res.write('a;')
      await sleep(80)
      res.write('b;')
      res.end('c')
    })
    const base = await serve(app)
    expect(await abortAfterFirstChunk(`${base}/stream`)).toBe('a;')
    await sleep(150)
    const next = await raw(`${base}/stream`)
    // Either the handler ran again or a complete copy was stored: never 'a;' alone.
    expect(next.text).toBe('a;b;c')
    expect(calls).toBeGreaterThanOrEqual(1)
  })

  it('the hit-for-pass fast path keeps Cache-Status and the handler headers, and errors still reach the handler', async () => {
    const app = express()
    let fail = false
    let calls = 0
    app.get(
      '/nostore',
      cacheResponse(newCache(), { ttl: '1m' }),
      (_req: Request, res: Response, next: NextFunction) => {
        calls++
        if (fail) return next(new Error('boom'))
        res.set('cache-control', 'no-store').set('x-own', 'yes').send(`n${calls}`)
      },
    )
    app.use((_err: Error, _req: Request, res: Response, _next: NextFunction) => {
      res.status(500).send('oops')
    })
    const base = await serve(app)
    for (let i = 1; i <= 6; i++) {
      const res = await raw(`${base}/nostore`)
      expect(res.text).toBe(`n${i}`)
      expect(res.headers.get('x-own')).toBe('yes')
      expect(res.headers.get('cache-control')).toBe('no-store')
      const status = cacheStatus(res.headers)
      expect(status?.params.fwd).toBe('miss')
      expect(status?.params.detail).toBe('no-store')
      expect(res.headers.get('age')).toBeNull()
    }
    fail = true
    const failed = await raw(`${base}/nostore`)
    expect(failed.status).toBe(500)
    expect(failed.text).toBe('oops')
    const head = await raw(`${base}/nostore`, { method: 'HEAD' })
    expect(head.status).toBe(500)
    expect(head.text).toBe('')
  })

  it('HEAD hit and HEAD 304: same status and content-length as the GET, no body', async () => {
    const app = express()
    app.get('/doc', cacheResponse(newCache(), { ttl: '1m' }), (_req: Request, res: Response) => {
      res.set('etag', '"v1"').type('text').send('0123456789')
    })
    const base = await serve(app)
    const get = await raw(`${base}/doc`)
    expect(get.headers.get('content-length')).toBe('10')
    const head = await raw(`${base}/doc`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.text).toBe('')
    expect(head.headers.get('content-length')).toBe('10')
    expect(outcome(head.headers)).toBe('hit')
    const cond = await raw(`${base}/doc`, { method: 'HEAD', headers: { 'if-none-match': '"v1"' } })
    expect(cond.status).toBe(304)
    expect(cond.text).toBe('')
    expect(cond.headers.get('etag')).toBe('"v1"')
  })

  it('a HEAD miss fills the entry and answers with the GET headers and no body', async () => {
    const app = express()
    let calls = 0
    app.get('/doc', cacheResponse(newCache(), { ttl: '1m' }), (_req: Request, res: Response) => {
      calls++
      res.type('text').send('abcdef')
    })
    const base = await serve(app)
    const head = await raw(`${base}/doc`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.text).toBe('')
    expect(head.headers.get('content-length')).toBe('6')
    const get = await raw(`${base}/doc`)
    expect(get.text).toBe('abcdef')
    expect(outcome(get.headers)).toBe('hit')
    expect(calls).toBe(1)
  })

  it('one sub-app mounted at two prefixes keeps one entry per full URL', async () => {
    const sub = express()
    sub.get('/item', cacheResponse(newCache(), { ttl: '1m' }), (req: Request, res: Response) => {
      res.send(`at ${req.baseUrl}`)
    })
    const app = express()
    app.use('/v1', sub)
    app.use('/v2', sub)
    const base = await serve(app)
    expect((await raw(`${base}/v1/item`)).text).toBe('at /v1')
    const v2 = await raw(`${base}/v2/item`)
    expect(v2.text).toBe('at /v2')
    expect(outcome(v2.headers)).toBe('miss')
    const v1 = await raw(`${base}/v1/item`)
    expect(outcome(v1.headers)).toBe('hit')
    expect(v1.text).toBe('at /v1')
  })

  it('stale-while-revalidate in a mounted router refreshes the full URL in the background', async () => {
    const router = express.Router()
    let version = 1
    router.get('/item', cacheResponse(newCache(), { ttl: 1, staleWhileRevalidate: '1m' }), (_req, res) => {
      res.send(`v${version}`)
    })
    const app = express()
    app.use('/api', router)
    app.get('/item', (_req: Request, res: Response) => {
      res.send('WRONG ROUTE')
    })
    const base = await serve(app)
    expect((await raw(`${base}/api/item`)).text).toBe('v1')
    await sleep(1100)
    version = 2
    const stale = await raw(`${base}/api/item`)
    expect(stale.text).toBe('v1')
    expect(Number(cacheStatus(stale.headers)?.params.ttl)).toBeLessThan(0)
    await sleep(100)
    const fresh = await raw(`${base}/api/item`)
    expect(fresh.text).toBe('v2')
    expect(outcome(fresh.headers)).toBe('hit')
  })
})
