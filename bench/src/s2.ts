import { startRedis } from '@cache/testing'
import { Child, sharedNow } from './distributed.js'
import { type Percentiles, percentiles, type Stats, summarise } from './harness.js'

export const S2_PROCESSES = 4
export const S2_CALLERS = 50
export const S2_LOADER_MS = 50
const ROUNDS = 10
/** The barrier: every process fires at this long after the request was sent (enough for 4 processes to get it). */
const BARRIER_MS = 150

export interface S2Row {
  name: string
  lock: boolean
  /** Loader calls across all processes, one figure per round. */
  loaderCalls: number[]
  loaderStats: Stats
  callers: number
  gotValue: number
  /** Callers in processes that ran no loader: answer time minus the holder's loader time, ms. */
  waiters: Percentiles
  /** Callers in the process(es) that ran the loader: answer time minus that loader's time, ms. */
  holders: Percentiles
  /** Waiters: answer time minus the end of the holder's loader, ms (the write, the bus message, the read). */
  afterLoad: Percentiles
  /** How late the processes fired after the barrier, ms (max per round). */
  skew: Stats
}

export interface S2Result {
  type: 'cross-stampede'
  id: 'S2'
  title: string
  rows: S2Row[]
  notes: string[]
}

interface StampedeReply {
  loaderCalls: number
  loaderStart: number
  loaderEnd: number
  calledAt: number
  answeredAt: number[]
  gotValue: number
  /** ms this process fired after the barrier time. */
  late: number
}

/**
 * S2: k processes, each with its own tiered cache (memory over one Redis, redisBus), fire c concurrent `getOrSet`
 * of one cold key with a ~50 ms loader at the same instant; with `lock: true` and without, rounds interleaved.
 */
export async function s2(): Promise<S2Result> {
  const server = await startRedis()
  const children = Array.from({ length: S2_PROCESSES }, () => new Child([server.host, String(server.port)]))
  try {
    await Promise.all(children.map((c) => c.request({ cmd: 'ready' })))
    const modes = [true, false]
    const acc = new Map(
      modes.map((lock) => [
        lock,
        {
          loaderCalls: [] as number[],
          gotValue: 0,
          callers: 0,
          waiters: [] as number[],
          holders: [] as number[],
          afterLoad: [] as number[],
          skew: [] as number[],
        },
      ]),
    )
    // One untimed round per mode first: the first getOrSet of a process compiles the lock path.
    for (let round = -1; round < ROUNDS; round++) {
      for (const lock of round % 2 === 0 ? modes : [...modes].reverse()) {
        const key = `s2:${lock ? 'lock' : 'nolock'}:${round}:${process.hrtime.bigint()}`
        const at = sharedNow() + BARRIER_MS
        const replies = await Promise.all(
          children.map((c) =>
            c.request<StampedeReply>({
              cmd: 'stampede',
              key,
              lock,
              callers: S2_CALLERS,
              loaderMs: S2_LOADER_MS,
              at,
            }),
          ),
        )
        if (round < 0) continue
        const a = acc.get(lock)!
        a.loaderCalls.push(replies.reduce((n, r) => n + r.loaderCalls, 0))
        a.skew.push(Math.max(...replies.map((r) => r.late)))
        const holder = replies.find((r) => r.loaderCalls > 0)
        for (const r of replies) {
          a.callers += r.answeredAt.length
          a.gotValue += r.gotValue
          if (r.loaderCalls > 0) {
            // Its own loader: what the cache added on top of it (lock, double-check read, write, publish).
            const loadMs = r.loaderEnd - r.loaderStart
            for (const t of r.answeredAt) a.holders.push(t - r.calledAt - loadMs)
          } else if (holder !== undefined) {
            const loadMs = holder.loaderEnd - holder.loaderStart
            for (const t of r.answeredAt) {
              a.waiters.push(t - r.calledAt - loadMs)
              a.afterLoad.push(t - holder.loaderEnd)
            }
          }
        }
      }
    }
    const rows: S2Row[] = modes.map((lock) => {
      const a = acc.get(lock)!
      return {
        name: lock ? 'ours getOrSet, lock: true' : 'ours getOrSet, no lock',
        lock,
        loaderCalls: a.loaderCalls,
        loaderStats: summarise(a.loaderCalls),
        callers: a.callers,
        gotValue: a.gotValue,
        waiters: percentiles(a.waiters),
        holders: percentiles(a.holders),
        afterLoad: percentiles(a.afterLoad),
        skew: summarise(a.skew),
      }
    })
    return {
      type: 'cross-stampede',
      id: 'S2',
      title: `${S2_PROCESSES} processes × ${S2_CALLERS} concurrent getOrSet of one cold key, ${S2_LOADER_MS} ms loader, over one Redis`,
      rows,
      notes: [
        `redis-server ${server.address} (loopback, started by the bench); ${S2_PROCESSES} child processes ` +
          '`node --import tsx --conditions=@cache/source src/dist-child.ts`, each with ' +
          'createCache({ tiers: [memoryStore(), redisStore({ client })], bus: redisBus({ client }) }) and its own client',
        `${ROUNDS} rounds per mode, modes interleaved, a fresh key per round (one untimed round per mode first); ` +
          `barrier: each request carries a shared-clock instant ${BARRIER_MS} ms ahead and every process fires then ` +
          '(clock: performance.timeOrigin + performance.now(), one machine)',
        'added latency = (answer time − call time) − the loader time of the process that loaded; waiters: callers ' +
          'in processes that ran no loader; holder: callers in the process that did (lock, double-check, write, publish)',
        'target: exactly 1 loader call per round across all processes with lock: true; without it each process loads once',
      ],
    }
  } finally {
    await Promise.all(children.map((c) => c.stop()))
    await server.stop()
  }
}
