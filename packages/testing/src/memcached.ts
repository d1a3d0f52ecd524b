import { userInfo } from 'node:os'
import { type BinaryOptions, findBinary } from './binaries.js'
import { memcachedRequest } from './memcached-text.js'
import { freePort, LOOPBACK } from './ports.js'
import type { HostPort } from './resp.js'
import { ExternalServer, ManagedServer, parseServerUrl, redact, type ServerHandle } from './server.js'

/** A memcached server: started here from `memcached` (source 'binary'), or given by MEMCACHED_URL ('env'). */
export interface MemcachedServer extends ServerHandle {
  readonly kind: 'memcached'
}

export interface MemcachedOptions extends BinaryOptions {
  /** Use MEMCACHED_URL when it is set (tests that need no fault control). Default false. */
  allowEnv?: boolean
  /** Memory for items, in megabytes (`-m`). Default 64. */
  memoryMb?: number
  /** Largest item (`-I`): bytes, or memcached's own notation ('2m', '512k'). Default memcached's (1m). */
  maxItemSize?: number | string
  /** Extra `memcached` arguments, e.g. ['-t', '2']. */
  args?: string[]
  /** Listen on this port instead of a free one chosen by the OS. */
  port?: number
  /** How long to wait for the first VERSION answer. Default 10 000 ms. */
  startupTimeoutMs?: number
}

/** Sends `version`; on VERSION resolves with the server's pid (from `stats`). */
async function version(target: HostPort, timeoutMs: number): Promise<number> {
  const reply = await memcachedRequest(target, 'version\r\n', { timeoutMs })
  if (!reply.startsWith('VERSION ')) throw new Error(`version answered ${JSON.stringify(reply)}`)
  const stats = await memcachedRequest(target, 'stats\r\n', { timeoutMs })
  return Number(/^STAT pid (\d+)\r$/m.exec(stats)?.[1])
}

/**
 * Starts `memcached -l 127.0.0.1 -p PORT -U 0 -m 64` on a free port; resolves once it answers `version`. With
 * `{ allowEnv: true }` and MEMCACHED_URL set ('memcached://host:port' or 'host:port'), returns that server instead.
 */
export async function startMemcached(options: MemcachedOptions = {}): Promise<MemcachedServer> {
  const envValue = process.env.MEMCACHED_URL
  if (options.allowEnv && envValue) {
    const { host, port } = parseServerUrl(envValue, 'memcached', 11211)
    try {
      await version({ host, port }, 2_000)
    } catch (err) {
      throw new Error(`MEMCACHED_URL=${redact(envValue)} does not answer version: ${(err as Error).message}`)
    }
    return new ExternalServer('memcached', host, port, envValue, 'MEMCACHED_URL')
  }
  const binary = findBinary('memcached', { explicit: options.binary, PATH: options.PATH }, 'MEMCACHED_URL')
  const extra: string[] = []
  if (options.maxItemSize !== undefined) extra.push('-I', String(options.maxItemSize))
  // memcached refuses to run as root unless told which user to run as.
  if (process.getuid?.() === 0) extra.push('-u', userInfo().username)
  return ManagedServer.start(
    {
      kind: 'memcached',
      name: 'memcached',
      binary,
      usesDir: false,
      args: (port) => [
        '-l',
        LOOPBACK,
        '-p',
        String(port),
        '-U',
        '0',
        '-m',
        String(options.memoryMb ?? 64),
        ...extra,
        ...(options.args ?? []),
      ],
      probe: version,
      probeName: 'version',
      startupTimeoutMs: options.startupTimeoutMs ?? 10_000,
    },
    freePort,
    options.port,
  )
}
