import { createRedlock } from '@cache/redis-lock'
import { Redlock as SesameRedlock } from '@sesamecare-oss/redlock'
import type { Redis } from 'ioredis'
import { RedlockMutex } from 'redis-semaphore'
import { type Contender, type HarnessOptions, inLanes, runThroughput, type ThroughputResult } from './harness.js'
import { countSent, MASTERS, perOp, TTL_MS, withMasters } from './locks.js'

/** Acquire + release cycles in one pass. */
const OPS = 100
/** In flight at once in the c=10 rows (10 distinct resources). */
const CONCURRENCY = 10
/** Resource names per contender, each used once per 16 384 operations, always after its release. */
const POOL = 16_384
const MASK = POOL - 1

/** `l1:<tag>:<i>` for i < POOL, made before any timing. */
function pool(tag: string): string[] {
  return Array.from({ length: POOL }, (_, i) => `l1:${tag}:${i}`)
}

/**
 * L1: uncontended acquire + release, each operation on a resource nobody else holds, against 5 independent
 * redis-servers (loopback, started here): `@cache/redis-lock` vs @sesamecare-oss/redlock and redis-semaphore's
 * RedlockMutex, sequentially (c=1) and with 10 operations in flight (c=10). Every acquisition must succeed: retries
 * are off, so a refusal is counted instead of hidden behind a retry delay, and the harness fails the run on it.
 */
