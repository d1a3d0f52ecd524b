import { setTimeout as sleep } from 'node:timers/promises'
import { type Cache, createCache, isCacheError, memoryStore } from '@cache/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type App, type AppStats, createApp } from '../src/app.js'
import { runLoad } from '../src/load.js'
import { type Todo, TodoRepository } from '../src/repository.js'

interface Answer {
  status: number
  headers: Headers
  body: unknown
}

/** Sends one request; `body` is JSON-encoded unless it is already a string (to send broken JSON). */
async function call(base: string, method: string, path: string, body?: unknown, contentType = 'application/json') {
  const init: RequestInit = { method }
  if (body !== undefined) {
    init.headers = { 'content-type': contentType }
    init.body = typeof body === 'string' ? body : JSON.stringify(body)
  }
  const res = await fetch(`${base}${path}`, init)
  const text = await res.text()
  return { status: res.status, headers: res.headers, body: text === '' ? undefined : JSON.parse(text) } as Answer
}

describe('the Todo API with a cache', () => {
  let cache: Cache
  let app: App
  let base: string

  beforeAll(async () => {
    cache = createCache({ store: memoryStore({ maxEntries: 10_000 }) })
    app = createApp({ cache, latencyMs: 1 })
    base = await app.listen(0)
  })
  afterAll(async () => {
    await app.close()
    await cache.close()
  })

  const api = (method: string, path: string, body?: unknown, contentType?: string) =>
    call(base, method, path, body, contentType)

  /** Reads a user's list and tells, from `cache.stats()`, whether that read was a hit. Tests run one at a time. */
  async function list(userId: string): Promise<{ todos: Todo[]; hit: boolean; header: string | null }> {
    const before = cache.stats()
    const res = await api('GET', `/users/${userId}/todos`)
    const after = cache.stats()
    expect(res.status).toBe(200)
    const hits = after.hits - before.hits
    const misses = after.misses - before.misses
    expect(hits + misses).toBe(1)
    return { todos: res.body as Todo[], hit: hits === 1, header: res.headers.get('x-cache') }
  }

  async function create(userId: string, title: string): Promise<Todo> {
    const res = await api('POST', `/users/${userId}/todos`, { title })
    expect(res.status).toBe(201)
    return res.body as Todo
  }

  it('caches each list: the second read is a hit and does not reach the repository', async () => {
    await create('cached', 'write the demo')
    const origin = app.repository.stats().reads

    const first = await list('cached')
    expect(first).toMatchObject({ hit: false, header: 'miss' })
    expect(first.todos.map((todo) => todo.title)).toEqual(['write the demo'])
    expect(app.repository.stats().reads).toBe(origin + 1)

    const second = await list('cached')
    expect(second).toMatchObject({ hit: true, header: 'hit' })
    expect(second.todos).toEqual(first.todos)
    expect(app.repository.stats().reads).toBe(origin + 1)
    expect(await cache.has('todos:cached')).toBe(true)
  })

  it('create invalidates that user’s list only', async () => {
    await list('alice')
    await list('bob')
    expect((await list('alice')).hit).toBe(true)
    expect((await list('bob')).hit).toBe(true)

    const todo = await create('alice', '  buy milk  ')
    expect(todo).toMatchObject({ title: 'buy milk', done: false })
    expect(typeof todo.id).toBe('string')

    const alice = await list('alice')
    expect(alice.hit).toBe(false)
    expect(alice.todos).toContainEqual(todo)
    expect((await list('bob')).hit).toBe(true)
  })

  it('update invalidates that user’s list only', async () => {
    const todo = await create('carol', 'water plants')
    await list('carol')
    await list('dave')

    const done = await api('PATCH', `/users/carol/todos/${todo.id}`, { done: true })
    expect(done.status).toBe(200)
    expect(done.body).toMatchObject({ id: todo.id, title: 'water plants', done: true })
    const carol = await list('carol')
    expect(carol.hit).toBe(false)
    expect(carol.todos).toEqual([done.body])
    expect((await list('dave')).hit).toBe(true)

    const renamed = await api('PATCH', `/users/carol/todos/${todo.id}`, { title: 'water the plants', done: false })
    expect(renamed.status).toBe(200)
    expect((await list('carol')).todos).toMatchObject([{ id: todo.id, title: 'water the plants', done: false }])
    expect((await list('dave')).hit).toBe(true)
  })

  it('delete invalidates that user’s list only', async () => {
    const keep = await create('erin', 'keep')
    const drop = await create('erin', 'drop')
    await list('erin')
    await list('frank')

    const res = await api('DELETE', `/users/erin/todos/${drop.id}`)
    expect(res.status).toBe(204)
    expect(res.body).toBeUndefined()
    const erin = await list('erin')
    expect(erin.hit).toBe(false)
    expect(erin.todos).toEqual([keep])
    expect((await list('frank')).hit).toBe(true)
  })

  it('one user’s invalidation does not touch another’s cached list, even when one id starts with the other', async () => {
    await create('ann', 'a')
    await create('ann2', 'b')
    await list('ann')
    await list('ann2')

    await cache.invalidateTags(['user:ann'])
    expect(await cache.has('todos:ann')).toBe(false)
    expect(await cache.has('todos:ann2')).toBe(true)
    expect((await list('ann2')).hit).toBe(true)

    await create('ann', 'c')
    expect((await list('ann2')).hit).toBe(true)
    expect((await list('ann')).hit).toBe(false)
  })

  it('answers bad input with 400 and a JSON error, and leaves the cached list alone', async () => {
    const todo = await create('grace', 'existing')
    await list('grace')
    const cases: [method: string, body: unknown, contentType?: string][] = [
      ['POST', '{"title": '],
      ['POST', ''],
      ['POST', {}],
      ['POST', { title: '' }],
      ['POST', { title: '   ' }],
      ['POST', { title: 42 }],
      ['POST', { title: 'x'.repeat(201) }],
      ['POST', { title: 'ok', owner: 'mallory' }],
      ['POST', ['not', 'an', 'object']],
      ['POST', 'null'],
      ['PATCH', '{oops}'],
      ['PATCH', {}],
      ['PATCH', { done: 'yes' }],
      ['PATCH', { title: null }],
    ]
    for (const [method, body] of cases) {
      const path = method === 'POST' ? '/users/grace/todos' : `/users/grace/todos/${todo.id}`
      const res = await api(method, path, body)
      expect(res.status, `${method} ${JSON.stringify(body)}`).toBe(400)
      expect(res.headers.get('content-type')).toMatch(/^application\/json/)
      expect(res.body).toEqual({ error: expect.any(String) })
    }
    expect((await api('POST', '/users/grace/todos', 'title=x', 'application/x-www-form-urlencoded')).status).toBe(415)
    expect((await api('POST', '/users/grace/todos', { title: 'x'.repeat(20_000) })).status).toBe(413)

    const grace = await list('grace')
    expect(grace.hit).toBe(true)
    expect(grace.todos).toEqual([todo])
  })

  it('answers unknown todos with 404, including another user’s todo', async () => {
    const mine = await create('heidi', 'mine')
    const cases: [string, string, unknown?][] = [
      ['PATCH', '/users/heidi/todos/999999', { done: true }],
      ['DELETE', '/users/heidi/todos/999999'],
      ['PATCH', `/users/ivan/todos/${mine.id}`, { done: true }],
      ['DELETE', `/users/ivan/todos/${mine.id}`],
      ['GET', '/nowhere'],
      ['GET', '/users/heidi'],
    ]
    for (const [method, path, body] of cases) {
      const res = await api(method, path, body)
      expect(res.status, `${method} ${path}`).toBe(404)
      expect(res.body).toEqual({ error: expect.any(String) })
    }
    expect((await list('heidi')).todos).toEqual([mine])
  })

  it('rejects bad ids and methods', async () => {
    expect((await api('GET', '/users/a%20b/todos')).status).toBe(400)
    expect((await api('GET', '/users/%E0%A4%A/todos')).status).toBe(400)
    expect((await api('GET', `/users/${'x'.repeat(65)}/todos`)).status).toBe(400)
    const put = await api('PUT', '/users/judy/todos', { title: 'x' })
    expect(put.status).toBe(405)
    expect(put.headers.get('allow')).toBe('GET, POST')
    const get = await api('GET', '/users/judy/todos/1')
    expect(get.status).toBe(405)
    expect(get.headers.get('allow')).toBe('PATCH, DELETE')
  })

  it('x-cache agrees with cache.stats() under concurrency, and concurrent misses share one load', async () => {
    await create('kate', 'popular')
    const before = cache.stats()
    const origin = app.repository.stats().reads
    const answers = await Promise.all(Array.from({ length: 12 }, () => api('GET', '/users/kate/todos')))
    const after = cache.stats()
    const headers = answers.map((res) => res.headers.get('x-cache'))
    expect(headers.filter((h) => h === 'hit').length).toBe(after.hits - before.hits)
    expect(headers.filter((h) => h === 'miss').length).toBe(after.misses - before.misses)
    expect(headers.every((h) => h === 'hit' || h === 'miss')).toBe(true)
    expect(app.repository.stats().reads).toBe(origin + 1)
    for (const res of answers) expect(res.body).toMatchObject([{ title: 'popular' }])
  })

  it('GET /stats reports the cache and the origin', async () => {
    const res = await api('GET', '/stats')
    expect(res.status).toBe(200)
    const stats = res.body as AppStats
    expect(stats.cache).toMatchObject({ hits: cache.stats().hits, misses: cache.stats().misses })
    expect(stats.origin).toEqual(app.repository.stats())
    expect(res.headers.get('server-timing')).toMatch(/^app;dur=\d+(\.\d+)?$/)
  })

  // The app here has a fixed 1 ms round trip: with equal round trips a load never outlives a write that started after
  // it; the read-your-writes case with a slow load overtaken by a write is the last test of this file.
  it('the demo’s load: every read reflects the writes answered before it, no request fails', async () => {
    const result = await runLoad({ baseUrl: base, users: 6, requests: 400, concurrency: 10, userPrefix: 'load-' })
    expect(result.samples).toEqual([])
    expect(result.violations).toBe(0)
    expect(result.errors).toBe(0)
    expect(result.requests).toBe(400)
    expect(result.writes).toBeGreaterThan(0)
    expect(result.checkedReads).toBe(result.reads)
    expect(result.cache).not.toBeNull()
    expect(result.cache!.hits).toBeGreaterThan(0)
    expect(result.origin.reads).toBeLessThan(result.reads)
  })
})

