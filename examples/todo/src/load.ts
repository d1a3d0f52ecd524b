import type { AppStats } from './app.js'
import type { Todo } from './repository.js'

export interface LoadOptions {
  /** The server under test, e.g. `http://127.0.0.1:41234`. Only loopback addresses are accepted. */
  baseUrl: string
  /** Distinct users. Default 20. */
  users?: number
  /** Measured requests (the set-up before them is not counted). Default 3000. */
  requests?: number
  /** Requests in flight at once. Default 20. */
  concurrency?: number
  /** Share of writes (create / update / delete); the rest are list reads. Default 0.1. */
  writeRatio?: number
  /** Stop issuing requests after this long, even if fewer than `requests` were sent. Default 10 s. */
  maxDurationMs?: number
  /** Todos created per user before measuring. Default 3. */
  initialTodos?: number
  /** User ids are `<prefix>01`, `<prefix>02`, …; use a fresh prefix per run against the same server. Default 'user-'. */
  userPrefix?: string
  /** Seed of the operation mix, so runs are comparable. Default 1. */
  seed?: number
}

export interface LoadResult {
  /** Measured requests sent (and answered or failed). */
  requests: number
  reads: number
  writes: number
  /** Requests that failed (network error or unexpected status). */
  errors: number
  /** Reads whose answer was not a state the user's list could have had at that moment (see `runLoad`). */
  violations: number
  /** Reads that were checked (all reads of users without a failed write). */
  checkedReads: number
  /** The first few failures and violations, for a human. */
  samples: string[]
  /** Wall time of the measured phase. */
  durationMs: number
  /** Requests per second over the measured phase. */
  throughput: number
  /** Latency of every measured request as the client saw it, ms. */
  latency: LatencySummary
  /** Time the server spent on each request, from its `server-timing` header; `null` when it sends none. */
  serverTime: LatencySummary | null
  /** Cache counters over the measured phase; `null` when the server runs without a cache. */
  cache: { hits: number; misses: number; hitRate: number; coalesced: number } | null
  /** Queries that reached the origin during the measured phase. */
  origin: { reads: number; writes: number }
  /** True when `maxDurationMs` ended the run before `requests` were sent. */
  timedOut: boolean
}

export interface LatencySummary {
  median: number
  p99: number
  mean: number
  max: number
}

/** What the generator knows about one user: the history of the list, as the server's write answers describe it. */
interface UserModel {
  id: string
  /** The list after 0, 1, 2, … writes, as canonical strings; `todos` is the last one as objects. */
  states: string[]
  /** `writes[k - 1]` describes the write that produced `states[k]`, for messages. */
  writes: string[]
  todos: Todo[]
  /** Writes sent and writes answered. Writes of one user are sent one at a time, so `started <= completed + 1`. */
  started: number
  completed: number
  writing: boolean
  /** A write failed, so the list's true state is unknown: its reads are no longer checked. */
  unknown: boolean
  /** Reads whose admissible window ends at a write not yet answered. */
  pending: { from: number; to: number; got: string }[]
}

const MAX_SAMPLES = 5

