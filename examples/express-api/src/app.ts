import type { Cache } from '@cache/core'
import { cacheResponse } from '@cache/express'
import express, { type Express, type NextFunction, type Request, type Response } from 'express'

export interface Todo {
  id: number
  title: string
  done: boolean
}

/** Stands in for a database: every read takes a few milliseconds, which the cache saves on a hit. */
export class TodoStore {
  private readonly todos = new Map<number, Todo>()
  private nextId = 1
  /** How many reads reached the store (a hit reaches nothing). */
  reads = 0

  constructor(titles: readonly string[] = ['Read the README', 'Try a cached GET']) {
    for (const title of titles) this.add(title)
  }

  async list(): Promise<Todo[]> {
    await this.roundTrip()
    return [...this.todos.values()]
  }

  async get(id: number): Promise<Todo | undefined> {
    await this.roundTrip()
    return this.todos.get(id)
  }

  add(title: string): Todo {
    const todo = { id: this.nextId++, title, done: false }
    this.todos.set(todo.id, todo)
    return todo
  }

  update(id: number, patch: Partial<Pick<Todo, 'title' | 'done'>>): Todo | undefined {
    const todo = this.todos.get(id)
    if (todo === undefined) return undefined
    Object.assign(todo, patch)
    return todo
  }

  remove(id: number): boolean {
    return this.todos.delete(id)
  }

  private roundTrip(): Promise<void> {
    this.reads++
    return new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/**
 * The Todo API, with its reads cached by `@cache/express`:
 *
 * - `GET    /todos`       the list (cached 30 s, tag `todos`)
 * - `GET    /todos/:id`   one todo (cached 30 s, tag `todos`; a 404 is cached too, as HTTP allows)
 * - `POST   /todos`       `{ "title": string }` -> 201; invalidates `/todos` and the tag `todos`
 * - `PATCH  /todos/:id`   `{ "title"?: string, "done"?: boolean }` -> 200; invalidates `/todos/:id` and `todos`
 * - `DELETE /todos/:id`   -> 204; same invalidation
 * - `GET    /stats`       the cache's counters and the store's reads (never cached)
 *
 * Every answer of a `/todos` route carries `Cache-Status` (RFC 9211): `cache; fwd=miss; stored; ttl=30`, then
 * `cache; hit; ttl=29`, and `cache; fwd=method` on writes.
 */
export function createApp(cache: Cache, store = new TodoStore()): Express {
  const app = express()

  // One policy for the whole resource: reads are stored and tagged, successful writes drop the tag (and, as any
  // write through the middleware does, the stored responses of their own URL).
  const todos = cacheResponse(cache, {
    ttl: '30s',
    staleWhileRevalidate: '1m',
    tags: () => ['todos'],
    invalidateTags: () => ['todos'],
  })

  app.get('/todos', todos, async (_req, res) => {
    res.json(await store.list())
  })

  app.get('/todos/:id', todos, async (req, res) => {
    const todo = await store.get(Number(req.params.id))
    if (todo === undefined) res.status(404).json({ error: 'no such todo' })
    else res.json(todo)
  })

  app.post('/todos', todos, express.json(), (req, res) => {
    const title: unknown = req.body?.title
    if (typeof title !== 'string' || title.trim() === '' || title.length > 200) {
      res.status(400).json({ error: 'title must be a non-empty string of at most 200 characters' })
      return
    }
    const todo = store.add(title.trim())
    res.status(201).location(`/todos/${todo.id}`).json(todo)
  })

  app.patch('/todos/:id', todos, express.json(), (req, res) => {
    const { title, done } = (req.body ?? {}) as { title?: unknown; done?: unknown }
    if ((title !== undefined && typeof title !== 'string') || (done !== undefined && typeof done !== 'boolean')) {
      res.status(400).json({ error: 'title must be a string and done a boolean' })
      return
    }
    const todo = store.update(Number(req.params.id), {
      ...(title === undefined ? {} : { title }),
      ...(done === undefined ? {} : { done }),
    })
    if (todo === undefined) res.status(404).json({ error: 'no such todo' })
    else res.json(todo)
  })

  app.delete('/todos/:id', todos, (req, res) => {
    if (store.remove(Number(req.params.id))) res.status(204).end()
    else res.status(404).json({ error: 'no such todo' })
  })

  app.get('/stats', (_req, res) => {
    res.json({ cache: cache.stats(), storeReads: store.reads })
  })

  // express 5 passes rejected promises of async handlers here; answer JSON rather than an HTML page.
  app.use((err: Error & { status?: number }, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err)
    const status = err.status ?? 500
    res.status(status).json({ error: status === 500 ? 'internal error' : err.message })
  })

  return app
}