describe('the Todo API without a cache', () => {
  let app: App
  let base: string
  beforeAll(async () => {
    app = createApp({ cache: null, latencyMs: 1 })
    base = await app.listen(0)
  })
  afterAll(() => app.close())

  it('serves every read from the repository', async () => {
    const created = await call(base, 'POST', '/users/alice/todos', { title: 'uncached' })
    expect(created.status).toBe(201)
    const origin = app.repository.stats().reads
    for (let i = 0; i < 3; i++) {
      const res = await call(base, 'GET', '/users/alice/todos')
      expect(res.body).toEqual([created.body])
      expect(res.headers.get('x-cache')).toBeNull()
    }
    expect(app.repository.stats().reads).toBe(origin + 3)
    expect(((await call(base, 'GET', '/stats')).body as AppStats).cache).toBeNull()
  })

  it('passes the demo’s load check too', async () => {
    const result = await runLoad({ baseUrl: base, users: 4, requests: 200, concurrency: 8 })
    expect(result.violations + result.errors).toBe(0)
    expect(result.cache).toBeNull()
    expect(result.origin.reads).toBe(result.reads)
  })
})

describe('createApp', () => {
  it('creates, owns and closes a cache when given none', async () => {
    const app = createApp({ latencyMs: 0 })
    const base = await app.listen(0)
    expect(app.cache).not.toBeNull()
    await call(base, 'GET', '/users/x/todos')
    expect((await call(base, 'GET', '/users/x/todos')).headers.get('x-cache')).toBe('hit')
    await app.close()
    const closed = await app.cache!.getOrSet('k', () => 1).catch((err: unknown) => err)
    expect(isCacheError(closed, 'E_CLOSED')).toBe(true)
  })

  // A getOrSet that starts after invalidateTags() resolved must not join a load that started before it (it would
  // answer with the list as it was before the write): core detaches loads an invalidation overtakes.
  it('a read sent after a write was answered reflects it, even while an older load is in flight', async () => {
    // Round trips in order: the first list read takes 200 ms (it reads the data at 100 ms), the create 10 ms.
    const trips = [1, 0]
    const repository = new TodoRepository({ latencyMs: { min: 10, max: 200 }, random: () => trips.shift() ?? 0 })
    const cache = createCache({ store: memoryStore() })
    const app = createApp({ cache, repository })
    const base = await app.listen(0)
    try {
      const slowRead = call(base, 'GET', '/users/zoe/todos')
      await sleep(130) // the slow read has seen the empty list and is on its way back
      const created = await call(base, 'POST', '/users/zoe/todos', { title: 'after the slow read' })
      expect(created.status).toBe(201)
      const readAfterWrite = await call(base, 'GET', '/users/zoe/todos')
      expect((await slowRead).body).toEqual([])
      expect(readAfterWrite.body).toEqual([created.body])
    } finally {
      await app.close()
      await cache.close()
    }
  })
})
