import { createRedlock } from '@cache/redis-lock'
import { Redlock as SesameRedlock } from '@sesamecare-oss/redlock'
import type { Redis } from 'ioredis'
import { RedlockMutex } from 'redis-semaphore'
import {
  type ContenderResult,
  type HarnessOptions,
  type Kind,
  type PairResult,
  percentiles,
  type Stats,
  summarise,
  type ThroughputResult,
} from './harness.js'
import { countSent, MASTERS, TTL_MS, withMasters } from './locks.js'

/** Independent clients, each with its own lock instance and its own connection to every master. */
const CLIENTS = 10
/** Acquisitions per client, one after the other. */
const PER_CLIENT = 100
const TOTAL = CLIENTS * PER_CLIENT
/** Wait between attempts, for every library. */
const RETRY_MS = 10
/** Random ± on that wait, where the library has one. */
const JITTER_MS = 5
/** Give up an acquisition after this long (a failed acquisition is reported; it should never happen). */
const GIVE_UP_MS = 30_000

/** Takes the lock on `resource`; resolves with its release. */
type Acquire = (resource: string) => Promise<() => Promise<unknown>>

interface Library {
  name: string
  kind: Kind
  /** One lock instance over one client's connections. */
  make(connections: Redis[]): Acquire
  /** The key it sets on each master for `resource`. */
  key(resource: string): string
}

const LIBRARIES: Library[] = [
  {
    name: 'ours',
    kind: 'ours',
    make(connections) {
      const redlock = createRedlock(connections, {
        retryCount: Number.POSITIVE_INFINITY,
        retryDelay: RETRY_MS,
        retryJitter: JITTER_MS,
        acquireTimeout: GIVE_UP_MS,
      })
      return async (resource) => {
        const lock = await redlock.acquire(resource, TTL_MS)
        return () => lock.release()
      }
    },
    key: (resource) => `lock:r:${resource}`,
  },
  {
    name: '@sesamecare-oss/redlock',
    kind: 'anchor',
    make(connections) {
      // No overall timeout: a count of retries that spans about as long. (retryCount -1, unlimited, would also
      // apply to release, which then retries without end if the lock is gone.)
      const redlock = new SesameRedlock(connections, {
        retryCount: Math.ceil(GIVE_UP_MS / RETRY_MS),
        retryDelay: RETRY_MS,
        retryJitter: JITTER_MS,
      })
      return async (resource) => {
        const lock = await redlock.acquire([resource], TTL_MS)
        return () => lock.release()
      }
    },
    key: (resource) => resource,
  },
  {
    name: 'redis-semaphore RedlockMutex',
    kind: 'anchor',
    make(connections) {
      // One mutex per acquisition (the key is bound at construction), as its docs do; it has no jitter.
      const options = { lockTimeout: TTL_MS, acquireTimeout: GIVE_UP_MS, retryInterval: RETRY_MS }
      return async (resource) => {
        const mutex = new RedlockMutex(connections, resource, options)
        await mutex.acquire()
        return () => mutex.release()
      }
    },
    key: (resource) => `mutex:${resource}`,
  },
]

interface Run {
  /** Acquisitions per second over the whole run (all clients). */
  rate: number
  /** Wait of every acquisition: from the call to acquire to the lock in hand, ms. */
  waits: number[]
  /** Acquisitions that found another holder inside the critical section (must be 0). */
  overlaps: number
  /** Increments lost by the read-modify-write under the lock (must be 0). */
  lost: number
  /** Acquisitions that gave up (must be 0). */
  failed: number
  /** Commands sent to one master per acquisition (retries show here). */
  commands: number
  /** Share of acquisitions won by the client that released last. */
  again: number
  /** Masters still holding the lock's key once every client released (must be 0). */
  left: number
}

/**
 * One run: every client takes the lock `perClient` times in a row on one shared resource. Inside the lock, each
 * checks that nobody else is inside (a shared in-process counter) and increments a Redis counter by GET then SET,
 * which loses updates if two holders overlap; then it leaves and releases.
 */
async function runOnce(
  lib: Library,
  clients: Acquire[],
  connections: Redis[][],
  sent: ReadonlyMap<string, number>,
  admin: Redis,
  resource: string,
  perClient: number,
): Promise<Run> {
  const counter = `${resource}:count`
  const waits: number[] = []
  let inside = 0
  let overlaps = 0
  let failed = 0
  let last = -1
  let again = 0
  const before = total(sent)
  const start = performance.now()
  await Promise.all(
    clients.map(async (acquire, c) => {
      const own = connections[c]![0]!
      for (let k = 0; k < perClient; k++) {
        const called = performance.now()
        let release: () => Promise<unknown>
        try {
          release = await acquire(resource)
        } catch {
          failed++
          continue
        }
        waits.push(performance.now() - called)
        if (inside !== 0) overlaps++
        inside++
        if (c === last) again++
        last = c
        const n = Number((await own.get(counter)) ?? 0)
        await own.set(counter, n + 1)
        inside--
        await release()
      }
    }),
  )
  const ms = performance.now() - start
  const commands = total(sent) - before
  const counted = Number((await admin.get(counter)) ?? 0)
  const left = (await Promise.all(connections[0]!.map((m) => m.exists(lib.key(resource))))).reduce((a, b) => a + b, 0)
  return {
    rate: waits.length / (ms / 1000),
    waits,
    overlaps,
    lost: waits.length - counted,
    failed,
    commands: commands / Math.max(1, waits.length),
    again: again / Math.max(1, waits.length),
    left,
  }
}

function total(counts: ReadonlyMap<string, number>): number {
  let n = 0
  for (const calls of counts.values()) n += calls
  return n
}

