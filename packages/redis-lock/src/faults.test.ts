// The fault-injection suite: real redis-server processes, real Node contenders in child processes, real kill -9,
// SIGSTOP and restarts. Times are compared on `performance.timeOrigin + performance.now()` (see fixtures/contender.ts).
// Durations are logged, never asserted: the CI box is small and shared.
import { type ChildProcess, fork } from 'node:child_process'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { type RedisServer, startRedis, startRedises } from '@cache/testing'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { Command, Grant, Held, Init, Report, Woke } from './fixtures/contender.js'
import { createRedlock, type LockError, setIfFresher } from './index.js'

const here = dirname(fileURLToPath(import.meta.url))
const CONTENDER = join(here, 'fixtures', 'contender.ts')
const now = () => performance.timeOrigin + performance.now()

let servers: RedisServer[]
let clients: Redis[]
/** The protected resource lives here, apart from the lock's nodes, so killing those never touches it. */
let store: RedisServer
let db: Redis
const paused = new Set<RedisServer>()
const children = new Set<Contender>()
let n = 0
const res = (name = 'r') => `f${process.pid}-${++n}-${name}`

// Fail fast while a node is down (no offline queue, no retries), and reconnect quickly after a restart.
async function client(port: number): Promise<Redis> {
  const c = new Redis({
    host: '127.0.0.1',
    port,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => 20,
  })
  c.on('error', () => {}) // reconnection errors while a node is down are expected
  await ready(c)
  return c
}

async function ready(c: Redis): Promise<void> {
  if (c.status === 'ready') return
  await new Promise((resolve) => c.once('ready', resolve))
}

/** A lock contender in its own process (fixtures/contender.ts), driven over IPC. */
class Contender {
  readonly reports: Report[] = []
  private readonly proc: ChildProcess
  private listeners = new Set<() => void>()
  exited = false

