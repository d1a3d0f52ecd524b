/**
 * Helpers of the distributed benchmarks (R4, S2, BUS): a clock shared by the processes of one machine, waiting for a
 * bus subscription, Redis command counts, and child processes driven by JSON lines.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { Bus } from '@cache/core'
import type { Redis } from 'ioredis'

/**
 * Milliseconds since the epoch, sub-millisecond: every process on one machine derives `timeOrigin` from the same
 * system clock, so timestamps taken in different processes can be subtracted (to a few µs).
 */
export function sharedNow(): number {
  return performance.timeOrigin + performance.now()
}

/**
 * Resolves once the bus's subscription is confirmed, and the cache subscribed before this call has dropped its L1
 * (a cache clears its local tiers when its subscription stands, so an L1 warmed before that would be emptied).
 * There is no public "ready" on the cache: subscribing once more to the same bus waits for the same connection.
 */
export async function busReady(bus: Bus): Promise<void> {
  const unsubscribe = await bus.subscribe({ message() {}, gap() {} })
  await unsubscribe()
  await new Promise<void>((resolve) => setImmediate(resolve))
}

/** Calls per command since the server started (`INFO commandstats`). */
export async function commandCalls(client: Redis): Promise<Map<string, number>> {
  const info = await client.info('commandstats')
  const calls = new Map<string, number>()
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(match[1]!, Number(match[2]))
  return calls
}

/** Commands sent between two readings, leaving out `info` itself and the bus heartbeat's `ping`. */
export function commandDelta(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const delta = new Map<string, number>()
  for (const [name, calls] of after) {
    if (name === 'info' || name === 'ping') continue
    const d = calls - (before.get(name) ?? 0)
    if (d > 0) delta.set(name, d)
  }
  return delta
}

export function totalCalls(delta: Map<string, number>): number {
  let total = 0
  for (const calls of delta.values()) total += calls
  return total
}

/** The commands Redis received while `run` ran (read through `admin`, a connection of its own). */
export async function commandsDuring(admin: Redis, run: () => unknown): Promise<Map<string, number>> {
  const before = await commandCalls(admin)
  await run()
  return commandDelta(before, await commandCalls(admin))
}

/** `3 (get 2, publish 1)` or `0`. */
export function describeDelta(delta: Map<string, number>): string {
  const total = totalCalls(delta)
  if (total === 0) return '0'
  return `${total} (${[...delta].map(([name, calls]) => `${name} ${calls}`).join(', ')})`
}

/**
 * A child process running `src/dist-child.ts` with `node --import tsx --conditions=@cache/source`: requests and
 * replies are JSON lines on stdin/stdout, answered in order.
 */
export class Child {
  private readonly proc: ChildProcessWithoutNullStreams
  private readonly replies: ((line: string) => void)[] = []
  private readonly exited: Promise<number | null>
  private stderr = ''

  constructor(args: string[]) {
    const script = fileURLToPath(new URL('./dist-child.ts', import.meta.url))
    const cwd = fileURLToPath(new URL('..', import.meta.url))
    this.proc = spawn(process.execPath, ['--import', 'tsx', '--conditions=@cache/source', script, ...args], {
      cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    // A write to a child that died is reported through `exited`, not as an unhandled stream error.
    this.proc.stdin.on('error', () => {})
    this.proc.stderr.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString()
    })
    createInterface({ input: this.proc.stdout }).on('line', (line) => this.replies.shift()?.(line))
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)))
    this.exited.then(() => {
      const error = `[bench] child exited: ${this.stderr.trim().slice(-2000)}`
      for (const reply of this.replies.splice(0)) reply(JSON.stringify({ error }))
    })
  }

  /** Sends one request; resolves to the child's reply (rejects when the child reports an error or exits). */
  async request<T>(message: object): Promise<T> {
    const line = await new Promise<string>((resolve) => {
      this.replies.push(resolve)
      this.proc.stdin.write(`${JSON.stringify(message)}\n`)
    })
    const reply = JSON.parse(line) as T & { error?: string }
    if (reply.error !== undefined) throw new Error(reply.error)
    return reply
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null) return
    this.proc.stdin.end()
    const timer = setTimeout(() => this.proc.kill(), 5_000)
    await this.exited
    clearTimeout(timer)
  }
}