export async function l1(opts: HarnessOptions): Promise<ThroughputResult> {
  return withMasters(async (_servers, open) => {
    // Each library its own 5 connections, identical options.
    const [oursClients, sesameClients, semaphoreClients] = await Promise.all([open(), open(), open()])
    // Retries off (see above); everything else as each library's docs show it for independent masters.
    const ours = createRedlock(oursClients, { retryCount: 0 })
    const sesame = new SesameRedlock(sesameClients, { retryCount: 0 })
    // One RedlockMutex per acquisition, as its docs do: the key is bound at construction. Default refreshInterval
    // (0.8 × lockTimeout): acquire starts a timer that release clears.
    const mutexOptions = { lockTimeout: TTL_MS, acquireAttemptsLimit: 1 }

    const oursOnce = (names: string[]) => {
      let at = 0
      return async (): Promise<boolean> => {
        try {
          const lock = await ours.acquire(names[at++ & MASK]!, TTL_MS)
          await lock.release()
          return true
        } catch {
          return false
        }
      }
    }
    const sesameOnce = (names: string[]) => {
      // Its acquire takes a list: one prepared per resource.
      const lists = names.map((n) => [n])
      let at = 0
      return async (): Promise<boolean> => {
        try {
          const lock = await sesame.acquire(lists[at++ & MASK]!, TTL_MS)
          await lock.release()
          return true
        } catch {
          return false
        }
      }
    }
    const semaphoreOnce = (names: string[], clients: Redis[]) => {
      let at = 0
      return async (): Promise<boolean> => {
        const mutex = new RedlockMutex(clients, names[at++ & MASK]!, mutexOptions)
        const held = await mutex.tryAcquire()
        await mutex.release()
        return held
      }
    }

    // Sequential rows: each writes its own loop around its own call.
    const sequential = (name: string, kind: Contender['kind'], op: () => Promise<boolean>): Contender => ({
      name,
      kind,
      expectPerPass: OPS,
      async batch(passes) {
        let held = 0
        for (let p = 0; p < passes; p++) for (let i = 0; i < OPS; i++) if (await op()) held++
        return held
      },
    })
    const lanes = (name: string, kind: Contender['kind'], op: () => Promise<boolean>): Contender => ({
      name,
      kind,
      expectPerPass: OPS,
      batch: (passes) => inLanes(passes * OPS, CONCURRENCY, op),
    })

    const oursSeq = oursOnce(pool('ours1'))
    const sesameSeq = sesameOnce(pool('sesame1'))
    const semaphoreSeq = semaphoreOnce(pool('semaphore1'), semaphoreClients)
    const contenders: Contender[] = [
      sequential('ours acquire+release (c=1)', 'ours', oursSeq),
      sequential('@sesamecare-oss/redlock (c=1)', 'anchor', sesameSeq),
      sequential('redis-semaphore RedlockMutex (c=1)', 'anchor', semaphoreSeq),
      lanes(`ours acquire+release (c=${CONCURRENCY})`, 'ours', oursOnce(pool('ours10'))),
      lanes(`@sesamecare-oss/redlock (c=${CONCURRENCY})`, 'anchor', sesameOnce(pool('sesame10'))),
      lanes(
        `redis-semaphore RedlockMutex (c=${CONCURRENCY})`,
        'anchor',
        semaphoreOnce(pool('semaphore10'), semaphoreClients),
      ),
    ]

    const result = await runThroughput(
      {
        id: 'L1',
        title: `uncontended lock acquire + release, ${MASTERS} independent redis-servers, a fresh resource per operation`,
        opsPerPass: OPS,
        contenders,
        pairs: [
          { ours: contenders[0]!.name, anchor: contenders[1]!.name, target: 1.0 },
          { ours: contenders[0]!.name, anchor: contenders[2]!.name, target: 1.0 },
          { ours: contenders[3]!.name, anchor: contenders[4]!.name },
          { ours: contenders[3]!.name, anchor: contenders[5]!.name },
        ],
      },
      opts,
    )

    // What each library sends to one master per acquire + release, counted on the client around 1 000 untimed
    // sequential cycles (after the timed rounds: the counting wrapper is never timed).
    const sent: string[] = []
    for (const [name, op, clients] of [
      ['ours', oursSeq, oursClients],
      ['@sesamecare-oss/redlock', sesameSeq, sesameClients],
      ['redis-semaphore', semaphoreSeq, semaphoreClients],
    ] as const) {
      const counts = countSent([clients[0]!])
      let held = 0
      for (let i = 0; i < 1000; i++) if (await op()) held++
      if (held !== 1000) throw new Error(`[bench] L1: ${name} held ${held} of 1000 locks`)
      sent.push(`${name} ${perOp(counts, 1000)}`)
    }

    result.notes.push(
      `${MASTERS} redis-servers on loopback (@cache/testing startRedises, no persistence), started by the bench; each ` +
        `library its own ${MASTERS} ioredis connections, \`new Redis({ host, port })\` (defaults); ttl ${TTL_MS} ms for all`,
      'ours: `createRedlock(clients, { retryCount: 0 })`, `await redlock.acquire(name, ttl)` then `await lock.release()`; ' +
        'defaults otherwise (driftFactor 0.01, nodeTimeout ttl/20). ' +
        '@sesamecare-oss/redlock: `new Redlock(clients, { retryCount: 0 })` (its documented defaults otherwise: ' +
        'driftFactor 0.01), `acquire([name], ttl)` then `lock.release()`. redis-semaphore: ' +
        '`new RedlockMutex(clients, name, { lockTimeout: ttl, acquireAttemptsLimit: 1 })` per acquisition (as its ' +
        'docs do), `tryAcquire()` then `release()`; its default refresh timer (0.8 × ttl) is started and cleared',
      'retries are off for all three: uncontended, none is ever needed, and a refusal then counts as a failure (the ' +
        'harness fails the run) instead of hiding behind a retry delay. The count of every batch is checked: figures ' +
        'are printed only if every acquisition succeeded',
      `resources: ${POOL} names per row, taken in turn (a name comes back only ${POOL} operations later, long after ` +
        `its release); c=${CONCURRENCY}: ${CONCURRENCY} acquire+release cycles in flight on distinct resources`,
      `commands sent to each master per acquire + release (counted on the connection to one master over 1 000 ` +
        `sequential cycles after the timed rounds): ${sent.join('; ')}`,
      'round trips are not equal: ours runs ACQUIRE on every master, then RAISE (lifts the fencing counters of the ' +
        'answering masters to the token before handing it out), then RELEASE: 3 sequential round trips, each waiting ' +
        'for every master (or its nodeTimeout). @sesamecare-oss/redlock runs 2 (acquire, release) and resolves each ' +
        'as soon as 3 of 5 masters agreed, leaving the other 2 answers in flight; it has no fencing token. ' +
        'redis-semaphore runs 2 (SET NX PX on every master, then a Lua delete-if-equal) and waits for all',
      'ours hands out the lock only if validity is left (ttl − elapsed − drift, monotonic clock) after the ' +
        'votes and after RAISE; @sesamecare-oss/redlock records start + ttl − drift as the expiration without ' +
        'checking it at acquire; redis-semaphore only counts the votes',
    )
    return result
  })
}