/**
 * Sends a bounded, seeded mix of list reads and writes over `fetch` and checks every read for staleness.
 *
 * The check is linearizability of each user's list: writes of one user are sent one at a time, reads at any time.
 * A read that started after `c` of the user's writes were answered and ended after `s` were sent must return the
 * list as it was after `k` writes, for some `k` in `c..s` (states come from the write answers). So a read issued after
 * a write completed always reflects it, and a read never returns a list that never existed.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const base = checkBaseUrl(options.baseUrl)
  const userCount = positiveInt(options.users ?? 20, 'users')
  const total = positiveInt(options.requests ?? 3000, 'requests')
  const concurrency = positiveInt(options.concurrency ?? 20, 'concurrency')
  const writeRatio = options.writeRatio ?? 0.1
  if (!(writeRatio >= 0 && writeRatio <= 1)) throw new RangeError(`writeRatio must be in 0..1 (got ${writeRatio})`)
  const maxDurationMs = options.maxDurationMs ?? 10_000
  const initialTodos = options.initialTodos ?? 3
  const prefix = options.userPrefix ?? 'user-'
  const random = mulberry32(options.seed ?? 1)
  const width = Math.max(2, String(userCount).length)

  const users: UserModel[] = Array.from({ length: userCount }, (_, i) => ({
    id: `${prefix}${String(i + 1).padStart(width, '0')}`,
    states: [],
    writes: [],
    todos: [],
    started: 0,
    completed: 0,
    writing: false,
    unknown: false,
    pending: [],
  }))

  const samples: string[] = []
  const note = (message: string) => {
    if (samples.length < MAX_SAMPLES) samples.push(message)
  }

  // Set-up, not measured: learn each list, then give it a few todos. Their states count as writes too.
  await Promise.all(
    users.map(async (user) => {
      const res = await fetch(`${base}/users/${user.id}/todos`)
      if (!res.ok) throw new Error(`set-up: GET ${user.id} answered ${res.status}: ${await res.text()}`)
      user.todos = parseList(await res.json())
      user.states.push(canonical(user.todos))
      for (let i = 0; i < initialTodos; i++) {
        const body = { title: `setup task ${i + 1}` }
        const created = await fetch(`${base}/users/${user.id}/todos`, json('POST', body))
        if (created.status !== 201) throw new Error(`set-up: POST ${user.id} answered ${created.status}`)
        user.todos = [...user.todos, parseTodo(await created.json())]
        user.states.push(canonical(user.todos))
        user.writes.push(`set-up POST /users/${user.id}/todos ${JSON.stringify(body)}`)
      }
      user.started = user.completed = user.states.length - 1
    }),
  )

  const before = await getStats(base)
  const latencies: number[] = []
  const serverTimes: number[] = []
  const timing = (res: Response) => {
    const match = /(?:^|,)\s*app;dur=([\d.]+)/.exec(res.headers.get('server-timing') ?? '')
    if (match !== null) serverTimes.push(Number(match[1]))
  }
  let issued = 0
  let reads = 0
  let writes = 0
  let errors = 0
  let violations = 0
  let checkedReads = 0
  let timedOut = false

  const admissible = (user: UserModel, from: number, to: number, got: string) => {
    checkedReads++
    for (let k = from; k <= to; k++) if (user.states[k] === got) return
    violations++
    const seen = user.states.lastIndexOf(got, from)
    const answered = from === 0 ? 'the set-up' : `write #${from} (${user.writes[from - 1]})`
    note(
      seen >= 0
        ? `stale read of ${user.id}: sent after ${answered} was answered, it returned the list as it was ` +
            `${seen === 0 ? 'before any write' : `after write #${seen}`} (${from - seen} write(s) behind)`
        : `impossible read of ${user.id}: sent after ${answered} was answered, it returned a list that never ` +
            `existed: ${abbreviate(got)}; expected ${abbreviate(user.states[to] ?? '?')}`,
    )
  }

  const read = async (user: UserModel) => {
    reads++
    const from = user.completed
    const started = performance.now()
    let body: unknown
    let status = 0
    try {
      const res = await fetch(`${base}/users/${user.id}/todos`)
      status = res.status
      timing(res)
      body = await res.json()
    } catch (err) {
      errors++
      note(`GET ${user.id} failed: ${String(err)}`)
      return
    } finally {
      latencies.push(performance.now() - started)
    }
    if (status !== 200) {
      errors++
      note(`GET ${user.id} answered ${status}: ${JSON.stringify(body)}`)
      return
    }
    if (user.unknown) return
    let got: string
    try {
      got = canonical(parseList(body))
    } catch (err) {
      violations++
      note(`GET ${user.id} answered something that is not a todo list: ${String(err)}`)
      return
    }
    const to = user.started
    if (to < user.states.length) admissible(user, from, to, got)
    else user.pending.push({ from, to, got })
  }

  const write = async (user: UserModel) => {
    writes++
    user.writing = true
    user.started++
    const todos = user.todos
    const roll = random()
    let request: { method: string; path: string; body?: unknown; expect: number }
    let target: Todo | undefined
    if (todos.length < 2 || (todos.length < 8 && roll < 0.4)) {
      request = { method: 'POST', path: '', body: { title: `task ${issued}` }, expect: 201 }
    } else if (todos.length > 8 || roll > 0.8) {
      target = todos[Math.floor(random() * todos.length)]!
      request = { method: 'DELETE', path: `/${target.id}`, expect: 204 }
    } else {
      target = todos[Math.floor(random() * todos.length)]!
      const body = random() < 0.5 ? { done: !target.done } : { title: `${target.title.split(' (')[0]} (edited)` }
      request = { method: 'PATCH', path: `/${target.id}`, body, expect: 200 }
    }
    const label = `${request.method} /users/${user.id}/todos${request.path}`
    const started = performance.now()
    let status = 0
    let answer: unknown
    try {
      const init: RequestInit =
        request.body === undefined ? { method: request.method } : json(request.method, request.body)
      const res = await fetch(`${base}/users/${user.id}/todos${request.path}`, init)
      status = res.status
      timing(res)
      answer = status === 204 ? undefined : await res.json()
    } catch (err) {
      status = -1
      answer = String(err)
    } finally {
      latencies.push(performance.now() - started)
    }
    try {
      if (status !== request.expect) throw new Error(`answered ${status}: ${JSON.stringify(answer)}`)
      let next: Todo[]
      if (request.method === 'POST') next = [...todos, parseTodo(answer)]
      else if (request.method === 'DELETE') next = todos.filter((todo) => todo !== target)
      else {
        const updated = parseTodo(answer)
        if (updated.id !== target!.id) throw new Error(`updated ${updated.id} instead of ${target!.id}`)
        next = todos.map((todo) => (todo === target ? updated : todo))
      }
      user.todos = next
      user.states.push(canonical(next))
      user.writes.push(`${label}${request.body === undefined ? '' : ` ${JSON.stringify(request.body)}`}`)
      user.completed++
    } catch (err) {
      errors++
      note(`${label} failed: ${err instanceof Error ? err.message : String(err)}`)
      // The write may or may not have been applied: this user's reads can no longer be judged.
      user.unknown = true
      user.pending = []
    }
    user.writing = false
    const settled = user.pending.filter((check) => check.to < user.states.length)
    user.pending = user.pending.filter((check) => check.to >= user.states.length)
    for (const check of settled) admissible(user, check.from, check.to, check.got)
  }

  const startedAt = performance.now()
  const deadline = startedAt + maxDurationMs
  const worker = async () => {
    while (issued < total) {
      if (performance.now() >= deadline) {
        timedOut = true
        return
      }
      issued++
      const start = Math.floor(random() * users.length)
      const writer = random() < writeRatio ? freeWriter(start) : undefined
      if (writer !== undefined) await write(writer)
      else await read(users[start]!)
    }
  }
  // One write per user at a time (see above): if this user is busy, the next free one writes instead.
  const freeWriter = (start: number) => {
    for (let i = 0; i < users.length; i++) {
      const candidate = users[(start + i) % users.length]!
      if (!candidate.writing && !candidate.unknown) return candidate
    }
    return undefined
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker))
  const durationMs = performance.now() - startedAt
  const after = await getStats(base)

  let cache: LoadResult['cache'] = null
  if (before.cache !== null && after.cache !== null) {
    const hits = after.cache.hits - before.cache.hits
    const misses = after.cache.misses - before.cache.misses
    const coalesced = after.cache.coalesced - before.cache.coalesced
    cache = { hits, misses, hitRate: hits + misses === 0 ? 0 : hits / (hits + misses), coalesced }
  }
  const requests = reads + writes
  return {
    requests,
    reads,
    writes,
    errors,
    violations,
    checkedReads,
    samples,
    durationMs,
    throughput: durationMs > 0 ? (requests / durationMs) * 1000 : 0,
    latency: summarize(latencies),
    serverTime: serverTimes.length === 0 ? null : summarize(serverTimes),
    cache,
    origin: {
      reads: after.origin.reads - before.origin.reads,
      writes: after.origin.writes - before.origin.writes,
    },
    timedOut,
  }
}

/** Median, p99 (nearest rank), mean and max of a set of latencies in ms. */
export function summarize(samples: readonly number[]): LatencySummary {
  if (samples.length === 0) return { median: 0, p99: 0, mean: 0, max: 0 }
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!
  const sum = sorted.reduce((a, b) => a + b, 0)
  return { median: rank(0.5), p99: rank(0.99), mean: sum / sorted.length, max: sorted[sorted.length - 1]! }
}

