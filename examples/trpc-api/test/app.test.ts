import type { AddressInfo } from 'node:net'
import { createCache } from '@cache/core'
import { createTRPCClient, httpBatchLink } from '@trpc/client'
import superjson from 'superjson'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type AppRouter, createServer } from '../src/app.js'

const cache = createCache()
const server = createServer(cache)
let url = ''

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/trpc`
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
  await cache.close()
})

const client = (user?: string) =>
  createTRPCClient<AppRouter>({
    links: [httpBatchLink({ url, transformer: superjson, headers: user ? { 'x-user': user } : {} })],
  })

describe('trpc-api example', () => {
  it('answers todo.list with a miss, then a hit, Dates intact', async () => {
    const api = client()
    const before = cache.stats()
    const first = await api.todo.list.query()
    expect(cache.stats().misses).toBe(before.misses + 1)
    const second = await api.todo.list.query()
    expect(cache.stats().hits).toBe(before.hits + 1)
    expect(second).toEqual(first)
    expect(second[0]?.createdAt).toBeInstanceOf(Date)
  })

  it('a mutation invalidates the cached queries it changes', async () => {
    const api = client()
    await api.todo.list.query({ done: false })
    await api.todo.byId.query({ id: 2 })
    await api.todo.toggle.mutate({ id: 2 })
    expect((await api.todo.byId.query({ id: 2 })).done).toBe(true)
    expect(await api.todo.list.query({ done: false })).toEqual([])
    const added = await api.todo.add.mutate({ title: 'ship it' })
    expect((await api.todo.list.query()).map((todo) => todo.id)).toContain(added.id)
  })

  it('keeps one copy per user', async () => {
    const ann = client('ann')
    const bob = client('bob')
    expect(await ann.me.favorites.query()).toEqual([])
    expect(await bob.me.favorites.query()).toEqual([])
    await ann.me.addFavorite.mutate({ id: 1 })
    expect(await ann.me.favorites.query()).toEqual([1])
    expect(await bob.me.favorites.query()).toEqual([])
  })
})
