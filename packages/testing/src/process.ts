import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { registry } from './registry.js'

/** The last lines a process wrote (stdout and stderr interleaved), for error messages. */
export class LogTail {
  private readonly lines: string[] = []

  constructor(private readonly max = 50) {}

  attach(stream: Readable | null, prefix = ''): void {
    if (!stream) return
    let partial = ''
    stream.setEncoding('utf8')
    stream.on('data', (chunk: string) => {
      const parts = (partial + chunk).split(/\r?\n/)
      partial = parts.pop() ?? ''
      for (const line of parts) this.push(prefix + line)
    })
    stream.on('end', () => {
      if (partial) this.push(prefix + partial)
      partial = ''
    })
  }

  push(line: string): void {
    this.lines.push(line)
    if (this.lines.length > this.max) this.lines.splice(0, this.lines.length - this.max)
  }

  toString(): string {
    return this.lines.join('\n')
  }
}

export interface ExitInfo {
  code: number | null
  signal: NodeJS.Signals | null
  /** Set when the process could not be spawned at all. */
  error?: Error
}

export function describeExit(info: ExitInfo): string {
  if (info.error) return `could not be started (${info.error.message})`
  if (info.signal) return `was ended by ${info.signal}`
  return `exited with code ${info.code}`
}

/** One spawned process, tracked in the registry until it exits. */
export class TrackedProcess {
  readonly child: ChildProcess
  readonly exited: Promise<ExitInfo>
  private exitInfo: ExitInfo | undefined
  private readonly closed: Promise<void>

  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly log: LogTail,
    cwd?: string,
  ) {
    const reg = registry()
    this.child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    const child = this.child
    reg.children.add(child)
    log.attach(child.stdout)
    log.attach(child.stderr, '[stderr] ')
    this.exited = new Promise<ExitInfo>((resolve) => {
      const done = (info: ExitInfo): void => {
        if (this.exitInfo) return
        this.exitInfo = info
        reg.children.delete(child)
        resolve(info)
      }
      child.once('exit', (code, signal) => done({ code, signal }))
      // 'error' without 'exit' means the spawn itself failed (ENOENT, EACCES).
      child.once('error', (error) => {
        if (child.pid === undefined) done({ code: null, signal: null, error })
      })
    })
    this.closed = new Promise<void>((resolve) => {
      child.once('close', () => resolve())
      child.once('error', () => resolve())
    })
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  get alive(): boolean {
    return this.exitInfo === undefined
  }

  get exit(): ExitInfo | undefined {
    return this.exitInfo
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.alive) return
    try {
      this.child.kill(sig)
    } catch {
      // raced with its exit
    }
  }

  /** SIGKILL and wait for the exit. */
  async kill(): Promise<ExitInfo> {
    this.signal('SIGKILL')
    return this.exited
  }

  /** SIGTERM (and SIGCONT, in case it is paused), SIGKILL after `graceMs`; waits for the exit. */
  async terminate(graceMs = 5_000): Promise<ExitInfo> {
    if (!this.alive) return this.exited
    this.signal('SIGTERM')
    this.signal('SIGCONT')
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs)
    try {
      return await this.exited
    } finally {
      clearTimeout(timer)
    }
  }

  /** Waits (briefly) until the output streams are closed, so the log tail holds the last lines. */
  async settleOutput(ms = 200): Promise<void> {
    await Promise.race([this.closed, sleep(ms)])
  }

  /** SIGSTOP / SIGCONT, then wait until the kernel reports the new state (Linux; elsewhere a short pause). */
  async setStopped(stopped: boolean): Promise<void> {
    if (!this.alive) throw new Error(`${this.command} is not running`)
    this.signal(stopped ? 'SIGSTOP' : 'SIGCONT')
    const pid = this.pid
    if (pid === undefined) return
    const deadline = Date.now() + 2_000
    while (Date.now() < deadline && this.alive) {
      const state = processState(pid)
      if (state === undefined) {
        await sleep(20)
        return
      }
      if ((state === 'T') === stopped) return
      await sleep(5)
    }
  }
}

/** The one-letter state of a process from /proc (R, S, T, Z…), or undefined where /proc is not available. */
function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // "pid (comm) S ...": comm may contain spaces and parentheses, so read after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
  } catch {
    return undefined
  }
}

/** Runs a short-lived command to its end; rejects with its output when it fails or outlives `timeoutMs`. */
export async function runToEnd(command: string, args: readonly string[], timeoutMs: number): Promise<string> {
  const log = new LogTail(200)
  const proc = new TrackedProcess(command, args, log)
  const timer = setTimeout(() => proc.signal('SIGKILL'), timeoutMs)
  const info = await proc.exited
  clearTimeout(timer)
  await proc.settleOutput()
  if (info.code === 0) return log.toString()
  const why = info.signal === 'SIGKILL' ? `did not finish within ${timeoutMs} ms` : describeExit(info)
  throw new Error(`${command} ${args.join(' ')} ${why}. Its output:\n${log.toString()}`)
}
