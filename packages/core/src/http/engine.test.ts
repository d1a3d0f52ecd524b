import { createServer, type IncomingMessage, request } from 'node:http'
import { describe, expect, it } from 'vitest'
import { createCache } from '../index.js'
import { closeServersAfterEach, serve, track } from './fixtures/node-server.js'
import { createHttpCache, isDetached, runDetached } from './index.js'

closeServersAfterEach()

describe('createHttpCache options', () => {
  it.each([
    [{ ttl: 'soon' }, /ttl/],
    [{ scope: 'private' }, /scope must be 'public'/],
    [{ statuses: [200, 99] }, /statuses/],
    [{ ignoreQuery: ['*'] }, /ignoreQuery/],
    [{ maxBodySize: -1 }, /maxBodySize/],
    [{ cacheStatus: 'has space' }, /cacheStatus/],
    [{ key: 'user' }, /key must be a function/],
  ])('refuses %j with E_INVALID_OPTION', (options, message) => {
    expect(() => createHttpCache(createCache(), options as never)).toThrow(message)
    try {
      createHttpCache(createCache(), options as never)
    } catch (err) {
      expect((err as { code: string }).code).toBe('E_INVALID_OPTION')
    }
  })
})

describe('the engine over node:http', () => {
  it('invalidate(url) drops entries keyed on the target as sent, not only as a URL would normalise it', async () => {
    let calls = 0
    const { http, port } = await serve((req, res) => {
      calls++
      res.end(`${req.url} ${calls}`)
    })
    const get = (target: string, host: string) =>
      new Promise<string>((resolve, reject) => {
        const req = request({ port, host: '127.0.0.1', path: target, headers: { host }, agent: false }, (res) => {
          let text = ''
          res.on('data', (chunk: Buffer) => {
            text += chunk
          })
          res.on('end', () => resolve(`${text} ${res.headers['cache-status']}`))
        })
        req.on('error', reject)
        req.end()
      })
    for (const [target, host] of [
      ["/items?q='x'", 'a.example'],
      ['/it{e}ms', 'a.example'],
      ['/p', 'LOCALHOST:80'],
    ] as const) {
      await get(target, host)
      expect(await get(target, host)).toMatch(/ hit/)
      await http.invalidate(`http://${host}${target}`)
      expect(await get(target, host), `${host}${target}`).toMatch(/fwd=miss; stored/)
    }
  })

  it('invalidate(url) drops every variant of the URL, and only that URL', async () => {
    let calls = 0
    const { url, http } = await serve(
      (req, res) => {
        calls++
        res.setHeader('vary', 'accept-language')
        res.end(`${req.url} ${req.headers['accept-language']}`)
      },
      { ttl: '1m' },
    )
    for (const lang of ['en', 'fr'])
      await (await fetch(`${url}/a?x=1`, { headers: { 'accept-language': lang } })).text()
    await (await fetch(`${url}/b`)).text()
    expect(calls).toBe(3)
    await http.invalidate(`${url}/a?x=1`)
    for (const lang of ['en', 'fr'])
      await (await fetch(`${url}/a?x=1`, { headers: { 'accept-language': lang } })).text()
    const b = await fetch(`${url}/b`)
    await b.text()
    expect(b.headers.get('cache-status')).toMatch(/hit/)
    expect(calls).toBe(5)
  })

  it('keys a URL longer than the key limit by its hash, and still tells its variants apart', async () => {
    let calls = 0
    const { url } = await serve((req, res) => {
      calls++
      res.end(req.url)
    })
    const long = `/p?${'q'.repeat(3000)}`
    const first = await fetch(url + long)
    expect(await first.text()).toBe(long)
    const again = await fetch(url + long)
    expect(await again.text()).toBe(long)
    expect(again.headers.get('cache-status')).toMatch(/hit/)
    expect(await (await fetch(`${url + long}x`)).text()).toBe(`${long}x`)
    expect(calls).toBe(2)
  })

  it('a 304 repeats the validators and Cache-Control, never the body or its type', async () => {
    const { url } = await serve((_req, res) => {
      res.setHeader('content-type', 'text/plain')
      res.setHeader('cache-control', 'max-age=60')
      res.setHeader('etag', '"v1"')
      res.end('body')
    })
    await (await fetch(url)).text()
    const res = await fetch(url, { headers: { 'if-none-match': 'W/"v1"' } })
    expect(res.status).toBe(304)
    expect(await res.text()).toBe('')
    expect(res.headers.get('etag')).toBe('"v1"')
    expect(res.headers.get('cache-control')).toBe('max-age=60')
    expect(res.headers.get('content-type')).toBeNull()
    expect(res.headers.get('age')).not.toBeNull()
  })

  it('a handler that throws before answering rejects handle(); nothing is stored and the next request runs it again', async () => {
    let calls = 0
    const { url } = await serve((_req, res) => {
      calls++
      if (calls === 1) throw new Error('boom')
      res.end('ok')
    })
    await expect(fetch(url)).rejects.toThrow()
    const res = await fetch(url)
    expect(await res.text()).toBe('ok')
    expect(res.headers.get('cache-status')).toMatch(/fwd=miss; stored/)
    expect(calls).toBe(2)
  })
})

