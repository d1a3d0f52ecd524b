import { AsyncLocalStorage } from 'node:async_hooks'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type Cache, createCache, type Duration, isCacheError, memoryStore } from '@cache/core'
import { type Latency, type Todo, type TodoPatch, TodoRepository } from './repository.js'

export interface AppOptions {
  /**
   * The cache in front of the repository. `null` runs without one (every read reaches the origin). Default: a cache
   * on an in-memory store that the app creates, owns and closes; a cache you pass in stays yours to close.
   */
  cache?: Cache | null
  /** Simulated database round trip of the default repository. Default 5–15 ms. */
  latencyMs?: Latency
  /** The origin. Default: a new `TodoRepository` with `latencyMs`. */
  repository?: TodoRepository
  /** How long a user's list stays fresh in the cache. Default '30s'. */
  ttl?: Duration
}

export interface App {
  /** Not listening yet: call `listen()`, or `server.listen()` yourself. */
  readonly server: Server
  readonly cache: Cache | null
  readonly repository: TodoRepository
  /** Starts listening; resolves to the base URL, e.g. `http://127.0.0.1:41234`. */
  listen(port?: number, host?: string): Promise<string>
  /** Stops accepting, drops idle keep-alive connections, waits for requests in progress, then closes an owned cache. */
  close(): Promise<void>
}

/** What `GET /stats` answers. */
export interface AppStats {
  cache: ReturnType<Cache['stats']> | null
  origin: ReturnType<TodoRepository['stats']>
}

export type CacheOutcome = 'hit' | 'miss' | 'stale'

const MAX_BODY_BYTES = 16 * 1024
const MAX_TITLE_LENGTH = 200
/** Ids become cache keys and tags: keep them to a plain, bounded alphabet. */
const ID = /^[A-Za-z0-9_-]{1,64}$/
const ROUTE = /^\/users\/([^/]+)\/todos(?:\/([^/]+))?\/?$/

/** An answer other than 2xx, thrown by a handler and written as `{ "error": message }`. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
  }
}

/**
 * The Todo API of a multi-user backend, on plain `node:http`:
 *
 * - `GET    /users/:userId/todos`      the user's list (cached per user when there is a cache)
 * - `POST   /users/:userId/todos`      `{ "title": string }` -> 201 with the new todo
 * - `PATCH  /users/:userId/todos/:id`  `{ "title"?: string, "done"?: boolean }` -> 200 with the todo
 * - `DELETE /users/:userId/todos/:id`  -> 204
 * - `GET    /stats`                    `{ cache: cache.stats() | null, origin: { reads, writes } }`
 *
 * Each list is cached under `todos:<userId>` with the tag `user:<userId>`; a write invalidates that tag only, so one
 * user's writes never evict another user's list. List answers carry `x-cache: hit | miss | stale`, and every answer
 * `server-timing: app;dur=<ms>`, the time it spent in this server.
 */
