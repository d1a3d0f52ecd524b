import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { findBinary } from './binaries.js'
import { freePort, LOOPBACK } from './ports.js'
import { type RedisOptions, type RedisServer, startRedis } from './redis.js'
import { registry } from './registry.js'
import { type HostPort, RespError, type RespValue, redisCommand } from './resp.js'
import { ManagedServer, type ServerSpec } from './server.js'

export interface RedisSentinelOptions extends Omit<RedisOptions, 'allowEnv' | 'port'> {
  /** Replicas of the master (`redis-server --replicaof`). Default 1. */
  replicas?: number
  /** Sentinel processes (`redis-server sentinel.conf --sentinel`). Default 3. */
  sentinels?: number
  /** The name the sentinels monitor the master under. Default 'mymaster'. */
  masterName?: string
  /** Sentinels that must agree the master is down. Default a majority: ⌊sentinels / 2⌋ + 1. */
  quorum?: number
  /** `sentinel down-after-milliseconds`. Default 1000. */
  downAfterMs?: number
  /** `sentinel failover-timeout`. Default 5000. */
  failoverTimeoutMs?: number
  /** How long to wait until every sentinel knows the master, the replicas and the other sentinels. Default 30 000. */
  sentinelTimeoutMs?: number
}

export interface RedisSentinel {
  /** The master as started (after a failover it may be a replica, or down: ask `waitForMaster()`). */
  readonly master: RedisServer
  /** The replicas as started. */
  readonly replicas: RedisServer[]
  /** Where a Sentinel client (`new Redis({ sentinels, name })`) starts. */
  readonly sentinels: HostPort[]
  /** The sentinel processes themselves (kill, pause, restart them like any server). */
  readonly sentinelServers: RedisServer[]
  readonly masterName: string
  /** Master and replicas, in that order as started. */
  readonly dataNodes: RedisServer[]
  /**
   * Resolves with the master once every running sentinel reports the same one (`SENTINEL get-master-addr-by-name`),
   * it is one of `dataNodes`, runs and answers ROLE as a master: after killing the master, this waits for the
   * failover. Rejects after `timeoutMs` (default 20 000) saying what is still missing.
   */
  waitForMaster(timeoutMs?: number): Promise<RedisServer>
  /** Stops every sentinel, replica and the master and removes their dirs. */
  stop(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

type Fields = Record<string, string>

/** A `SENTINEL replicas|sentinels|master` entry (a flat [name, value, …] array) as a map. */
function fields(entry: RespValue): Fields {
  const out: Fields = {}
  if (!Array.isArray(entry)) return out
  for (let i = 0; i + 1 < entry.length; i += 2) out[String(entry[i])] = String(entry[i + 1])
  return out
}

const DOWN_FLAGS = /s_down|o_down|disconnected/

async function sentinelAsk(sentinel: HostPort, args: string[]): Promise<RespValue> {
  return redisCommand(sentinel, ['SENTINEL', ...args], { timeoutMs: 1_000 })
}

async function masterAddress(sentinel: HostPort, name: string): Promise<HostPort | undefined> {
  const reply = await sentinelAsk(sentinel, ['get-master-addr-by-name', name])
  if (!Array.isArray(reply) || reply.length < 2) return undefined
  return { host: String(reply[0]), port: Number(reply[1]) }
}

function sentinelSpec(
  binary: string,
  masterName: string,
  master: HostPort,
  quorum: number,
  downAfterMs: number,
  failoverTimeoutMs: number,
  startupTimeoutMs: number,
): ServerSpec<'redis'> {
  return {
    kind: 'redis',
    name: 'redis-sentinel',
    binary,
    usesDir: true,
    args: (port, dir) => {
      const conf = join(dir ?? '.', 'sentinel.conf')
      // After kill() the dir is kept: the config Sentinel rewrote (current master, known peers) is reloaded.
      if (!existsSync(conf)) {
        writeFileSync(
          conf,
          [
            `port ${port}`,
            `bind ${LOOPBACK}`,
            'protected-mode no',
            'daemonize no',
            'logfile ""',
            `dir "${dir ?? '.'}"`,
            'sentinel resolve-hostnames no',
            `sentinel monitor ${masterName} ${master.host} ${master.port} ${quorum}`,
            `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
            `sentinel failover-timeout ${masterName} ${failoverTimeoutMs}`,
            `sentinel parallel-syncs ${masterName} 1`,
            '',
          ].join('\n'),
        )
      }
      return [conf, '--sentinel']
    },
    probe: async (target, timeoutMs) => {
      const reply = await redisCommand(target, ['PING'], { timeoutMs })
      if (reply !== 'PONG') throw new Error(`PING answered ${JSON.stringify(reply)}`)
      const info = String(await redisCommand(target, ['INFO', 'server'], { timeoutMs }))
      return Number(/^process_id:(\d+)/m.exec(info)?.[1])
    },
    probeName: 'PING',
    startupTimeoutMs,
  }
}

/** Why `sentinel` does not see the whole setup yet, or undefined when it does. */
async function sentinelProblem(
  sentinel: HostPort,
  name: string,
  master: HostPort,
  replicas: RedisServer[],
  peers: number,
): Promise<string | undefined> {
  const addr = await masterAddress(sentinel, name)
  if (!addr) return `does not know master '${name}'`
  if (addr.port !== master.port) return `reports master ${addr.host}:${addr.port}, not ${master.port}`
  const masterFlags = fields(await sentinelAsk(sentinel, ['master', name])).flags ?? ''
  if (DOWN_FLAGS.test(masterFlags)) return `sees the master as ${masterFlags}`
  const seen = ((await sentinelAsk(sentinel, ['replicas', name])) as RespValue[]).map(fields)
  for (const replica of replicas) {
    const entry = seen.find((r) => Number(r.port) === replica.port)
    if (!entry) return `does not see replica ${replica.address} yet`
    if (DOWN_FLAGS.test(entry.flags ?? '')) return `sees replica ${replica.address} as ${entry.flags}`
  }
  const others = ((await sentinelAsk(sentinel, ['sentinels', name])) as RespValue[]).length
  if (others < peers) return `sees ${others} of the ${peers} other sentinels`
  return undefined
}

async function replicaProblem(replica: RedisServer): Promise<string | undefined> {
  const info = String(await redisCommand(replica, ['INFO', 'replication'], { timeoutMs: 1_000 }))
  if (!/^master_link_status:up/m.test(info)) return 'not in sync with its master yet'
  return undefined
}

async function waitUntil(what: string, timeoutMs: number, check: () => Promise<string[]>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    let problems: string[]
    try {
      problems = await check()
    } catch (err) {
      problems = [(err as Error).message]
    }
    if (problems.length === 0) return
    if (Date.now() > deadline) throw new Error(`${what} after ${timeoutMs} ms: ${problems.join('; ')}`)
    await sleep(100)
  }
}

/**
 * Starts a Redis Sentinel setup on loopback: a master, `replicas` replicas (`--replicaof` the master) and
 * `sentinels` sentinels monitoring it as `masterName`; resolves once every sentinel knows the master, sees every
 * replica and every other sentinel.
 */
export async function startRedisSentinel(options: RedisSentinelOptions = {}): Promise<RedisSentinel> {
  const replicaCount = options.replicas ?? 1
  const sentinelCount = options.sentinels ?? 3
  const masterName = options.masterName ?? 'mymaster'
  const quorum = options.quorum ?? Math.floor(sentinelCount / 2) + 1
  const timeoutMs = options.sentinelTimeoutMs ?? 30_000
  if (!Number.isInteger(replicaCount) || replicaCount < 0) throw new Error('startRedisSentinel: replicas must be ≥ 0')
  if (!Number.isInteger(sentinelCount) || sentinelCount < 1) {
    throw new Error('startRedisSentinel: sentinels must be ≥ 1')
  }
  if (!Number.isInteger(quorum) || quorum < 1 || quorum > sentinelCount) {
    throw new Error(`startRedisSentinel: quorum must be between 1 and sentinels (${sentinelCount})`)
  }
  if (!/^[A-Za-z0-9._-]+$/.test(masterName)) {
    throw new Error(`startRedisSentinel: masterName must be letters, digits, '.', '_' or '-'`)
  }
  const binary = findBinary('redis-server', { explicit: options.binary, PATH: options.PATH }, 'REDIS_URL')
  const {
    replicas: _replicas,
    sentinels: _sentinels,
    masterName: _masterName,
    quorum: _quorum,
    downAfterMs,
    failoverTimeoutMs,
    sentinelTimeoutMs: _sentinelTimeoutMs,
    ...redisOptions
  } = options

  const all: RedisServer[] = []
  const stopAllNodes = async (): Promise<void> => {
    await Promise.allSettled(all.map((s) => s.stop()))
  }
  const startOrCleanUp = async (starts: Promise<RedisServer>[]): Promise<RedisServer[]> => {
    const results = await Promise.allSettled(starts)
    const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
    all.push(...ok)
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failure) {
      await stopAllNodes()
      throw failure.reason
    }
    return ok
  }

  const [master] = await startOrCleanUp([startRedis(redisOptions)])
  const replicas = await startOrCleanUp(
    Array.from({ length: replicaCount }, () =>
      startRedis({
        ...redisOptions,
        args: [...(redisOptions.args ?? []), '--replicaof', master!.host, String(master!.port)],
      }),
    ),
  )
  try {
    // Sentinels learn the replicas from the master's INFO: let them connect first.
    await waitUntil('the replicas are not in sync', timeoutMs, async () => {
      const problems = await Promise.all(replicas.map(async (r) => (await replicaProblem(r)) ?? ''))
      return problems.map((p, i) => (p ? `${replicas[i]!.address}: ${p}` : '')).filter(Boolean)
    })
  } catch (err) {
    await stopAllNodes()
    throw err
  }

  const spec = sentinelSpec(
    binary,
    masterName,
    master!,
    quorum,
    downAfterMs ?? 1_000,
    failoverTimeoutMs ?? 5_000,
    options.startupTimeoutMs ?? 10_000,
  )
  const sentinelServers = await startOrCleanUp(
    Array.from({ length: sentinelCount }, () => ManagedServer.start(spec, freePort) as Promise<RedisServer>),
  )
  const dataNodes = [master!, ...replicas]

  const setup: RedisSentinel = {
    master: master!,
    replicas,
    sentinels: sentinelServers.map((s) => ({ host: s.host, port: s.port })),
    sentinelServers,
    masterName,
    dataNodes,
    async waitForMaster(ms = 20_000) {
      let found: RedisServer | undefined
      await waitUntil(`the sentinels do not agree on a running master '${masterName}'`, ms, async () => {
        found = undefined
        const running = sentinelServers.filter((s) => s.running)
        if (running.length === 0) return ['no sentinel runs']
        const problems: string[] = []
        const ports = new Set<number>()
        for (const s of running) {
          try {
            const addr = await masterAddress(s, masterName)
            if (addr) ports.add(addr.port)
            else problems.push(`${s.address}: does not know '${masterName}'`)
          } catch (err) {
            problems.push(`${s.address}: ${(err as Error).message}`)
          }
        }
        if (problems.length > 0) return problems
        if (ports.size !== 1) return [`sentinels report different masters: ports ${[...ports].join(', ')}`]
        const port = [...ports][0]!
        const node = dataNodes.find((n) => n.port === port)
        if (!node) return [`sentinels report port ${port}, not one of this setup's servers`]
        if (!node.running) return [`sentinels still report ${node.address}, which is down`]
        try {
          const role = await redisCommand(node, ['ROLE'], { timeoutMs: 1_000 })
          if (!Array.isArray(role) || role[0] !== 'master') return [`${node.address} is not a master yet`]
        } catch (err) {
          if (err instanceof RespError) return [`${node.address}: ${err.message}`]
          return [`${node.address}: ${(err as Error).message}`]
        }
        found = node
        return []
      })
      return found!
    },
    async stop() {
      // Sentinels first, so none starts a failover while the data nodes go down.
      await Promise.allSettled(sentinelServers.map((s) => s.stop()))
      await stopAllNodes()
      registry().handles.delete(setup)
    },
    [Symbol.asyncDispose]() {
      return setup.stop()
    },
  }
  registry().handles.add(setup)

  try {
    await waitUntil('the sentinels do not see the whole setup', timeoutMs, async () => {
      const problems = await Promise.all(
        sentinelServers.map(async (s) => {
          try {
            const problem = await sentinelProblem(s, masterName, master!, replicas, sentinelCount - 1)
            return problem ? `${s.address}: ${problem}` : ''
          } catch (err) {
            return `${s.address}: ${(err as Error).message}`
          }
        }),
      )
      return problems.filter(Boolean)
    })
  } catch (err) {
    const logs = sentinelServers
      .map((s) => `--- sentinel ${s.address} ---\n${s.logs().split('\n').slice(-10).join('\n')}`)
      .join('\n')
    await setup.stop()
    throw new Error(`could not start Redis Sentinel: ${(err as Error).message}\nSentinel output:\n${logs}`)
  }
  return setup
}
