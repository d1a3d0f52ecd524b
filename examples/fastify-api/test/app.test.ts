import type { AddressInfo } from 'node:net'
import { type Cache, createCache } from '@cache/core'
import type { FastifyInstance } from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { buildApp, Catalogue } from '../src/app.js'

/** The Cache-Status member's parameters: 'cache; hit; ttl=29' -> { hit: true, ttl: '29' }. */
function cacheStatus(res: Response): Record<string, string | true> {
  const [, ...params] = (res.headers.get('cache-status') ?? '').split(';').map((part) => part.trim())
  const out: Record<string, string | true> = {}
  for (const param of params) {
    const eq = param.indexOf('=')
    if (eq < 0) out[param] = true
    else out[param.slice(0, eq)] = param.slice(eq + 1)
  }
  return out
}

describe('books API', () => {
  let cache: Cache
  let catalogue: Catalogue
  let app: FastifyInstance
  let base: string

  beforeEach(async () => {
    cache = createCache()
    catalogue = new Catalogue()
    app = await buildApp(cache, catalogue)
    await app.listen({ host: '127.0.0.1', port: 0 })
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  })

  afterEach(async () => {
    await app.close()
    await cache.close()
  })

  it('answers GET /books from the catalogue once, then from the cache', async () => {
    const miss = await fetch(`${base}/books`)
    expect(miss.status).toBe(200)
    expect(cacheStatus(miss)).toMatchObject({ fwd: 'miss', stored: true })
    const books = await miss.json()
    expect(books).toHaveLength(2)

    const hit = await fetch(`${base}/books`)
    expect(cacheStatus(hit)).toMatchObject({ hit: true })
    expect(await hit.json()).toEqual(books)
    expect(catalogue.reads).toBe(1)
  })

  it('drops the cached list when a book is added', async () => {
    await (await fetch(`${base}/books`)).text()
    const created = await fetch(`${base}/books`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'Designing Data-Intensive Applications', author: 'Martin Kleppmann' }),
    })
    expect(created.status).toBe(201)
    expect(cacheStatus(created)).toMatchObject({ fwd: 'method' })
    await created.text()

    const after = await fetch(`${base}/books`)
    expect(cacheStatus(after)).toMatchObject({ fwd: 'miss' })
    expect(await after.json()).toHaveLength(3)
  })

  it('caches a 404 and leaves /stats uncached', async () => {
    for (let i = 0; i < 2; i++) await (await fetch(`${base}/books/99`)).text()
    expect(catalogue.reads).toBe(1)
    const stats = await fetch(`${base}/stats`)
    expect(stats.headers.get('cache-status')).toBeNull()
    expect(await stats.json()).toMatchObject({ catalogueReads: 1 })
  })

  it('rejects an invalid book without touching the cache', async () => {
    await (await fetch(`${base}/books`)).text()
    const bad = await fetch(`${base}/books`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: '' }),
    })
    expect(bad.status).toBe(400)
    const still = await fetch(`${base}/books`)
    expect(cacheStatus(still)).toMatchObject({ hit: true })
    await still.text()
  })
})
