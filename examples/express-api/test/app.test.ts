import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type Cache, createCache } from '@cache/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createApp, TodoStore } from '../src/app.js'

/** The `cache` member of Cache-Status, as `{ hit: true, fwd: 'miss', stored: true, ttl: '30' }`. */
function cacheStatus(res: Response): Record<string, string | true> {
  const member = (res.headers.get('cache-status') ?? '')
    .split(',')
    .map((m) => m.split(';').map((p) => p.trim()))
    .find(([name]) => name === 'cache')
  const params: Record<string, string | true> = {}
  for (const param of member?.slice(1) ?? []) {
    const [k = '', v] = param.split('=')
    params[k] = v ?? true
  }
  return params
}

let cache: Cache
let store: TodoStore
let server: Server
let url: string

beforeEach(async () => {
  cache = createCache()
  store = new TodoStore(['first'])
  server = createApp(cache, store).listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterEach(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
  await cache.close()
})

describe('express-api example', () => {
  it('serves GET /todos as a miss, then as a hit without reading the store', async () => {
    const miss = await fetch(`${url}/todos`)
    expect(miss.status).toBe(200)
    expect(cacheStatus(miss)).toMatchObject({ fwd: 'miss', stored: true })
    const list = await miss.json()
    expect(list).toEqual([{ id: 1, title: 'first', done: false }])

    const reads = store.reads
    const hit = await fetch(`${url}/todos`)
    expect(cacheStatus(hit).hit).toBe(true)
    expect(await hit.json()).toEqual(list)
    expect(store.reads).toBe(reads)
  })

  it('a POST invalidates the list; the next GET sees the new todo', async () => {
    await fetch(`${url}/todos`)
    const post = await fetch(`${url}/todos`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'buy milk' }),
    })
    expect(post.status).toBe(201)
    expect(cacheStatus(post).fwd).toBe('method')
    const created = await post.json()

    const after = await fetch(`${url}/todos`)
    expect(cacheStatus(after).fwd).toBe('miss')
    expect(await after.json()).toContainEqual(created)
  })

  it('a PATCH invalidates both the todo and the list (through the tag)', async () => {
    await fetch(`${url}/todos`)
    await fetch(`${url}/todos/1`)
    expect(cacheStatus(await fetch(`${url}/todos/1`)).hit).toBe(true)
    const patch = await fetch(`${url}/todos/1`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ done: true }),
    })
    expect(patch.status).toBe(200)
    const one = await fetch(`${url}/todos/1`)
    expect(cacheStatus(one).fwd).toBe('miss')
    expect(((await one.json()) as { done: boolean }).done).toBe(true)
    const list = await fetch(`${url}/todos`)
    expect(cacheStatus(list).fwd).toBe('miss')
  })

  it('a bad POST is a 400 and invalidates nothing', async () => {
    await fetch(`${url}/todos`)
    const bad = await fetch(`${url}/todos`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"title":',
    })
    expect(bad.status).toBe(400)
    expect(cacheStatus(await fetch(`${url}/todos`)).hit).toBe(true)
  })
})
