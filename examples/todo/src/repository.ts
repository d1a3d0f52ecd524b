import { setTimeout as sleep } from 'node:timers/promises'

/** One task. Immutable: an update stores a new object, so a list handed out (and cached) never changes under you. */
export interface Todo {
  readonly id: string
  readonly title: string
  readonly done: boolean
  readonly createdAt: string
  readonly updatedAt: string
}

export interface TodoPatch {
  title?: string
  done?: boolean
}

/** A fixed round trip in ms, or a uniformly random one in `[min, max]`. */
export type Latency = number | { min: number; max: number }

export interface RepositoryOptions {
  /** Simulated database round trip of every call. Default 5–15 ms. */
  latencyMs?: Latency
  /** Random source for the latency (tests can make it deterministic). Default `Math.random`. */
  random?: () => number
}

export interface RepositoryStats {
  /** List queries that reached the database. */
  reads: number
  /** Write statements that reached the database (applied or not found). */
  writes: number
}

interface CallOptions {
  signal?: AbortSignal | undefined
}

/**
 * The origin: an in-process stand-in for a database, deliberately slow. Every call waits half a simulated round trip
 * before it touches the data (the query travelling to the server) and half after (the answer travelling back), so
 * reads and writes overlap the way they do against a real database.
 *
 * The `signal` is honoured until the statement is applied: a read can be abandoned at any point, a write only before
 * it commits. After the commit the call always resolves, as a database does not undo a write whose client left.
 */
export class TodoRepository {
  private readonly users = new Map<string, Map<string, Todo>>()
  private readonly latency: { min: number; max: number }
  private readonly random: () => number
  private seq = 0
  private counters: RepositoryStats = { reads: 0, writes: 0 }

  constructor(options: RepositoryOptions = {}) {
    const latency = options.latencyMs ?? { min: 5, max: 15 }
    this.latency = typeof latency === 'number' ? { min: latency, max: latency } : { ...latency }
    const { min, max } = this.latency
    if (!(Number.isFinite(min) && Number.isFinite(max) && min >= 0 && max >= min)) {
      throw new RangeError(`latencyMs must be >= 0 with min <= max (got ${JSON.stringify(latency)})`)
    }
    this.random = options.random ?? Math.random
  }

  /** The user's todos in creation order, as a frozen array (empty for a user who has none). */
  async list(userId: string, options: CallOptions = {}): Promise<readonly Todo[]> {
    const back = await this.travel(options.signal)
    this.counters.reads++
    const todos = Object.freeze([...(this.users.get(userId)?.values() ?? [])])
    await sleep(back, undefined, { signal: options.signal })
    return todos
  }

  async create(userId: string, title: string, options: CallOptions = {}): Promise<Todo> {
    const back = await this.travel(options.signal)
    this.counters.writes++
    const now = new Date().toISOString()
    const todo: Todo = Object.freeze({ id: String(++this.seq), title, done: false, createdAt: now, updatedAt: now })
    let todos = this.users.get(userId)
    if (todos === undefined) {
      todos = new Map()
      this.users.set(userId, todos)
    }
    todos.set(todo.id, todo)
    await sleep(back)
    return todo
  }

  /** Resolves to the updated todo, or `undefined` when the user has no todo with this id. */
  async update(userId: string, id: string, patch: TodoPatch, options: CallOptions = {}): Promise<Todo | undefined> {
    const back = await this.travel(options.signal)
    this.counters.writes++
    const todos = this.users.get(userId)
    const current = todos?.get(id)
    let updated: Todo | undefined
    if (todos !== undefined && current !== undefined) {
      updated = Object.freeze({
        ...current,
        ...(patch.title !== undefined && { title: patch.title }),
        ...(patch.done !== undefined && { done: patch.done }),
        updatedAt: new Date().toISOString(),
      })
      todos.set(id, updated) // same key: keeps its place in the list
    }
    await sleep(back)
    return updated
  }

  /** Resolves to whether the todo existed. */
  async delete(userId: string, id: string, options: CallOptions = {}): Promise<boolean> {
    const back = await this.travel(options.signal)
    this.counters.writes++
    const existed = this.users.get(userId)?.delete(id) ?? false
    await sleep(back)
    return existed
  }

  stats(): RepositoryStats {
    return { ...this.counters }
  }

  /** Waits for the outbound half of a round trip; returns how long the way back takes. */
  private async travel(signal: AbortSignal | undefined): Promise<number> {
    signal?.throwIfAborted()
    const { min, max } = this.latency
    const trip = min + (max - min) * this.random()
    await sleep(trip / 2, undefined, { signal })
    return trip / 2
  }
}