async function getStats(base: string): Promise<AppStats> {
  const res = await fetch(`${base}/stats`)
  if (!res.ok) throw new Error(`GET /stats answered ${res.status}`)
  return (await res.json()) as AppStats
}

function json(method: string, body: unknown): RequestInit {
  return { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
}

function parseTodo(value: unknown): Todo {
  const todo = value as Todo
  if (
    typeof todo !== 'object' ||
    todo === null ||
    typeof todo.id !== 'string' ||
    typeof todo.title !== 'string' ||
    typeof todo.done !== 'boolean'
  ) {
    throw new Error(`not a todo: ${JSON.stringify(value)}`)
  }
  return todo
}

function parseList(value: unknown): Todo[] {
  if (!Array.isArray(value)) throw new Error(`not a list: ${JSON.stringify(value)}`)
  return value.map(parseTodo)
}

/** The part of a list that writes change, in order. */
function canonical(todos: readonly Todo[]): string {
  return JSON.stringify(todos.map((todo) => [todo.id, todo.title, todo.done]))
}

function abbreviate(text: string): string {
  return text.length > 160 ? `${text.slice(0, 160)}…` : text
}

function checkBaseUrl(raw: string): string {
  const url = new URL(raw)
  const host = url.hostname
  if (!(host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host))) {
    throw new Error(`runLoad only targets loopback addresses (got ${host})`)
  }
  return url.origin
}

function positiveInt(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be an integer >= 1 (got ${value})`)
  return value
}

/** A small seeded PRNG (mulberry32): the same seed gives the same operation mix. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
