import { request as httpRequest } from 'node:http'
import { gunzipSync, gzipSync } from 'node:zlib'
import { describe, expect, it } from 'vitest'
import { createCache } from '../index.js'
import { closeServersAfterEach, serve } from './fixtures/node-server.js'
import { createHttpCache } from './index.js'

closeServersAfterEach()

/** The Cache-Status member's params: { hit: true, ttl: '5', fwd: 'miss', ... }. */
function status(res: Response): Record<string, string | true> {
  const raw = res.headers.get('cache-status')
  const out: Record<string, string | true> = {}
  if (raw === null) return out
  const parts = raw.split(';').map((p) => p.trim())
  for (const part of parts.slice(1)) {
    const eq = part.indexOf('=')
    if (eq < 0) out[part] = true
    else out[part.slice(0, eq)] = part.slice(eq + 1)
  }
  return out
}

async function get(url: string, init?: RequestInit) {
  const res = await fetch(url, init)
  const body = await res.text()
  return { res, body, cs: status(res) }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A raw request where fetch cannot help (HEAD bodies, exact header bytes). */
function raw(port: number, method: string, path: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

describe('review: regressions', () => {
  it('a HEAD answered while the URL is hit-for-pass never stores an empty body for the next GET', async () => {
    let calls = 0
    const { url, port } = await serve((req, res) => {
      calls++
      if (calls === 1) {
        res.statusCode = 500
        return res.end('down')
      }
      res.setHeader('content-type', 'text/plain')
      // As express's res.send does: no body written for HEAD.
      res.end(req.method === 'HEAD' ? undefined : 'hello')
    })
    expect((await get(url)).res.status).toBe(500)
    const head = await raw(port, 'HEAD', '/')
    expect(head.status).toBe(200)
    const after = await get(url)
    expect(after.res.status).toBe(200)
    expect(after.body).toBe('hello')
  })

  it('stale-while-revalidate serves the stale copy of a response that has Vary', async () => {
    let calls = 0
    const { url } = await serve(
      (_req, res) => {
        calls++
        res.setHeader('vary', 'accept-language')
        res.end(`v${calls}`)
      },
      { ttl: '1s', staleWhileRevalidate: '1m' },
    )
    const lang = { headers: { 'accept-language': 'en' } }
    expect((await get(url, lang)).body).toBe('v1')
    await sleep(1150)
    const stale = await get(url, lang)
    expect(stale.cs.hit).toBe(true)
    expect(Number(stale.cs.ttl)).toBeLessThan(0)
    expect(stale.body).toBe('v1')
  })

  it('stale-if-error covers a response that has Vary', async () => {
    let calls = 0
    const { url } = await serve(
      (_req, res) => {
        calls++
        if (calls > 1) {
          res.statusCode = 503
          return res.end('down')
        }
        res.setHeader('vary', 'accept-language')
        res.end('good')
      },
      { ttl: '1s', staleIfError: '1m' },
    )
    const lang = { headers: { 'accept-language': 'en' } }
    expect((await get(url, lang)).body).toBe('good')
    await sleep(1150)
    const after = await get(url, lang)
    expect(after.res.status).toBe(200)
    expect(after.body).toBe('good')
    expect(after.cs.detail).toBe('stale-if-error')
  })

  it('Cache-Control: max-age=0, stale-while-revalidate=60 is stored and served stale while it refreshes', async () => {
    let calls = 0
    const { url } = await serve((_req, res) => {
      calls++
      res.setHeader('cache-control', 'max-age=0, stale-while-revalidate=60')
      res.end(`v${calls}`)
    })
    const first = await get(url)
    expect(first.body).toBe('v1')
    expect(first.cs.stored).toBe(true)
    const second = await get(url)
    expect(second.cs.hit).toBe(true)
    expect(second.body).toBe('v1')
  })

  it('a few conditional requests answered 304 by the handler do not make the URL uncacheable', async () => {
    const { url } = await serve((req, res) => {
      res.setHeader('etag', '"e1"')
      // As express does (req.fresh): the handler answers the validator itself on a miss.
      if (req.headers['if-none-match'] === '"e1"') {
        res.statusCode = 304
        return res.end()
      }
      res.end('body')
    })
    for (let i = 0; i < 3; i++) expect((await get(url, { headers: { 'if-none-match': '"e1"' } })).res.status).toBe(304)
    expect((await get(url)).body).toBe('body')
    const again = await get(url)
    expect(again.body).toBe('body')
    expect(again.cs.hit).toBe(true)
  })

  it('If-None-Match: * does not turn a stored 404 into a 304 (RFC 9110 §13.2.1)', async () => {
    const { url } = await serve((_req, res) => {
      res.statusCode = 404
      res.end('nope')
    })
    expect((await get(url)).res.status).toBe(404)
    const cond = await get(url, { headers: { 'if-none-match': '*' } })
    expect(cond.res.status).toBe(404)
    expect(cond.body).toBe('nope')
  })

  it('a POST that succeeds while a hit-for-pass GET is in flight: the next GET does not get the old copy', async () => {
    let version = 1
    let gets = 0
    let release: () => void = () => {}
    let entered: () => void = () => {}
    const inGet = new Promise<void>((r) => {
      entered = r
    })
    const { url } = await serve((req, res) => {
      if (req.method === 'POST') {
        version++
        return res.end('ok')
      }
      gets++
      if (gets === 1) {
        res.statusCode = 500
        return res.end('down')
      }
      const body = `v${version}`
      if (gets === 2) {
        entered()
        new Promise<void>((r) => {
          release = r
        }).then(() => res.end(body))
        return
      }
      res.end(body)
    })
    expect((await get(url)).res.status).toBe(500)
    const slow = get(url)
    await inGet
    expect((await get(url, { method: 'POST' })).res.status).toBe(200)
    release()
    expect((await slow).body).toBe('v1')
    expect((await get(url)).body).toBe('v2')
  })

  it('refuses a misspelt option instead of silently ignoring it', () => {
    expect(() => createHttpCache(createCache(), { tll: '1s' } as never)).toThrow(/tll/)
  })

  it('stale-while-revalidate serves the stale copy of a gzip response (Vary: accept-encoding added by the engine)', async () => {
    let calls = 0
    const { url, port } = await serve(
      (_req, res) => {
        calls++
        res.setHeader('content-encoding', 'gzip')
        res.end(gzipSync(`v${calls}`))
      },
      { ttl: '1s', staleWhileRevalidate: '1m' },
    )
    const gz = { 'accept-encoding': 'gzip' }
    expect(gunzipSync((await raw(port, 'GET', '/', gz)).body).toString()).toBe('v1')
    await sleep(1150)
    const stale = await raw(port, 'GET', '/', gz)
    expect(String(stale.headers['cache-status'])).toMatch(/; hit; ttl=-/)
    expect(gunzipSync(stale.body).toString()).toBe('v1')
    expect(url).toBeTruthy()
  })
})

describe('review: guarantees', () => {
  it('a POST that succeeds while a GET of a Vary response is in flight: the next GET does not get the old copy', async () => {
    let version = 1
    let release: () => void = () => {}
    let entered: () => void = () => {}
    const inGet = new Promise<void>((r) => {
      entered = r
    })
    const { url } = await serve((req, res) => {
      if (req.method === 'POST') {
        version++
        return res.end('ok')
      }
      const body = `v${version}`
      res.setHeader('vary', 'accept-language')
      if (version === 1) {
        entered()
        new Promise<void>((r) => {
          release = r
        }).then(() => res.end(body))
        return
      }
      res.end(body)
    })
    const lang = { headers: { 'accept-language': 'en' } }
    const slow = get(url, lang)
    await inGet
    expect((await get(url, { method: 'POST' })).res.status).toBe(200)
    release()
    expect((await slow).body).toBe('v1')
    expect((await get(url, lang)).body).toBe('v2')
  })

  it('stale-if-error: a handler that throws runs once, and the client gets the stale copy', async () => {
    let calls = 0
    const { url } = await serve(
      (_req, res) => {
        calls++
        if (calls > 1) throw new Error('boom')
        res.end('good')
      },
      { ttl: '1s', staleIfError: '1m' },
    )
    expect((await get(url)).body).toBe('good')
    await sleep(1150)
    const after = await get(url)
    expect(after.res.status).toBe(200)
    expect(after.body).toBe('good')
    expect(calls).toBe(2)
  })

  it("coalesced waiters of a Set-Cookie response (no scope) each get their own cookie, never the leader's", async () => {
    let calls = 0
    const { url } = await serve(async (_req, res) => {
      const n = ++calls
      await sleep(50)
      res.setHeader('set-cookie', `sid=${n}`)
      res.end('x')
    })
    const all = await Promise.all(Array.from({ length: 8 }, () => fetch(url)))
    const cookies = all.map((r) => r.headers.get('set-cookie'))
    await Promise.all(all.map((r) => r.text()))
    expect(cookies.every((c) => c !== null)).toBe(true)
    expect(new Set(cookies).size).toBe(8)
  })

  it('scope public: concurrent misses run the handler once and only the leader gets the Set-Cookie', async () => {
    let calls = 0
    const { url } = await serve(
      async (_req, res) => {
        calls++
        await sleep(50)
        res.setHeader('set-cookie', 'sid=leader')
        res.end('x')
      },
      { scope: 'public' },
    )
    const all = await Promise.all(Array.from({ length: 20 }, () => fetch(url)))
    const cookies = all.map((r) => r.headers.get('set-cookie')).filter((c) => c !== null)
    await Promise.all(all.map((r) => r.text()))
    expect(calls).toBe(1)
    expect(cookies.length).toBe(1)
    const later = await fetch(url)
    await later.text()
    expect(later.headers.get('set-cookie')).toBeNull()
  })

  it('a gzip body is never served to a client that asked for identity', async () => {
    const { port } = await serve((req, res) => {
      // A careless origin: compresses by Accept-Encoding without saying Vary.
      if (String(req.headers['accept-encoding'] ?? '').includes('gzip')) {
        res.setHeader('content-encoding', 'gzip')
        res.end(gzipSync('plain text'))
      } else res.end('plain text')
    })
    await raw(port, 'GET', '/', { 'accept-encoding': 'gzip' })
    const identity = await raw(port, 'GET', '/', { 'accept-encoding': 'identity' })
    expect(identity.headers['content-encoding']).toBeUndefined()
    expect(identity.body.toString()).toBe('plain text')
    const none = await raw(port, 'GET', '/')
    expect(none.body.toString()).toBe('plain text')
  })

  it('a response destroyed mid-body is not stored', async () => {
    let calls = 0
    const { url } = await serve((_req, res) => {
      calls++
      res.setHeader('content-length', '10')
      res.write('hello')
      if (calls === 1) setTimeout(() => res.destroy(), 10)
      else res.end('world')
    })
    await expect(get(url)).rejects.toThrow()
    const next = await get(url)
    expect(next.body).toBe('helloworld')
    expect(calls).toBe(2)
  })

  it('a HEAD miss does not store an empty body: the next GET gets the full body with a matching content-length', async () => {
    const { url, port } = await serve((req, res) => {
      res.end(req.method === 'HEAD' ? undefined : 'full body')
    })
    const head = await raw(port, 'HEAD', '/')
    expect(head.status).toBe(200)
    expect(head.body.byteLength).toBe(0)
    const after = await get(url)
    expect(after.body).toBe('full body')
    expect(after.res.headers.get('content-length')).toBe('9')
  })

  it('the Host header is part of the key', async () => {
    const { port } = await serve((req, res) => res.end(`host=${req.headers.host}`))
    await raw(port, 'GET', '/', { host: 'a.example' })
    const b = await raw(port, 'GET', '/', { host: 'evil.example' })
    expect(b.body.toString()).toBe('host=evil.example')
    const a = await raw(port, 'GET', '/', { host: 'a.example' })
    expect(a.body.toString()).toBe('host=a.example')
  })

  it('no-cache (stored for stale-if-error) still sends every request to the handler', async () => {
    let calls = 0
    const { url } = await serve((_req, res) => {
      calls++
      res.setHeader('cache-control', 'no-cache, stale-if-error=60')
      res.end(`v${calls}`)
    })
    await get(url)
    expect((await get(url)).body).toBe('v2')
  })

  it('a GET right after a successful POST is not served the old copy', async () => {
    let version = 1
    const { url } = await serve((req, res) => {
      if (req.method === 'POST') {
        version++
        return res.end('ok')
      }
      res.end(`v${version}`)
    })
    await get(`${url}/t?b=2&a=1&utm_source=x`)
    await get(`${url}/t?a=1&b=2`, { method: 'POST' })
    expect((await get(`${url}/t?b=2&a=1`)).body).toBe('v2')
  })

  it('Authorization and Cookie requests bypass and never poison the shared copy', async () => {
    const { url } = await serve((req, res) => res.end(req.headers.authorization ?? req.headers.cookie ?? 'anon'))
    expect((await get(url, { headers: { authorization: 'Bearer alice' } })).cs.fwd).toBe('bypass')
    expect((await get(url, { headers: { cookie: 'sid=alice' } })).body).toBe('sid=alice')
    expect((await get(url)).body).toBe('anon')
    expect((await get(url)).body).toBe('anon')
  })
})