  private constructor() {
    // tsx runs the TypeScript fixture; the condition makes @cache/* resolve to their sources, as in vitest.
    this.proc = fork(CONTENDER, [], {
      cwd: dirname(here),
      execArgv: ['--import', 'tsx', '--conditions=@cache/source'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    this.proc.on('message', (report: Report) => {
      this.reports.push(report)
      for (const listener of this.listeners) listener()
    })
    this.proc.on('exit', () => {
      this.exited = true
      for (const listener of this.listeners) listener()
    })
    children.add(this)
  }

  static async start(init: Omit<Init, 'type'>): Promise<Contender> {
    const child = new Contender()
    child.send({ type: 'init', ...init })
    await child.waitFor((r) => r.type === 'ready', 30_000, 'the contender to connect')
    return child
  }

  get pid(): number {
    return this.proc.pid!
  }

  send(cmd: Command): void {
    this.proc.send(cmd)
  }

  of<T extends Report['type']>(type: T): Extract<Report, { type: T }>[] {
    return this.reports.filter((r): r is Extract<Report, { type: T }> => r.type === type)
  }

  /** Resolves with the first report matching `test` (also one already received); rejects after `ms`. */
  waitFor(test: (r: Report) => boolean, ms: number, what: string): Promise<Report> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.reports.find(test)
        if (found || this.exited) {
          clearTimeout(timer)
          this.listeners.delete(check)
          if (found) resolve(found)
          else reject(new Error(`contender ${this.pid} exited while waiting for ${what}`))
        }
      }
      const timer = setTimeout(() => {
        this.listeners.delete(check)
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`))
      }, ms)
      this.listeners.add(check)
      check()
    })
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.exited) this.proc.kill(sig)
  }

  async close(): Promise<void> {
    children.delete(this)
    if (this.exited) return
    const exited = new Promise((resolve) => this.proc.once('exit', resolve))
    this.proc.kill('SIGCONT') // a stopped process cannot exit on its own
    if (this.proc.connected) this.proc.disconnect()
    const late = setTimeout(() => this.proc.kill('SIGKILL'), 3_000)
    await exited
    clearTimeout(late)
  }
}

/** Waits until `test()` holds, checking every 10 ms; rejects after `ms` (the bound that keeps a hang from passing). */
async function until(test: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(10)
  }
}

interface Safety {
  grants: number
  overlaps: string[]
  tokenInversions: string[]
  /** Smallest gap between one holder's end and the next holder's start, ms. */
  minGap: number
}

/**
 * Puts the holders in the order they got the lock and checks that each window [acquiredAt, end] closed before the
 * next one opened (no tolerance), and that the fencing tokens rise strictly in that order.
 */
function safety(grants: readonly Grant[]): Safety {
  const sorted = [...grants].sort((a, b) => a.acquiredAt - b.acquiredAt)
  const overlaps: string[] = []
  const tokenInversions: string[] = []
  let minGap = Number.POSITIVE_INFINITY
  for (let i = 1; i < sorted.length; i++) {
    const [prev, next] = [sorted[i - 1]!, sorted[i]!]
    const gap = next.acquiredAt - prev.end
    minGap = Math.min(minGap, gap)
    if (!(gap > 0)) {
      overlaps.push(
        `#${i}: pid ${prev.pid} token ${prev.token} held until ${prev.end.toFixed(3)}, pid ${next.pid} token ${next.token} from ${next.acquiredAt.toFixed(3)}`,
      )
    }
    if (!(next.token > prev.token)) {
      tokenInversions.push(`#${i}: token ${next.token} (pid ${next.pid}) after ${prev.token} (pid ${prev.pid})`)
    }
  }
  return { grants: sorted.length, overlaps, tokenInversions, minGap }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN
const ms = (x: number) => `${x.toFixed(1)} ms`

/** Gives back every node a test killed or paused, with a fresh client. */
async function heal(list: RedisServer[], conns: Redis[]): Promise<void> {
  for (const [i, s] of list.entries()) {
    if (paused.has(s)) {
      await s.resume()
      paused.delete(s)
    }
    if (!s.running) {
      await s.restart()
      conns[i]!.disconnect()
      conns[i] = await client(s.port)
    }
    await ready(conns[i]!)
  }
}

async function pause(s: RedisServer): Promise<void> {
  await s.pause()
  paused.add(s)
}

async function resume(s: RedisServer): Promise<void> {
  await s.resume()
  paused.delete(s)
}

beforeAll(async () => {
  ;[servers, store] = await Promise.all([startRedises(5), startRedis()])
  clients = await Promise.all(servers.map((s) => client(s.port)))
  db = await client(store.port)
})
afterAll(async () => {
  await Promise.all([...children].map((c) => c.close()))
  for (const c of [...clients, db]) c.disconnect()
  await Promise.all([...servers, store].map((s) => s.stop()))
})
afterEach(async () => {
  await Promise.all([...children].map((c) => c.close()))
  await heal(servers, clients)
})

const base = (resource: string, ttl: number, options: Init['options']): Omit<Init, 'type'> => ({
  ports: servers.map((s) => s.port),
  resourcePort: store.port,
  options,
  resource,
  guarded: `${resource}:guarded`,
  ttl,
})

describe('contention between processes', () => {
  it('1 000 acquisitions by 4 processes: no two validity windows overlap, tokens rise, no write is lost', async () => {
    const init = base(res(), 200, {
      retryCount: 100_000,
      acquireTimeout: '20s',
      retryDelay: 5,
      retryJitter: 4,
      nodeTimeout: 50,
    })
    const procs = await Promise.all(Array.from({ length: 4 }, () => Contender.start(init)))
    const started = now()
    // Two of each process's 250 holders let the lock expire instead of releasing it: their windows end at their
    // validity, which is where the drift allowance and the monotonic clock matter.
    for (const p of procs) p.send({ type: 'loop', count: 250, expireEvery: 125 })
    await Promise.all(procs.map((p) => p.waitFor((r) => r.type === 'done', 50_000, '250 acquisitions')))
    const elapsed = now() - started
    const grants = procs.flatMap((p) => p.of('grant'))
    const failures = procs.flatMap((p) => p.of('failure'))
    const check = safety(grants)
    const stored = await db.hgetall(init.guarded)
    const maxToken = Math.max(...grants.map((g) => g.token))
    const rejected = grants.filter((g) => !g.wrote)
    console.info(
      `[faults] contention: ${check.grants} grants by ${procs.length} processes in ${ms(elapsed)}, ${failures.length} failures, ` +
        `overlaps ${check.overlaps.length}, token inversions ${check.tokenInversions.length}, min gap ${ms(check.minGap)}, ` +
        `tokens ${Math.min(...grants.map((g) => g.token))}..${maxToken}, writes refused ${rejected.length}, ` +
        `overran ${grants.filter((g) => g.overran).length}, counter ${stored.value}`,
    )
    expect(failures).toEqual([])
    expect(check.grants).toBe(1000)
    expect(new Set(grants.map((g) => g.pid)).size).toBe(4)
    expect(check.overlaps).toEqual([])
    expect(check.tokenInversions).toEqual([])
    // Mutual exclusion makes the read-modify-write exact; a write refused by the fencing check is only acceptable
    // from a holder whose validity ran out before it wrote.
    expect(rejected.filter((g) => !g.overran)).toEqual([])
    expect(Number(stored.value)).toBe(grants.length - rejected.length)
    expect(Number(stored.token)).toBe(maxToken)
  }, 60_000)
})

describe('nodes killed and restarted during a run', () => {
  it('keeps going with 4/5 and 3/5, fails cleanly with 2/5, recovers after the restart', async () => {
    const ttl = 300
    const init = base(res(), ttl, {
      retryCount: 3,
      retryDelay: 10,
      retryJitter: 5,
      nodeTimeout: 50,
      acquireTimeout: '2s',
    })
    const procs = await Promise.all(Array.from({ length: 3 }, () => Contender.start(init)))
    for (const p of procs) p.send({ type: 'loop', pause: 1, probe: true })
    const grants = () => procs.flatMap((p) => p.of('grant'))
    const failures = () => procs.flatMap((p) => p.of('failure'))
    const grantsSince = (t: number) => grants().filter((g) => g.start > t).length

    const phases: { name: string; at: number }[] = [{ name: '5/5', at: now() }]
    await until(() => grantsSince(phases[0]!.at) >= 60, 20_000, '60 grants with 5 nodes')
    await servers[0]!.kill()
    phases.push({ name: '4/5', at: now() })
    await until(() => grantsSince(phases[1]!.at) >= 60, 20_000, '60 grants with 4 nodes')
    await servers[1]!.kill()
    phases.push({ name: '3/5', at: now() })
    await until(() => grantsSince(phases[2]!.at) >= 60, 20_000, '60 grants with 3 nodes')
    await servers[2]!.kill()
    const down = now()
    phases.push({ name: '2/5', at: down })
    // Every attempt ends within retryCount × (nodeTimeout + retryDelay + jitter): the bound below is what "no hang"
    // means here, and each process must have failed at least twice.
    await until(
      () => procs.every((p) => p.of('failure').filter((f) => f.start > down).length >= 2),
      10_000,
      'two failed acquisitions in each process with 2 of 5 nodes',
    )
    const restarting = now()
    phases.push({ name: 'restarting', at: restarting })
    await Promise.all([0, 1, 2].map((i) => servers[i]!.restart()))
    const up = now()
    phases.push({ name: '5/5 again', at: up })
    await until(() => grantsSince(up) >= 60, 20_000, '60 grants after the restart')
    for (const p of procs) p.send({ type: 'stop' })
    await Promise.all(procs.map((p) => p.waitFor((r) => r.type === 'done', 10_000, 'the loop to stop')))

    const all = grants()
    const downFailures = failures().filter((f) => f.start > down && f.end < restarting)
    const byPhase = phases.map((phase, i) => {
      const next = phases[i + 1]?.at ?? Number.POSITIVE_INFINITY
      return `${phase.name}: ${all.filter((g) => g.start > phase.at && g.start < next).length}`
    })
    const durations = downFailures.map((f) => f.end - f.start)
    const before = all.filter((g) => g.acquiredAt < down)
    const after = all.filter((g) => g.start > up)
    const check = safety(all)
    const maxBefore = Math.max(...before.map((g) => g.token))
    console.info(
      `[faults] kill run: grants ${byPhase.join(', ')}; failures with 2/5: ${downFailures.length} ` +
        `(${[...new Set(downFailures.map((f) => f.code))].join(', ')}, median ${ms(median(durations))}, max ${ms(Math.max(...durations))}); ` +
        `overlaps ${check.overlaps.length}; tokens before the majority went down ..${maxBefore}, ` +
        `after the restart ${Math.min(...after.map((g) => g.token))}..${Math.max(...after.map((g) => g.token))}`,
    )
    // Acquisitions went on with one and two nodes down.
    expect(grantsSince(phases[1]!.at)).toBeGreaterThan(0)
    // With 2 of 5: nothing granted (an attempt that began then may succeed once the restart began), every attempt
    // refused with the documented error, after its retries.
    expect(all.filter((g) => g.start > down && g.acquiredAt < restarting)).toEqual([])
    expect(downFailures.length).toBeGreaterThanOrEqual(6)
    for (const f of downFailures) {
      expect(f.code).toBe('E_LOCK_NOT_ACQUIRED')
      expect(f.attempts).toBe(4)
    }
    // No two holders overlapped over the whole run, restarts included (no one held while the majority was down).
    expect(check.overlaps).toEqual([])
    // Tokens rise strictly up to the loss of the majority, and again among the holders after the restart.
    expect(safety(before).tokenInversions).toEqual([])
    expect(safety(after).tokenInversions).toEqual([])
    // The nodes came back empty (no persistence): see 'fencing counters across restarts' for what that does to the
    // tokens. Whatever the tokens did, setIfFresher never let an older token overwrite a newer one.
    const stored = await db.hgetall(init.guarded)
    expect(Number(stored.token)).toBe(Math.max(...all.filter((g) => g.wrote).map((g) => g.token)))
    for (const g of all.filter((x) => !x.wrote)) expect(g.overran || g.token < Number(stored.token)).toBe(true)
  }, 60_000)
})

describe('fencing counters across restarts', () => {
  // Acquire a few times, then kill -9 and restart the nodes of each round in turn (nothing acquired in between),
  // then take the `away` nodes down so the next quorum is made of the others: the token it hands out shows what
  // their counters remember. Everything is given back at the end.
  async function tokenAfterRestarts(list: RedisServer[], conns: Redis[], rounds: number[][], away: number[]) {
    const redlock = createRedlock(conns, { retryCount: 2, retryDelay: 20, nodeTimeout: 100 })
    const r = res()
    let last = 0
    for (let i = 0; i < 5; i++) {
      const lock = await redlock.acquire(r, '2s')
      last = lock.fencingToken
      await lock.release()
    }
    for (const round of rounds) {
      await Promise.all(round.map((i) => list[i]!.kill()))
      await Promise.all(round.map((i) => list[i]!.restart()))
      await Promise.all(round.map((i) => ready(conns[i]!)))
    }
    await Promise.all(away.map((i) => list[i]!.kill()))
    const lock = await redlock.acquire(r, '2s')
    await lock.release()
    await Promise.all(away.map((i) => list[i]!.restart()))
    await Promise.all(conns.map(ready))
    return { last, token: lock.fencingToken }
  }

  // Without persistence the counters live in memory. Any two quorums share a node, so tokens keep rising as long as
  // every quorum contains a node that kept its counter (or was raised since its restart). When a whole quorum lost
  // its state, counting starts over and tokens go back: after a majority restarts, and also after minorities
  // restarting one after the other. (The lock stays exclusive across such restarts only with the Redis docs' delayed
  // restart, a node coming back after the longest ttl; the tokens need persistence.) setIfFresher then refuses the
  // newer holders' writes: safe, but unavailable until the tokens pass the stored one.
  it('without persistence: a restarted minority is covered by the quorum overlap', async () => {
    const { last, token } = await tokenAfterRestarts(servers, clients, [[0, 1]], [3, 4])
    console.info(`[faults] no persistence, 0+1 restarted, quorum 0,1,2: token ${last} -> ${token}`)
    expect(token).toBeGreaterThan(last)
  })

  it('without persistence: after a majority restarts, or minorities one after the other, tokens go back (documented limit)', async () => {
    const majority = await tokenAfterRestarts(servers, clients, [[0, 1, 2]], [3, 4])
    const rolling = await tokenAfterRestarts(
      servers,
      clients,
      [
        [0, 1],
        [2, 3],
      ],
      [4],
    )
    console.info(
      `[faults] no persistence: majority restart ${majority.last} -> ${majority.token}, rolling restart ${rolling.last} -> ${rolling.token}`,
    )
    expect(majority.token).toBeLessThan(majority.last)
    expect(rolling.token).toBeLessThan(rolling.last)
  })

  it('with appendonly + appendfsync always: tokens keep rising across kill -9 of minorities and of a majority', async () => {
    const durable = await startRedises(5, { appendonly: true, appendfsync: 'always' })
    const conns = await Promise.all(durable.map((s) => client(s.port)))
    try {
      const minority = await tokenAfterRestarts(durable, conns, [[0, 1]], [3, 4])
      const rolling = await tokenAfterRestarts(
        durable,
        conns,
        [
          [0, 1],
          [2, 3],
        ],
        [4],
      )
      const majority = await tokenAfterRestarts(durable, conns, [[0, 1, 2]], [3, 4])
      console.info(
        `[faults] appendfsync always: minority ${minority.last} -> ${minority.token}, rolling ${rolling.last} -> ${rolling.token}, majority ${majority.last} -> ${majority.token}`,
      )
      expect(minority.token).toBeGreaterThan(minority.last)
      expect(rolling.token).toBeGreaterThan(rolling.last)
      expect(majority.token).toBeGreaterThan(majority.last)
    } finally {
      for (const c of conns) c.disconnect()
      await Promise.all(durable.map((s) => s.stop()))
    }
  }, 30_000)
})

describe('a paused node', () => {
  it('SIGSTOP of one node beyond nodeTimeout: acquisitions go on with the others, slower by about nodeTimeout', async () => {
    const nodeTimeout = 50
    const ttl = 2000
    const redlock = createRedlock(clients, { retryCount: 0, nodeTimeout })
    const r = res()
    const round = async () => {
      const start = now()
      const lock = await redlock.acquire(r, ttl)
      const took = now() - start
      await lock.release()
      return took
    }
    const normal: number[] = []
    for (let i = 0; i < 10; i++) normal.push(await round())
    await pause(servers[0]!)
    const slowed: number[] = []
    for (let i = 0; i < 10; i++) slowed.push(await round())
    await resume(servers[0]!)
    console.info(
      `[faults] paused node: acquire+release median ${ms(median(normal))} with 5 answering, ${ms(median(slowed))} ` +
        `(max ${ms(Math.max(...slowed))}) with one stopped; nodeTimeout ${nodeTimeout} ms, ttl ${ttl} ms`,
    )
    // Every one of them was granted (retryCount 0: at the first attempt) while the node was stopped.
    expect(slowed).toHaveLength(10)
  })

  it('after SIGCONT, the paused node keeps no lock of an attempt that had given up on it', async () => {
    const redlock = createRedlock(clients, { retryCount: 0, nodeTimeout: 50 })
    const r = res()
    // A node that lost its script cache (a restart, SCRIPT FLUSH) answers NOSCRIPT first.
    await clients[0]!.script('FLUSH')
    await pause(servers[0]!)
    const lock = await redlock.acquire(r, '3s')
    await lock.release()
    await resume(servers[0]!)
    // The node now runs what was queued while it was stopped; give any late command time to arrive.
    await sleep(200)
    const left = await clients[0]!.get(`lock:r:${r}`)
    console.info(
      `[faults] paused node after SIGCONT: lock key ${left === null ? 'absent' : `still set to the released lock's value (${left === lock.value})`}`,
    )
    expect(left).toBeNull()
  })
})

describe('a paused holder', () => {
  async function pausedHolder(watch: boolean) {
    const ttl = 400
    const init = base(res(), ttl, { retryCount: 0, nodeTimeout: 50 })
    const holder = await Contender.start(init)
    // watch: the holder waits on lock.signal (as an I/O call given the signal would). Otherwise it is in a plain
    // wait that ends well inside its validity, then writes.
    holder.send({ type: 'hold', work: watch ? 5_000 : 150, watch })
    const held = (await holder.waitFor((r) => r.type === 'held', 10_000, 'the lock')) as Held
    holder.signal('SIGSTOP')
    // Another process (this one) gets the lock once the holder's keys expired, and writes with its newer token.
    const redlock = createRedlock(clients, { retryCount: 200, retryDelay: 20, retryJitter: 5, nodeTimeout: 50 })
    const next = await redlock.acquire(init.resource, ttl)
    const acquiredAt = now()
    expect(await setIfFresher(db, init.guarded, 'next', next.fencingToken)).toBe(true)
    await sleep(50)
    holder.signal('SIGCONT')
    const woke = (await holder.waitFor((r) => r.type === 'woke', 10_000, 'the holder to wake')) as Woke
    await next.release()
    console.info(
      `[faults] paused holder (${watch ? 'waiting on lock.signal' : 'plain wait'}): token ${held.token}, next holder ` +
        `token ${next.fencingToken} from ${ms(acquiredAt - held.validUntil)} after the validity; on wake ` +
        `(${ms(woke.wokeAt - held.validUntil)} after it) signal.aborted=${woke.abortedOnWake}, abort event ` +
        `${woke.abortAt === undefined ? 'not yet' : `${ms(woke.abortAt - held.validUntil)} after the validity`} (${woke.reason}), late write ${woke.wrote ? 'ACCEPTED' : 'refused'}`,
    )
    expect(acquiredAt).toBeGreaterThan(held.validUntil)
    expect(next.fencingToken).toBeGreaterThan(held.token)
    expect(woke.wrote).toBe(false)
    expect(await db.hget(init.guarded, 'value')).toBe('next')
    return woke
  }

  it('stopped past its ttl while waiting on lock.signal: aborted on wake, a newer holder came, its late write is refused', async () => {
    const woke = await pausedHolder(true)
    expect(woke.abortedOnWake).toBe(true)
    expect(woke.reason).toBe('E_LOCK_LOST')
  })

  // Fails today: the abort is a timer of the holder's own event loop. When a stopped process goes on, its overdue
  // timers run in the order they were due, so a wait that was due before the abort resumes the holder's code first:
  // it reads lock.signal.aborted === false although the validity ended long before (the abort follows within a
  // millisecond; the fencing check does refuse the write). Reading `lock.signal` could check the monotonic clock
  // against the validity and abort first, which would make this pass.
  it('stopped past its ttl in a plain wait: lock.signal has aborted when its code runs again', async () => {
    const woke = await pausedHolder(false)
    expect(woke.wokeAt).toBeGreaterThan(woke.validUntil)
    expect(woke.abortedOnWake).toBe(true)
  })
})

describe('using() while a node dies', () => {
  it('a node killed during an extension: the signal aborts before the validity ends, the routine sees it, nothing unhandled', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      const ttl = 400
      const redlock = createRedlock(clients, { retryCount: 0, nodeTimeout: 100 })
      // With 3 of 5 left, the lock stands on exactly a quorum: losing one more node during an extension loses it.
      await Promise.all([3, 4].map((i) => servers[i]!.kill()))
      let validUntil = 0
      let abortAt = 0
      let seen: unknown
      const outcome = redlock.using(res(), ttl, async (signal, lock) => {
        validUntil = now() + (lock.expiresAt - Date.now())
        signal.addEventListener('abort', () => {
          abortAt = now()
        })
        // The automatic extension goes out at about ttl/2: stop node 2 just before, kill it while the extension
        // waits for its answer (nodeTimeout 100 ms).
        await sleep(ttl / 2 - 60)
        await pause(servers[2]!)
        await sleep(80)
        await servers[2]!.kill()
        paused.delete(servers[2]!)
        const deadline = now() + 2 * ttl
        while (!signal.aborted && now() < deadline) await sleep(5)
        seen = signal.reason
        signal.throwIfAborted()
        return 'not aborted'
      })
      const error = (await outcome.catch((e: unknown) => e)) as LockError
      // Let any late rejection (timers of the lock, replies of the dead node) surface.
      await sleep(ttl)
      console.info(
        `[faults] using() with a node killed mid-extension: aborted ${ms(validUntil - abortAt)} before the validity ` +
          `ended (${error?.code}: ${error?.message}); unhandled rejections ${unhandled.length}`,
      )
      expect(error).toBe(seen)
      expect(error).toMatchObject({ code: 'E_LOCK_EXTEND_FAILED' })
      expect(abortAt).toBeGreaterThan(0)
      expect(abortAt).toBeLessThan(validUntil)
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })
})
