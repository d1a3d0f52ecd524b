import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { createCache } from '@cache/core'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import fastifyCache from './index.js'

const apps: FastifyInstance[] = []
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close()
})

async function start(setup: (app: FastifyInstance) => void, options: FastifyServerOptions = {}) {
  const app = Fastify(options)
  apps.push(app)
  await app.register(fastifyCache, { cache: createCache(), ttl: '1m' })
  setup(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

describe('review: fastify', () => {
  it('a binary body survives the round trip byte for byte', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    const url = await start((app) =>
      app.get('/bin', { config: { cache: true } }, (_req, reply) => reply.type('application/octet-stream').send(bytes)),
    )
    await (await fetch(`${url}/bin`)).arrayBuffer()
    const hit = await fetch(`${url}/bin`)
    expect(hit.headers.get('cache-status')).toMatch(/; hit/)
    expect(Buffer.from(await hit.arrayBuffer()).equals(bytes)).toBe(true)
  })

  it('a stream the handler aborts mid-body is not stored', async () => {
    let calls = 0
    const url = await start((app) =>
      app.get('/s', { config: { cache: true } }, (_req, reply) => {
        calls++
        const n = calls
        const stream = new Readable({
          read() {
            this.push('part-')
            if (n === 1) setTimeout(() => this.destroy(new Error('cut')), 10)
            else this.push(null)
          },
        })
        return reply.type('text/plain').send(stream)
      }),
    )
    await fetch(`${url}/s`)
      .then((r) => r.text())
      .catch(() => {})
    const next = await fetch(`${url}/s`)
    expect(await next.text()).toBe('part-')
    expect(calls).toBe(2)
  })

  it('a GET right after a successful POST is not served the old copy', async () => {
    let version = 1
    const url = await start((app) => {
      app.get('/t', { config: { cache: true } }, () => ({ version }))
      app.post('/t', { config: { cache: true } }, () => {
        version++
        return { ok: true }
      })
    })
    await (await fetch(`${url}/t`)).text()
    await (await fetch(`${url}/t`, { method: 'POST' })).text()
    expect(await (await fetch(`${url}/t`)).json()).toEqual({ version: 2 })
  })

  it("ignored parameters are taken out of request.query as the app's own query parser reads them", async () => {
    // A bracket-style parser (as qs does): `utm_source[]=x` is read as `utm_source`.
    const querystringParser = (query: string) => {
      const out: Record<string, string> = {}
      for (const [name, value] of new URLSearchParams(query)) out[name.replace(/\[\]$/, '')] = value
      return out
    }
    let calls = 0
    const url = await start(
      (app) => {
        app.get('/landing', { config: { cache: true } }, (request) => {
          calls++
          return `hello from ${(request.query as Record<string, string>).utm_source ?? 'nowhere'} via ${request.url}`
        })
      },
      { routerOptions: { querystringParser } },
    )
    const attack = await fetch(`${url}/landing?utm_source[]=%3Cscript%3Ealert(1)%3C/script%3E`)
    expect(await attack.text()).toBe('hello from nowhere via /landing')
    const next = await fetch(`${url}/landing`)
    expect(await next.text()).toBe('hello from nowhere via /landing')
    expect(next.headers.get('cache-status')).toMatch(/hit/)
    expect(calls).toBe(1)
  })

  it('a Set-Cookie added by a writeHead wrapper installed before the plugin (on-headers) keeps the answer out', async () => {
    let calls = 0
    const url = await start((app) => {
      app.addHook('onRequest', (request, reply, done) => {
        const raw = reply.raw
        const writeHead = raw.writeHead
        raw.writeHead = function (this: typeof raw, ...args: unknown[]) {
          this.setHeader('set-cookie', `sid=${request.headers['x-user']}`)
          return (writeHead as (...a: unknown[]) => typeof raw).apply(this, args)
        } as typeof raw.writeHead
        done()
      })
      app.get('/s', { config: { cache: true } }, (request, reply) => {
        calls++
        reply.header('cache-control', 'public, max-age=60')
        return `secret of ${request.headers['x-user']}`
      })
    })
    // The wrapper is installed by a hook that runs before the plugin's, so it is there when the plugin wraps.
    const alice = await fetch(`${url}/s`, { headers: { 'x-user': 'alice' } })
    expect(alice.headers.get('set-cookie')).toBe('sid=alice')
    await alice.text()
    const mallory = await fetch(`${url}/s`, { headers: { 'x-user': 'mallory' } })
    expect(await mallory.text()).toBe('secret of mallory')
    expect(calls).toBe(2)
  })

  it('an answer a later onSend hook replaces with an error is not stored as the handler had it', async () => {
    let calls = 0
    const url = await start((app) => {
      app.get('/r', { config: { cache: true } }, () => {
        calls++
        return `resource ${calls}`
      })
      app.addHook('onSend', async (request) => {
        if (request.headers['x-hide'] === '1') throw Object.assign(new Error('hidden'), { statusCode: 404 })
      })
    })
    const hidden = await fetch(`${url}/r`, { headers: { 'x-hide': '1' } })
    expect(hidden.status).toBe(404)
    await hidden.text()
    const next = await fetch(`${url}/r`)
    expect(next.status).toBe(200)
    expect(await next.text()).toBe('resource 2')
  })
})