describe('hit-for-pass', () => {
  it('passes an uncacheable URL straight to the handler, and stores it once it turns storable and the pass ends', async () => {
    let calls = 0
    let store = false
    const { url } = await serve(
      (_req, res) => {
        calls++
        if (!store) res.setHeader('cache-control', 'no-store')
        res.end(`v${calls}`)
      },
      { ttl: '400ms' },
    )
    for (let i = 1; i <= 5; i++) {
      const res = await fetch(`${url}/p`)
      expect(await res.text()).toBe(`v${i}`)
      expect(res.headers.get('cache-status')).toBe('cache; fwd=miss; detail=no-store')
    }
    store = true
    // Still within the pass (remembered after three in a row): not watched, so not stored.
    expect(await (await fetch(`${url}/p`)).text()).toBe('v6')
    expect(await (await fetch(`${url}/p`)).text()).toBe('v7')
    await new Promise((r) => setTimeout(r, 450))
    const stored = await fetch(`${url}/p`)
    expect(await stored.text()).toBe('v8')
    expect(stored.headers.get('cache-status')).toMatch(/fwd=miss; stored/)
    const hit = await fetch(`${url}/p`)
    expect(await hit.text()).toBe('v8')
    expect(hit.headers.get('cache-status')).toMatch(/hit/)
    expect(calls).toBe(8)
  })

  it('a URL that failed once (a 500) is stored as soon as it answers well', async () => {
    let calls = 0
    const { url } = await serve((_req, res) => {
      calls++
      res.statusCode = calls === 1 ? 500 : 200
      res.end(`v${calls}`)
    })
    expect((await fetch(`${url}/f`)).status).toBe(500)
    const good = await fetch(`${url}/f`)
    expect(good.headers.get('cache-status')).toMatch(/fwd=miss; stored/)
    expect(await good.text()).toBe('v2')
    expect(await (await fetch(`${url}/f`)).text()).toBe('v2')
    expect(calls).toBe(2)
  })
})

describe('runDetached', () => {
  it('runs a marked copy through the server and collects status, headers (writeHead-only ones too) and body', async () => {
    let seen: IncomingMessage | undefined
    const server = createServer((req, res) => {
      seen = req
      res.writeHead(201, { 'x-only-in-write-head': '1', 'content-type': 'application/octet-stream' })
      res.write(Buffer.from([0, 255]))
      res.end(Buffer.from([1, 2, 3]))
    })
    track(server, createCache())
    const got = await runDetached(server, { method: 'GET', protocol: 'http', url: '/d?x=1', headers: { host: 'h' } })
    expect(isDetached(seen)).toBe(true)
    expect(seen?.url).toBe('/d?x=1')
    expect(seen?.headers.host).toBe('h')
    expect(got.status).toBe(201)
    expect(got.headers['x-only-in-write-head']).toBe('1')
    expect([...got.body]).toEqual([0, 255, 1, 2, 3])
  })

  it('rejects when the handler destroys its response', async () => {
    const server = createServer((_req, res) => {
      res.write('part')
      res.destroy(new Error('gone'))
    })
    track(server, createCache())
    await expect(runDetached(server, { method: 'GET', protocol: 'http', url: '/', headers: {} })).rejects.toThrow(
      'gone',
    )
  })
})