export function createApp(options: AppOptions = {}): App {
  const ownsCache = options.cache === undefined
  const cache =
    options.cache === undefined ? createCache({ store: memoryStore({ maxEntries: 10_000 }) }) : options.cache
  const repository = options.repository ?? new TodoRepository({ latencyMs: options.latencyMs ?? { min: 5, max: 15 } })
  const ttl = options.ttl ?? '30s'

  // Which request a hit/miss event belongs to. Events are emitted inside the getOrSet call's async context, so this
  // stays right under any concurrency, agrees with `cache.stats()` (requests joining another's load count as misses)
  // and works for asynchronous stores too.
  const outcome = new AsyncLocalStorage<{ key: string; value: CacheOutcome | undefined }>()
  const unsubscribe: (() => void)[] = []
  if (cache !== null) {
    const record = (key: string, namespace: string, value: CacheOutcome) => {
      const current = outcome.getStore()
      if (current !== undefined && current.key === key && namespace === cache.namespaceName) current.value = value
    }
    unsubscribe.push(
      cache.on('hit', ({ key, namespace, stale }) => record(key, namespace, stale ? 'stale' : 'hit')),
      cache.on('miss', ({ key, namespace }) => record(key, namespace, 'miss')),
    )
  }

  async function listTodos(userId: string, signal: AbortSignal, res: ServerResponse): Promise<readonly Todo[]> {
    if (cache === null) return repository.list(userId, { signal })
    const key = `todos:${userId}`
    const state = { key, value: undefined as CacheOutcome | undefined }
    // The loader gets the cache's signal, not this request's: other requests may be waiting on the same load.
    const todos = await outcome.run(state, () =>
      cache.getOrSet<readonly Todo[]>(key, (ctx) => repository.list(userId, { signal: ctx.signal }), {
        ttl,
        tags: [`user:${userId}`],
      }),
    )
    if (state.value !== undefined) res.setHeader('x-cache', state.value)
    return todos
  }

  async function invalidate(userId: string): Promise<void> {
    if (cache !== null) await cache.invalidateTags([`user:${userId}`])
  }

  async function route(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
    const { pathname } = new URL(req.url ?? '/', 'http://localhost')
    const method = req.method ?? 'GET'

    if (pathname === '/stats') {
      if (method !== 'GET') throw new HttpError(405, `${method} is not allowed on /stats`, { allow: 'GET' })
      const stats: AppStats = { cache: cache?.stats() ?? null, origin: repository.stats() }
      return send(res, 200, stats)
    }

    const match = ROUTE.exec(pathname)
    if (match === null) throw new HttpError(404, `no route for ${method} ${pathname}`)
    const userId = pathId(match[1]!, 'user id')
    const todoId = match[2] === undefined ? undefined : pathId(match[2], 'todo id')

    if (todoId === undefined) {
      if (method === 'GET') return send(res, 200, await listTodos(userId, signal, res))
      if (method === 'POST') {
        const body = await readJson(req)
        const title = checkTitle(field(body, 'title'), true)!
        checkNoOtherFields(body, ['title'])
        const todo = await repository.create(userId, title, { signal })
        await invalidate(userId)
        return send(res, 201, todo)
      }
      throw new HttpError(405, `${method} is not allowed on a todo list`, { allow: 'GET, POST' })
    }

    if (method === 'PATCH') {
      const body = await readJson(req)
      const patch: TodoPatch = {}
      const title = checkTitle(field(body, 'title'), false)
      if (title !== undefined) patch.title = title
      const done = field(body, 'done')
      if (done !== undefined) {
        if (typeof done !== 'boolean') throw new HttpError(400, '"done" must be true or false')
        patch.done = done
      }
      checkNoOtherFields(body, ['title', 'done'])
      if (patch.title === undefined && patch.done === undefined) {
        throw new HttpError(400, 'nothing to update: send "title" and/or "done"')
      }
      const todo = await repository.update(userId, todoId, patch, { signal })
      if (todo === undefined) throw new HttpError(404, `user ${userId} has no todo ${todoId}`)
      await invalidate(userId)
      return send(res, 200, todo)
    }
    if (method === 'DELETE') {
      const existed = await repository.delete(userId, todoId, { signal })
      if (!existed) throw new HttpError(404, `user ${userId} has no todo ${todoId}`)
      await invalidate(userId)
      return send(res, 204, undefined)
    }
    throw new HttpError(405, `${method} is not allowed on a todo`, { allow: 'PATCH, DELETE' })
  }

  const server = createServer((req, res) => {
    startedAt.set(res, performance.now())
    // Aborted when the client goes away before the answer is sent: the repository stops waiting for it.
    const controller = new AbortController()
    res.on('close', () => {
      if (!res.writableFinished) controller.abort()
    })
    route(req, res, controller.signal).catch((err: unknown) => {
      if (controller.signal.aborted || res.headersSent) {
        if (!res.writableEnded) res.destroy()
        return
      }
      if (err instanceof HttpError) return send(res, err.status, { error: err.message }, err.headers)
      if (isCacheError(err, 'E_CLOSED')) return send(res, 503, { error: 'the server is shutting down' })
      console.error('[example-todo] unexpected error:', err)
      send(res, 500, { error: 'internal error' })
    })
  })

  let closing: Promise<void> | undefined
  return {
    server,
    cache,
    repository,
    listen(port = 0, host = '127.0.0.1') {
      return new Promise<string>((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, host, () => {
          server.off('error', reject)
          const address = server.address() as AddressInfo
          const hostname = address.family === 'IPv6' ? `[${address.address}]` : address.address
          resolve(`http://${hostname}:${address.port}`)
        })
      })
    },
    close() {
      closing ??= (async () => {
        if (server.listening) {
          const closed = new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())))
          server.closeIdleConnections()
          await closed
        }
        for (const off of unsubscribe) off()
        if (ownsCache) await cache?.close()
      })()
      return closing
    },
  }
}

/** When each request arrived, for its `server-timing` header. */
const startedAt = new WeakMap<ServerResponse, number>()

/** Writes a JSON answer (none for 204), with `server-timing: app;dur=<ms>`: the time spent in this server. */
function send(res: ServerResponse, status: number, payload: unknown, headers: Record<string, string> = {}): void {
  const started = startedAt.get(res)
  if (started !== undefined) res.setHeader('server-timing', `app;dur=${(performance.now() - started).toFixed(3)}`)
  if (status === 204) {
    res.writeHead(status, headers).end()
    return
  }
  const body = JSON.stringify(payload)
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  })
  res.end(body)
}

function pathId(raw: string, what: string): string {
  let id: string
  try {
    id = decodeURIComponent(raw)
  } catch {
    throw new HttpError(400, `${what} is not valid percent-encoding`)
  }
  if (!ID.test(id)) throw new HttpError(400, `${what} must be 1 to 64 characters of A-Z, a-z, 0-9, _ or -`)
  return id
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = req.headers['content-type']
  if (type !== undefined && !/^application\/([\w.+-]+\+)?json\b/i.test(type)) {
    throw new HttpError(415, `send JSON (content-type: application/json), not ${type}`)
  }
  if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES) {
    throw new HttpError(413, `the body is over ${MAX_BODY_BYTES} bytes`)
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `the body is over ${MAX_BODY_BYTES} bytes`)
    chunks.push(chunk)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  if (text.trim() === '') throw new HttpError(400, 'the body is empty: send a JSON object')
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw new HttpError(400, 'the body is not valid JSON')
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, 'the body must be a JSON object')
  }
  return body as Record<string, unknown>
}

function field(body: Record<string, unknown>, name: string): unknown {
  return Object.hasOwn(body, name) ? body[name] : undefined
}

function checkTitle(title: unknown, required: boolean): string | undefined {
  if (title === undefined) {
    if (required) throw new HttpError(400, '"title" is required')
    return undefined
  }
  if (typeof title !== 'string') throw new HttpError(400, '"title" must be a string')
  const trimmed = title.trim()
  if (trimmed === '') throw new HttpError(400, '"title" must not be empty')
  if (trimmed.length > MAX_TITLE_LENGTH) throw new HttpError(400, `"title" is over ${MAX_TITLE_LENGTH} characters`)
  return trimmed
}

function checkNoOtherFields(body: Record<string, unknown>, allowed: readonly string[]): void {
  const unknown = Object.keys(body).filter((name) => !allowed.includes(name))
  if (unknown.length > 0) throw new HttpError(400, `unknown field(s): ${unknown.map((n) => `"${n}"`).join(', ')}`)
}