const ms = (n: number) => n.toFixed(1)
const range = (s: Stats, f: (n: number) => string) => `${f(s.median)} (${f(s.min)}–${f(s.max)})`

/**
 * L2: 10 clients × 100 acquisitions of one resource, on 5 independent redis-servers, for each library; runs
 * interleaved. Reported as a throughput result (acquisitions/s per run, ours/anchor per run) with the waits, the
 * mutual-exclusion checks and the commands per acquisition in the notes.
 */
export async function l2(opts: HarnessOptions): Promise<ThroughputResult> {
  // One timed run per library per round (BENCH_ROUNDS), interleaved.
  const runs = opts.rounds
  return withMasters(async (_servers, open) => {
    const connections = await Promise.all(Array.from({ length: CLIENTS }, open))
    const [admin] = await open()
    // The critical section talks to master 0; the lock traffic to master 1 is counted (the same for every library).
    const sent = countSent(connections.map((own) => own[1]!))
    const perLibrary = LIBRARIES.map((lib) => ({
      lib,
      clients: connections.map((own) => lib.make(own)),
      runs: [] as Run[],
    }))
    const stamp = `${process.pid}:${Date.now()}`
    // One short untimed run each: compiles the paths and loads the scripts on every master.
    for (const p of perLibrary)
      await runOnce(p.lib, p.clients, connections, sent, admin!, `l2:warm:${p.lib.name}:${stamp}`, 10)
    for (let round = 0; round < runs; round++) {
      for (let i = 0; i < perLibrary.length; i++) {
        const p = perLibrary[(i + round) % perLibrary.length]!
        // A fresh resource per run: nothing left from the previous run (or library) is in the way.
        p.runs.push(
          await runOnce(p.lib, p.clients, connections, sent, admin!, `l2:${p.lib.name}:${round}:${stamp}`, PER_CLIENT),
        )
      }
    }

    const contenders: ContenderResult[] = perLibrary.map((p) => {
      const rates = p.runs.map((r) => r.rate)
      return {
        name: p.lib.name,
        kind: p.lib.kind,
        passesPerBatch: 1,
        opsPerBatch: TOTAL,
        opsPerSec: rates,
        stats: summarise(rates),
      }
    })
    const ours = perLibrary[0]!
    const pairs: PairResult[] = perLibrary.slice(1).map((p) => {
      const perRound = ours.runs.map((r, i) => r.rate / p.runs[i]!.rate)
      return { ours: ours.lib.name, anchor: p.lib.name, target: null, perRound, stats: summarise(perRound), met: null }
    })
    const fairness = perLibrary.map((p) => {
      const per = p.runs.map((r) => percentiles(r.waits))
      const sum = (f: (r: Run) => number) => p.runs.reduce((n, r) => n + f(r), 0)
      return (
        `${p.lib.name}: wait per acquisition, ms, median (min–max) over runs: p50 ${range(summarise(per.map((x) => x.p50)), ms)}, ` +
        `p99 ${range(summarise(per.map((x) => x.p99)), ms)}, max ${range(summarise(per.map((x) => x.max)), ms)}; ` +
        `commands sent to one master per acquisition ${range(summarise(p.runs.map((r) => r.commands)), (n) => n.toFixed(1))}; ` +
        `won again by the client that released last ${range(summarise(p.runs.map((r) => r.again * 100)), (n) => n.toFixed(0))} %; ` +
        `overlapping holders ${sum((r) => r.overlaps)}, lost increments ${sum((r) => r.lost)}, ` +
        `failed acquisitions ${sum((r) => r.failed)}, masters still holding the key after the run ${sum((r) => r.left)} (all must be 0)`
      )
    })
    return {
      type: 'throughput',
      id: 'L2',
      title: `contended lock: ${CLIENTS} clients × ${PER_CLIENT} acquisitions of one resource, ${MASTERS} independent redis-servers`,
      rounds: runs,
      batchMs: opts.batchMs,
      contenders,
      pairs,
      notes: [
        `acquisitions/s = ${TOTAL} / wall time of a run; runs per library: ${runs}, interleaved (order rotated per ` +
          'round), a fresh resource per run, after one untimed run of 10 × 10 each; ratios per round, no target',
        ...fairness,
        `each client: its own lock instance over its own ${MASTERS} ioredis connections (defaults), all in this ` +
          'process; in the lock it checks that nobody else is inside (in-process counter) and increments a Redis ' +
          'counter by GET then SET on its own connection (loses updates if holders overlap), leaves, releases; ' +
          'then asks again at once',
        `retries: wait ${RETRY_MS} ms between attempts for all; ours and @sesamecare-oss/redlock ±${JITTER_MS} ms ` +
          `jitter (redis-semaphore has none); give up after ${GIVE_UP_MS / 1000} s (ours acquireTimeout, ` +
          `redis-semaphore acquireTimeout, @sesamecare-oss/redlock retryCount ${Math.ceil(GIVE_UP_MS / RETRY_MS)}); ` +
          `ttl ${TTL_MS} ms; everything else at each library's defaults`,
        'after a refused attempt ours and redis-semaphore delete whatever they got on a minority before waiting; ' +
          '@sesamecare-oss/redlock retries with its partial keys still set (only a final failure cleans up), and its ' +
          'acquire script refuses a key that exists even with its own value: a split such as 2-2-1 blocks everyone until ' +
          'those keys expire (ttl). Not seen in these runs if no wait comes near the ttl and no master still held the ' +
          'key after a run',
        'ours does one more round trip per acquisition than the others (RAISE, see L1), and waits for every master ' +
          '(or nodeTimeout) where @sesamecare-oss/redlock resolves on the 3rd vote',
      ],
    }
  })
}
