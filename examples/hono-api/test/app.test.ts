import type { AddressInfo } from 'node:net'
import { createCache } from '@cache/core'
import { serve } from '@hono/node-server'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApp } from '../src/app.js'

const cache = createCache()
let base = ''
let close: () => Promise<void> = async () => {}

beforeAll(async () => {
  const app = createApp(cache)
  await new Promise<void>((resolve) => {
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) => {
      base = `http://127.0.0.1:${info.port}`
      close = () => new Promise((done) => server.close(() => done()))
      resolve()
    })
  })
})

afterAll(async () => {
  await close()
  await cache.close()
})

/** The params of the Cache-Status member ('hit' → true, 'fwd=miss' → 'miss'). */
function status(res: Response): Record<string, string | true> {
  const [, ...params] = (res.headers.get('cache-status') ?? '').split(';').map((part) => part.trim())
  return Object.fromEntries(
    params.map((p) => (p.includes('=') ? p.split('=', 2) : [p, true]) as [string, string | true]),
  )
}

describe('hono-api example', () => {
  it('answers GET /todos with a miss, then a hit', async () => {
    const miss = await fetch(`${base}/todos`)
    expect(miss.status).toBe(200)
    expect(status(miss).fwd).toBe('miss')
    const hit = await fetch(`${base}/todos`)
    expect(status(hit).hit).toBe(true)
    expect(await hit.json()).toEqual(await miss.json())
  })

  it('a POST invalidates the cached list', async () => {
    await fetch(`${base}/todos`)
    const created = await fetch(`${base}/todos`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'new one' }),
    })
    expect(created.status).toBe(201)
    const after = await fetch(`${base}/todos`)
    expect(status(after).hit).toBeUndefined()
    expect((await after.json()) as unknown[]).toContainEqual(expect.objectContaining({ title: 'new one' }))
  })
})
