// What the conformance suite does not reach: express's own ways of answering (res.json, res.send with its ETag and
// fresh check, res.sendFile, res.redirect, next(err)), app-wide and mounted use, on express 5 and express 4.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Cache, isCacheError } from '@cache/core'
import type { NextFunction, Request, Response } from 'express'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadExpress } from './fixtures/harness.js'
import { cacheStatus, call, outcome } from './fixtures/http.js'
import { closeAfterEach, newCache, serve } from './fixtures/servers.js'
import { cacheResponse } from './index.js'

let dir: string
closeAfterEach()

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cache-express-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe.each([
  ['express 5', loadExpress('express')],
  ['express 4', loadExpress('express4')],
])('%s', (_name, express) => {
  it('app-wide: GETs are cached, a POST through it invalidates the URL', async () => {
    const cache = newCache()
    const app = express()
    app.use(cacheResponse(cache, { ttl: '30s' }))
    let version = 0
    app.get('/items', (_req, res) => {
      res.json({ version })
    })
    app.post('/items', (_req, res) => {
      version++
      res.status(201).json({ version })
    })
    const url = await serve(app)

    const miss = await call(`${url}/items`)
    expect(miss.status).toBe(200)
    expect(outcome(miss.headers)).toBe('miss')
    expect(cacheStatus(miss.headers)?.params.stored).toBe(true)
    const hit = await call(`${url}/items`)
    expect(outcome(hit.headers)).toBe('hit')
    expect(JSON.parse(hit.text)).toEqual({ version: 0 })

    const post = await call(`${url}/items`, { method: 'POST' })
    expect(post.status).toBe(201)
    expect(outcome(post.headers)).toBe('method')

    const after = await call(`${url}/items`)
    expect(outcome(after.headers)).toBe('miss')
    expect(JSON.parse(after.text)).toEqual({ version: 1 })
  })

  it('res.json: body and content-type survive a hit', async () => {
    const cache = newCache()
    const app = express()
    let calls = 0
    const data = { id: 7, name: 'Zoë', tags: ['a', 'b'], nested: { ok: true } }
    app.get('/json', cacheResponse(cache, { ttl: '1m' }), (_req, res) => {
      calls++
      res.json(data)
    })
    const url = await serve(app)
    const miss = await call(`${url}/json`)
    const hit = await call(`${url}/json`)
    expect(outcome(hit.headers)).toBe('hit')
    expect(calls).toBe(1)
    expect(JSON.parse(hit.text)).toEqual(data)
    expect(hit.headers.get('content-type')).toBe(miss.headers.get('content-type'))
    expect(hit.headers.get('content-type')).toMatch(/^application\/json/)
    expect(Number(hit.headers.get('content-length'))).toBe(hit.body.length)
    expect(hit.headers.get('age')).not.toBeNull()
  })

  it('res.sendFile of a real file is stored (with maxAge) and replayed byte for byte', async () => {
    const cache = newCache()
    const file = join(dir, `logo-${Math.random().toString(36).slice(2)}.bin`)
    const bytes = Buffer.alloc(64 * 1024)
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + 7) % 256
    await writeFile(file, bytes)
    const app = express()
    let calls = 0
    const send = (options: object) => (_req: Request, res: Response, next: NextFunction) => {
      calls++
      res.sendFile(file, { headers: { 'content-type': 'image/png' }, ...options }, (err?: Error) => err && next(err))
    }
    // sendFile's default `Cache-Control: public, max-age=0` says "already stale": it is honoured, not stored.
    app.get('/default', cacheResponse(cache, { ttl: '1m' }), send({}))
    app.get('/logo', cacheResponse(cache, { ttl: '1m' }), send({ maxAge: '1h' }))
    app.get('/plain', cacheResponse(cache, { ttl: '1m' }), send({ cacheControl: false }))
    const url = await serve(app)

    const zero = await call(`${url}/default`)
    expect(zero.body.equals(bytes)).toBe(true)
    expect(cacheStatus(zero.headers)?.params.stored).toBeUndefined()
    expect(outcome((await call(`${url}/default`)).headers)).toBe('miss')
    expect(calls).toBe(2)

    const miss = await call(`${url}/logo`)
    expect(miss.status).toBe(200)
    expect(miss.body.equals(bytes)).toBe(true)
    expect(cacheStatus(miss.headers)?.params.stored).toBe(true)
    const hit = await call(`${url}/logo`)
    expect(outcome(hit.headers)).toBe('hit')
    expect(hit.body.equals(bytes)).toBe(true)
    expect(hit.headers.get('content-type')).toBe('image/png')
    expect(hit.headers.get('last-modified')).toBe(miss.headers.get('last-modified'))
    expect(calls).toBe(3)

    await call(`${url}/plain`)
    expect(outcome((await call(`${url}/plain`)).headers)).toBe('hit')
    expect(calls).toBe(4)

    const head = await call(`${url}/logo`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.body.length).toBe(0)
    expect(Number(head.headers.get('content-length'))).toBe(bytes.length)
    expect(calls).toBe(4)
  })

  it("express's own ETag and fresh check: a conditional miss does not store an empty body", async () => {
    const cache = newCache()
    const app = express()
    const body = 'hello from res.send, long enough to matter'
    let calls = 0
    app.get('/text', cacheResponse(cache, { ttl: '1m' }), (_req, res) => {
      calls++
      res.send(body)
    })
    // The same handler without the cache, to learn the ETag express computes for this body.
    app.get('/plain', (_req, res) => {
      res.send(body)
    })
    const url = await serve(app)
    const etag = (await call(`${url}/plain`)).headers.get('etag')
    expect(etag).toBeTruthy()

    // Cold cache, conditional request: express itself may answer 304. Whatever it answers, nothing empty is stored.
    const first = await call(`${url}/text`, { headers: { 'if-none-match': String(etag) } })
    expect([200, 304]).toContain(first.status)
    if (first.status === 304) expect(first.body.length).toBe(0)

    const full = await call(`${url}/text`)
    expect(full.status).toBe(200)
    expect(full.text).toBe(body)
    const again = await call(`${url}/text`)
    expect(again.status).toBe(200)
    expect(outcome(again.headers)).toBe('hit')
    expect(again.text).toBe(body)
    expect(again.headers.get('etag')).toBe(etag)

    // Now the cache answers the conditional request itself.
    const before = calls
    const notModified = await call(`${url}/text`, { headers: { 'if-none-match': String(etag) } })
    expect(notModified.status).toBe(304)
    expect(notModified.body.length).toBe(0)
    expect(outcome(notModified.headers)).toBe('hit')
    expect(calls).toBe(before)
  })

  it('res.redirect: a 301 is stored with its Location, a 302 is not', async () => {
    const cache = newCache()
    const app = express()
    let calls = 0
    app.get('/old', cacheResponse(cache, { ttl: '1m' }), (_req, res) => {
      calls++
      res.redirect(301, '/new')
    })
    app.get('/tmp', cacheResponse(cache, { ttl: '1m' }), (_req, res) => {
      calls++
      res.redirect('/new')
    })
    const url = await serve(app)
    await call(`${url}/old`, { redirect: 'manual' })
    const hit = await call(`${url}/old`, { redirect: 'manual' })
    expect(hit.status).toBe(301)
    expect(outcome(hit.headers)).toBe('hit')
    expect(hit.headers.get('location')).toBe('/new')

    const t1 = await call(`${url}/tmp`, { redirect: 'manual' })
    const t2 = await call(`${url}/tmp`, { redirect: 'manual' })
    expect(t1.status).toBe(302)
    expect(t2.status).toBe(302)
    expect(outcome(t2.headers)).toBe('miss')
    expect(cacheStatus(t2.headers)?.params.detail).toBe('status')
    expect(calls).toBe(3)
  })

  it('errors through next(err) reach the error handler and are not stored', async () => {
    const cache = newCache()
    const app = express()
    let calls = 0
    app.get('/boom', cacheResponse(cache, { ttl: '1m' }), (_req, _res, next) => {
      calls++
      next(new Error('database down'))
    })
    app.get('/custom', cacheResponse(cache, { ttl: '1m' }), (_req, _res, next) => {
      calls++
      next(Object.assign(new Error('teapot'), { status: 503 }))
    })
    app.use((err: Error & { status?: number }, req: Request, res: Response, next: NextFunction) => {
      if (req.path !== '/custom') return next(err)
      res.status(err.status ?? 500).json({ error: err.message })
    })
    const url = await serve(app)
    const quiet = console.error
    console.error = () => {} // express's default handler logs the stack outside production
    try {
      for (let i = 0; i < 2; i++) {
        const res = await call(`${url}/boom`)
        expect(res.status).toBe(500)
        expect(outcome(res.headers)).toBe('miss')
        expect(cacheStatus(res.headers)?.params.stored).toBeUndefined()
      }
      const custom = await call(`${url}/custom`)
      expect(custom.status).toBe(503)
      expect(JSON.parse(custom.text)).toEqual({ error: 'teapot' })
      await call(`${url}/custom`)
    } finally {
      console.error = quiet
    }
    expect(calls).toBe(4)
  })

  it('a router mounted at two prefixes keys on the full URL (originalUrl), not the router-relative one', async () => {
    const cache = newCache()
    const app = express()
    const router = express.Router()
    router.get('/item', cacheResponse(cache, { ttl: '1m' }), (req, res) => {
      res.send(`item under ${req.baseUrl}`)
    })
    app.use('/a', router)
    app.use('/b', router)
    const url = await serve(app)
    expect((await call(`${url}/a/item`)).text).toBe('item under /a')
    expect((await call(`${url}/b/item`)).text).toBe('item under /b')
    const hitA = await call(`${url}/a/item`)
    const hitB = await call(`${url}/b/item`)
    expect(outcome(hitA.headers)).toBe('hit')
    expect(hitA.text).toBe('item under /a')
    expect(outcome(hitB.headers)).toBe('hit')
    expect(hitB.text).toBe('item under /b')
  })

  it("keys on req.protocol, so with 'trust proxy' an http->https redirect never reaches https clients", async () => {
    const cache = newCache()
    const app = express()
    app.set('trust proxy', true)
    let calls = 0
    app.get('/page', cacheResponse(cache, { ttl: '1m' }), (req, res) => {
      calls++
      if (req.protocol === 'http') res.redirect(301, `https://${req.headers.host}${req.originalUrl}`)
      else res.send('secure page')
    })
    const url = await serve(app)
    const viaProxy = (proto: string) =>
      call(`${url}/page`, { redirect: 'manual', headers: { 'x-forwarded-proto': proto } })
    expect((await viaProxy('http')).status).toBe(301)
    expect(outcome((await viaProxy('http')).headers)).toBe('hit')
    const secure = await viaProxy('https')
    expect(secure.status).toBe(200)
    expect(secure.text).toBe('secure page')
    expect(outcome((await viaProxy('https')).headers)).toBe('hit')
    expect(calls).toBe(2)
  })

  it('stale-while-revalidate refreshes in the background through the express app', async () => {
    const cache = newCache()
    const app = express()
    let version = 0
    app.get('/swr', cacheResponse(cache, { ttl: 300, staleWhileRevalidate: '10s' }), (_req, res) => {
      res.send(`v${version++}`)
    })
    const url = await serve(app)
    expect((await call(`${url}/swr`)).text).toBe('v0')
    await new Promise((resolve) => setTimeout(resolve, 450))
    const stale = await call(`${url}/swr`)
    expect(stale.text).toBe('v0')
    expect(outcome(stale.headers)).toBe('hit')
    expect(Number(cacheStatus(stale.headers)?.params.ttl)).toBeLessThanOrEqual(0)
    // The refresh ran without a client; poll until its result is what the cache serves.
    let text = ''
    for (let i = 0; i < 50 && text !== 'v1'; i++) {
      text = (await call(`${url}/swr`)).text
      if (text !== 'v1') await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(text).toBe('v1')
  })
})

describe('options', () => {
  it('rejects a missing cache with E_INVALID_OPTION', () => {
    let error: unknown
    try {
      cacheResponse(undefined as unknown as Cache)
    } catch (err) {
      error = err
    }
    expect(isCacheError(error, 'E_INVALID_OPTION')).toBe(true)
  })

  it('rejects a bad option when the middleware is made, not at the first request', () => {
    const cache = newCache()
    expect(() => cacheResponse(cache, { ttl: 'soon' as '1s' })).toThrow(
      expect.objectContaining({ code: 'E_INVALID_OPTION' }),
    )
  })
})
