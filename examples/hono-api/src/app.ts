// A small todo API on hono. Reads are cached by @cache/hono; writes go through the same middleware, so a successful
// POST or DELETE drops the stored GETs of its URL and the tags it names.
import type { Cache } from '@cache/core'
import { cacheResponse } from '@cache/hono'
import { Hono } from 'hono'

interface Todo {
  id: number
  title: string
  done: boolean
}

/** Builds the API over `cache`: any cache from `createCache()` (memory, or memory over Redis). */
export function createApp(cache: Cache): Hono {
  const todos = new Map<number, Todo>([
    [1, { id: 1, title: 'Read the README', done: true }],
    [2, { id: 2, title: 'Cache a hono route in one line', done: false }],
  ])
  let nextId = 3
  const app = new Hono()

  // Every list answer is tagged 'todos'; every write invalidates that tag, so the list is never stale for long.
  const list = cacheResponse(cache, { ttl: '30s', staleWhileRevalidate: '1m', tags: () => ['todos'] })
  const one = cacheResponse(cache, { ttl: '30s', tags: (c) => ['todos', `todo:${c.req.param('id')}`] })
  const write = cacheResponse(cache, { invalidateTags: () => ['todos'] })

  app.get('/todos', list, (c) => c.json([...todos.values()]))
  app.get('/todos/:id', one, (c) => {
    const todo = todos.get(Number(c.req.param('id')))
    return todo ? c.json(todo) : c.json({ error: 'not found' }, 404)
  })
  app.post('/todos', write, async (c) => {
    const body = (await c.req.json().catch(() => ({}))) as { title?: unknown }
    if (typeof body.title !== 'string' || body.title.length === 0) return c.json({ error: 'title required' }, 400)
    const todo = { id: nextId++, title: body.title, done: false }
    todos.set(todo.id, todo)
    return c.json(todo, 201)
  })
  app.delete('/todos/:id', write, (c) => {
    return todos.delete(Number(c.req.param('id'))) ? c.body(null, 204) : c.json({ error: 'not found' }, 404)
  })
  // Never cached: what the cache itself has seen.
  app.get('/stats', (c) => c.json(cache.stats()))
  return app
}
