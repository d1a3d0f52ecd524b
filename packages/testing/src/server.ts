import { mkdtempSync, rmSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { describeExit, LogTail, TrackedProcess } from './process.js'
import { registry } from './registry.js'
import type { HostPort } from './resp.js'

/** A server a test can use, and, when it was started here, stop, kill, pause and restart. */
export interface ServerHandle extends HostPort {
  readonly kind: 'redis' | 'memcached'
  /** 'binary': started here from the binary; 'env': given by REDIS_URL / MEMCACHED_URL (no fault control). */
  readonly source: 'binary' | 'env'
  readonly host: string
  readonly port: number
  /** 'host:port' */
  readonly address: string
  /** 'redis://127.0.0.1:PORT' or 'memcached://127.0.0.1:PORT' (for 'env': the variable's value). */
  readonly url: string
  /** The process id while it runs (changes on restart); undefined when not running or not started here. */
  readonly pid: number | undefined
  /** Started here and not stopped or killed (a paused server is running). */
  readonly running: boolean
  /** The server's last output lines (stdout and stderr), for diagnostics. */
  logs(): string
  /** SIGTERM, wait for the exit (SIGKILL after 5 s), remove the temp dir. Idempotent. */
  stop(): Promise<void>
  /** SIGKILL, wait for the exit. The temp dir (its data) is kept for `restart()`. */
  kill(): Promise<void>
  /** SIGSTOP: the process stays, its connections stay open, nothing is answered. */
  pause(): Promise<void>
  /** SIGCONT after `pause()`. */
  resume(): Promise<void>
  /**
   * Starts it again on the same port and waits until it answers. When it is still running it is first stopped
   * gracefully (SIGTERM), keeping its data dir; after `stop()` it starts with an empty one.
   */
  restart(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

export type ServerKind = 'redis' | 'memcached'

/** What differs between the servers started from a binary. */
export interface ServerSpec<K extends ServerKind = ServerKind> {
  kind: K
  /** Binary name, for messages. */
  name: string
  /** Absolute path of the binary. */
  binary: string
  /** Whether the server gets a fresh temp dir (its working dir). */
  usesDir: boolean
  args(port: number, dir: string | undefined): string[]
  /**
   * Resolves with the process id of the server answering there (so a server of someone else that got the port
   * first is not mistaken for ours); rejects when nothing answers yet.
   */
  probe(target: HostPort, timeoutMs: number): Promise<number>
  /** What the probe sends, for messages ('PING'). */
  probeName: string
  startupTimeoutMs: number
}

/** The startup failed; `portInUse` when the server could not listen because the port was taken. */
export class StartupError extends Error {
  override readonly name = 'StartupError'
  constructor(
    message: string,
    readonly portInUse: boolean,
  ) {
    super(message)
  }
}

const PORT_IN_USE = /address already in use|failed listening on port|EADDRINUSE/i

const HOST = '127.0.0.1'

export class ManagedServer<K extends ServerKind = ServerKind> implements ServerHandle {
  readonly source = 'binary'
  readonly host = HOST
  private proc: TrackedProcess | undefined
  private dirPath: string | undefined
  private readonly log = new LogTail(50)
  private starts = 0

  private constructor(
    private readonly spec: ServerSpec<K>,
    readonly port: number,
  ) {}

  get kind(): K {
    return this.spec.kind
  }

  get address(): string {
    return `${this.host}:${this.port}`
  }

  get url(): string {
    return `${this.spec.kind}://${this.address}`
  }

  /** The server's temp dir (its working dir, where Redis keeps its data); undefined for memcached. */
  get dir(): string | undefined {
    return this.dirPath
  }

  get pid(): number | undefined {
    return this.proc?.alive ? this.proc.pid : undefined
  }

  get running(): boolean {
    return this.proc?.alive ?? false
  }

  logs(): string {
    return this.log.toString()
  }

  /**
   * Starts a server on a port from `pickPort`; when the port turns out to be taken (someone else got it between
   * the OS handing it out and the server binding it), tries again with another one.
   */
  static async start<K extends ServerKind>(
    spec: ServerSpec<K>,
    pickPort: () => Promise<number>,
    fixedPort?: number,
  ): Promise<ManagedServer<K>> {
    const attempts = fixedPort === undefined ? 8 : 1
    let lastError: unknown
    for (let attempt = 0; attempt < attempts; attempt++) {
      const server = new ManagedServer(spec, fixedPort ?? (await pickPort()))
      try {
        await server.launch()
        registry().handles.add(server)
        return server
      } catch (err) {
        server.removeDir()
        lastError = err
        if (!(err instanceof StartupError && err.portInUse)) throw err
      }
    }
    throw lastError
  }

  private ensureDir(): string | undefined {
    if (!this.spec.usesDir) return undefined
    if (this.dirPath === undefined) {
      this.dirPath = mkdtempSync(join(tmpdir(), `cache-testing-${this.spec.kind}-`))
      registry().dirs.add(this.dirPath)
    }
    return this.dirPath
  }

  private removeDir(): void {
    if (this.dirPath === undefined) return
    rmSync(this.dirPath, { recursive: true, force: true })
    registry().dirs.delete(this.dirPath)
    this.dirPath = undefined
  }

  /** Spawns the process and waits until it answers; on failure kills it and throws a StartupError. */
  private async launch(): Promise<void> {
    const dir = this.ensureDir()
    const args = this.spec.args(this.port, dir)
    if (this.starts++ > 0) this.log.push(`--- started again (${new Date().toISOString()}) ---`)
    const proc = new TrackedProcess(this.spec.binary, args, this.log, dir)
    this.proc = proc
    const { startupTimeoutMs, probeName, name } = this.spec
    const deadline = Date.now() + startupTimeoutMs
    let lastProbeError: unknown
    let foreignPid: number | undefined
    while (proc.alive && Date.now() < deadline) {
      try {
        const pid = await this.spec.probe(this, Math.min(1_000, Math.max(50, deadline - Date.now())))
        if (pid === proc.pid && proc.alive) return
        // Another server answers on this port: ours will fail to listen (and exit) any moment.
        foreignPid = pid
        lastProbeError = new Error(`another process (pid ${pid}) answers on ${this.address}`)
      } catch (err) {
        lastProbeError = err
      }
      await Promise.race([sleep(25), proc.exited])
    }
    const exit = proc.exit
    if (!exit) await proc.kill()
    await proc.settleOutput()
    const output = this.log.toString()
    const why = exit
      ? `${describeExit(exit)} during startup`
      : `did not answer ${probeName} within ${startupTimeoutMs} ms (last probe: ${
          lastProbeError instanceof Error ? lastProbeError.message : String(lastProbeError)
        })`
    throw new StartupError(
      `${name} on ${this.address} ${why}.\nCommand: ${this.spec.binary} ${args.map(quoteArg).join(' ')}\n` +
        `Last output:\n${output || '(none)'}`,
      foreignPid !== undefined || (exit !== undefined && PORT_IN_USE.test(output)),
    )
  }

  async stop(): Promise<void> {
    if (this.proc?.alive) await this.proc.terminate()
    await this.removeDirAsync()
    registry().handles.delete(this)
  }

  private async removeDirAsync(): Promise<void> {
    const dir = this.dirPath
    if (dir === undefined) return
    this.dirPath = undefined
    await rm(dir, { recursive: true, force: true, maxRetries: 3 })
    registry().dirs.delete(dir)
  }

  async kill(): Promise<void> {
    if (this.proc?.alive) await this.proc.kill()
  }

  async pause(): Promise<void> {
    if (!this.proc?.alive) throw new Error(`${this.spec.name} on ${this.address} is not running: cannot pause it`)
    await this.proc.setStopped(true)
  }

  async resume(): Promise<void> {
    if (!this.proc?.alive) throw new Error(`${this.spec.name} on ${this.address} is not running: cannot resume it`)
    await this.proc.setStopped(false)
  }

  async restart(): Promise<void> {
    if (this.proc?.alive) await this.proc.terminate()
    registry().handles.add(this)
    // The port was ours a moment ago; give a lingering holder a little time, then report clearly.
    const deadline = Date.now() + 3_000
    for (;;) {
      try {
        await this.launch()
        return
      } catch (err) {
        if (!(err instanceof StartupError && err.portInUse) || Date.now() > deadline) {
          if (err instanceof StartupError && err.portInUse) {
            err.message = `cannot restart on the same port: ${err.message}`
          }
          throw err
        }
        await sleep(100)
      }
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop()
  }
}

function quoteArg(arg: string): string {
  return arg === '' ? "''" : /[\s'"]/.test(arg) ? JSON.stringify(arg) : arg
}

/** A server given by REDIS_URL / MEMCACHED_URL: usable, but not ours to stop, kill, pause or restart. */
export class ExternalServer<K extends ServerKind = ServerKind> implements ServerHandle {
  readonly source = 'env'
  readonly pid = undefined
  readonly running = false
  readonly dir = undefined

  constructor(
    readonly kind: K,
    readonly host: string,
    readonly port: number,
    readonly url: string,
    private readonly envVar: string,
  ) {}

  get address(): string {
    return `${this.host}:${this.port}`
  }

  logs(): string {
    return ''
  }

  private refuse(what: string): Promise<never> {
    return Promise.reject(
      new Error(
        `cannot ${what}: this server was given by ${this.envVar}; fault tests need a server started here ` +
          `(call without { allowEnv: true })`,
      ),
    )
  }

  /** Nothing to stop: the server is not ours. */
  async stop(): Promise<void> {}

  kill(): Promise<void> {
    return this.refuse('kill()')
  }

  pause(): Promise<void> {
    return this.refuse('pause()')
  }

  resume(): Promise<void> {
    return this.refuse('resume()')
  }

  restart(): Promise<void> {
    return this.refuse('restart()')
  }

  async [Symbol.asyncDispose](): Promise<void> {}
}

/** Parses REDIS_URL / MEMCACHED_URL ('redis://[user:pass@]host[:port][/db]', 'host:port' for memcached). */
export function parseServerUrl(value: string, scheme: 'redis' | 'memcached', defaultPort: number): HostPort {
  const withScheme = value.includes('://') ? value : `${scheme}://${value}`
  let url: URL
  try {
    url = new URL(withScheme)
  } catch {
    throw new Error(`cannot parse ${JSON.stringify(redact(value))} as a ${scheme} URL`)
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  if (!host) throw new Error(`no host in ${JSON.stringify(redact(value))}`)
  return { host, port: url.port ? Number(url.port) : defaultPort }
}

/** The URL without its password, for messages. */
export function redact(value: string): string {
  return value.replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@')
}
