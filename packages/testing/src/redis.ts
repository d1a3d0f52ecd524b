import { dirname } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { type BinaryOptions, findBinary } from './binaries.js'
import { freePort, freePortWithCompanion, LOOPBACK } from './ports.js'
import { runToEnd } from './process.js'
import { registry } from './registry.js'
import { type HostPort, RespClient, RespError, redisCommand } from './resp.js'
import { ExternalServer, ManagedServer, parseServerUrl, redact, type ServerHandle, type ServerSpec } from './server.js'

/** A Redis server: started here from `redis-server` (source 'binary'), or given by REDIS_URL (source 'env'). */
export interface RedisServer extends ServerHandle {
  readonly kind: 'redis'
  /** The temp dir the server runs in (its data: RDB, AOF, nodes.conf); undefined for an 'env' server. */
  readonly dir: string | undefined
}

export interface RedisOptions extends BinaryOptions {
  /** Use REDIS_URL when it is set (tests that need no fault control). Default false. */
  allowEnv?: boolean
  /** Turn on the append-only file (`--appendonly yes`), e.g. to test data surviving a restart. Default false. */
  appendonly?: boolean
  /** `--appendfsync` when `appendonly` is on. Default Redis's own ('everysec'). */
  appendfsync?: 'always' | 'everysec' | 'no'
  /** `--save` (RDB snapshot points, e.g. '60 1'). Default '' (no snapshots). */
  save?: string
  /** Extra `redis-server` arguments, e.g. ['--maxmemory', '10mb', '--maxmemory-policy', 'allkeys-lru']. */
  args?: string[]
  /** Listen on this port instead of a free one chosen by the OS. */
  port?: number
  /** How long to wait for the first PONG. Default 10 000 ms. */
  startupTimeoutMs?: number
}

/** Sends PING on a fresh connection; on PONG resolves with the server's process_id (from INFO server). */
async function ping(target: HostPort, timeoutMs: number): Promise<number> {
  const client = await RespClient.connect(target, { timeoutMs })
  try {
    const reply = await client.command(['PING'], { timeoutMs })
    if (reply !== 'PONG') throw new Error(`PING answered ${JSON.stringify(reply)}`)
    const info = String(await client.command(['INFO', 'server'], { timeoutMs }))
    return Number(/^process_id:(\d+)/m.exec(info)?.[1])
  } finally {
    client.close()
  }
}

function redisSpec(options: RedisOptions, extraArgs: string[] = []): ServerSpec<'redis'> {
  const binary = findBinary('redis-server', { explicit: options.binary, PATH: options.PATH }, 'REDIS_URL')
  const persistence = ['--save', options.save ?? '', '--appendonly', options.appendonly ? 'yes' : 'no']
  if (options.appendonly && options.appendfsync) persistence.push('--appendfsync', options.appendfsync)
  return {
    kind: 'redis',
    name: 'redis-server',
    binary,
    usesDir: true,
    args: (port, dir) => [
      '--port',
      String(port),
      '--bind',
      LOOPBACK,
      '--protected-mode',
      'no',
      '--daemonize',
      'no',
      '--dir',
      dir ?? '.',
      '--logfile',
      '',
      // A replica's first sync starts at once instead of waiting 5 s for more replicas.
      '--repl-diskless-sync-delay',
      '0',
      ...persistence,
      ...extraArgs,
      ...(options.args ?? []),
    ],
    probe: ping,
    probeName: 'PING',
    startupTimeoutMs: options.startupTimeoutMs ?? 10_000,
  }
}

async function fromEnv(): Promise<RedisServer | undefined> {
  const value = process.env.REDIS_URL
  if (!value) return undefined
  const { host, port } = parseServerUrl(value, 'redis', 6379)
  const server = new ExternalServer('redis', host, port, value, 'REDIS_URL')
  if (!value.startsWith('rediss:')) {
    // Any reply proves a Redis answers there (-NOAUTH included: the client under test brings the password).
    try {
      await redisCommand({ host, port }, ['PING'], { timeoutMs: 2_000 })
    } catch (err) {
      if (!(err instanceof RespError)) {
        throw new Error(`REDIS_URL=${redact(value)} does not answer PING: ${(err as Error).message}`)
      }
    }
  }
  return server
}

/**
 * Starts a `redis-server` on 127.0.0.1 and a free port, in a fresh temp dir, without persistence unless asked;
 * resolves once it answers PING. With `{ allowEnv: true }` and REDIS_URL set, returns that server instead.
 */
export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  if (options.allowEnv) {
    const external = await fromEnv()
    if (external) return external
  }
  return ManagedServer.start(redisSpec(options), freePort, options.port)
}

/** Starts `count` independent Redis servers (e.g. for Redlock), all started here (REDIS_URL is not used). */
export async function startRedises(
  count: number,
  options: Omit<RedisOptions, 'allowEnv' | 'port'> = {},
): Promise<RedisServer[]> {
  if (!Number.isInteger(count) || count < 1) throw new Error(`startRedises: count must be a positive integer`)
  const results = await Promise.allSettled(Array.from({ length: count }, () => startRedis(options)))
  const servers = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failure) {
    await Promise.allSettled(servers.map((s) => s.stop()))
    throw failure.reason
  }
  return servers
}

export interface RedisClusterOptions extends Omit<RedisOptions, 'allowEnv' | 'port'> {
  /** Master nodes (at least 3). Default 3. */
  masters?: number
  /** Replicas per master. Default 0. */
  replicas?: number
  /** `--cluster-node-timeout` in ms. Default 2000. */
  nodeTimeoutMs?: number
  /** Path of `redis-cli` (default: next to the redis-server binary, else on PATH). */
  cliBinary?: string
  /** How long to wait for `cluster_state:ok` on every node after creating the cluster. Default 30 000 ms. */
  clusterTimeoutMs?: number
}

export interface RedisCluster {
  /** Every node, masters first as created (failover may change roles later). */
  readonly nodes: RedisServer[]
  /** Where a cluster client starts: every node's host and port. */
  readonly startupNodes: HostPort[]
  /**
   * Resolves once every running node reports cluster_state:ok, knows every node and sees every slot served by a
   * running node: after killing a master, this waits for the failover.
   * `startRedisCluster` itself also waits until every node sees all masters and replicas, and replicas are in sync.
   */
  waitForOk(timeoutMs?: number): Promise<void>
  /** Stops every node and removes their dirs. */
  stop(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

function findCli(options: RedisClusterOptions, serverBinary: string): string {
  if (options.cliBinary !== undefined || options.PATH !== undefined) {
    return findBinary('redis-cli', { explicit: options.cliBinary, PATH: options.PATH }, 'REDIS_URL')
  }
  try {
    return findBinary('redis-cli', { PATH: dirname(serverBinary) }, 'REDIS_URL')
  } catch {
    return findBinary('redis-cli', {}, 'REDIS_URL')
  }
}

/** `CLUSTER INFO` of one node as a field map. */
async function clusterInfo(node: HostPort): Promise<Record<string, string>> {
  const reply = await redisCommand(node, ['CLUSTER', 'INFO'], { timeoutMs: 1_000 })
  const fields: Record<string, string> = {}
  for (const line of String(reply).split(/\r?\n/)) {
    const colon = line.indexOf(':')
    if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 1).trim()
  }
  return fields
}

interface Layout {
  masters: number
  replicas: number
}

/** Why `node` is not ready yet, or undefined when it is. With `layout`, roles and replication count too. */
async function nodeProblem(
  node: RedisServer,
  total: number,
  runningPorts: Set<number>,
  layout: Layout | undefined,
): Promise<string | undefined> {
  const info = await clusterInfo(node)
  if (info.cluster_state !== 'ok') return `cluster_state:${info.cluster_state}`
  if (Number(info.cluster_known_nodes) < total) return `knows ${info.cluster_known_nodes} of ${total} nodes`
  // Right after a master is killed the cluster still says ok until the failure is detected: wait for the
  // failover, i.e. until every slot is served by a node that runs.
  const slots = (await redisCommand(node, ['CLUSTER', 'SLOTS'], { timeoutMs: 1_000 })) as [number, number, unknown[]][]
  for (const [from, to, master] of slots) {
    const port = Number(master[1])
    if (!runningPorts.has(port)) return `slots ${from}-${to} are still served by ${master[0]}:${port}, which is down`
  }
  if (!layout) return undefined
  const view = String(await redisCommand(node, ['CLUSTER', 'NODES'], { timeoutMs: 1_000 }))
  const flags = view
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => line.split(' ')[2] ?? '')
  const masters = flags.filter((f) => f.includes('master')).length
  const replicas = flags.filter((f) => f.includes('slave')).length
  if (masters !== layout.masters || replicas !== layout.masters * layout.replicas) {
    return `sees ${masters} masters and ${replicas} replicas`
  }
  const replication = String(await redisCommand(node, ['INFO', 'replication'], { timeoutMs: 1_000 }))
  if (/^role:slave/m.test(replication) && !/^master_link_status:up/m.test(replication)) {
    return 'replica not in sync with its master yet'
  }
  return undefined
}

async function waitForClusterOk(
  nodes: RedisServer[],
  total: number,
  timeoutMs: number,
  layout?: Layout,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const problems: string[] = []
    const running = nodes.filter((n) => n.running)
    const runningPorts = new Set(running.map((n) => n.port))
    for (const node of running) {
      try {
        const problem = await nodeProblem(node, total, runningPorts, layout)
        if (problem) problems.push(`${node.address}: ${problem}`)
      } catch (err) {
        problems.push(`${node.address}: ${(err as Error).message}`)
      }
    }
    if (problems.length === 0) return
    if (Date.now() > deadline) {
      throw new Error(`the Redis Cluster is not ok after ${timeoutMs} ms: ${problems.join('; ')}`)
    }
    await sleep(100)
  }
}

/**
 * Starts a Redis Cluster on loopback: `masters × (1 + replicas)` `redis-server --cluster-enabled yes` processes
 * (each on a free port P whose bus port P + 10000 is free too), joined with `redis-cli --cluster create`;
 * resolves once every node reports cluster_state:ok.
 */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3
  const replicas = options.replicas ?? 0
  if (!Number.isInteger(masters) || masters < 3) throw new Error('startRedisCluster: a cluster needs masters ≥ 3')
  if (!Number.isInteger(replicas) || replicas < 0) throw new Error('startRedisCluster: replicas must be ≥ 0')
  const total = masters * (1 + replicas)
  const spec = redisSpec(options, [
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    'nodes.conf',
    '--cluster-node-timeout',
    String(options.nodeTimeoutMs ?? 2_000),
  ])
  const cli = findCli(options, spec.binary)

  const started = await Promise.allSettled(
    Array.from({ length: total }, () => ManagedServer.start(spec, () => freePortWithCompanion(10_000))),
  )
  const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
  const stopNodes = async (): Promise<void> => {
    await Promise.allSettled(nodes.map((n) => n.stop()))
  }
  const failure = started.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failure) {
    await stopNodes()
    throw failure.reason
  }

  const cluster: RedisCluster = {
    nodes,
    startupNodes: nodes.map((n) => ({ host: n.host, port: n.port })),
    waitForOk: (timeoutMs = options.clusterTimeoutMs ?? 30_000) => waitForClusterOk(nodes, total, timeoutMs),
    async stop() {
      await stopNodes()
      registry().handles.delete(cluster)
    },
    [Symbol.asyncDispose]() {
      return cluster.stop()
    },
  }
  registry().handles.add(cluster)
  try {
    await runToEnd(
      cli,
      ['--cluster', 'create', ...nodes.map((n) => n.address), '--cluster-replicas', String(replicas), '--cluster-yes'],
      30_000,
    )
    await waitForClusterOk(nodes, total, options.clusterTimeoutMs ?? 30_000, { masters, replicas })
  } catch (err) {
    const logs = nodes.map((n) => `--- ${n.address} ---\n${n.logs().split('\n').slice(-10).join('\n')}`).join('\n')
    await cluster.stop()
    throw new Error(`could not create the Redis Cluster: ${(err as Error).message}\nNode output:\n${logs}`)
  }
  return cluster
}

/** For a cluster test: the node that serves `key`'s slot now, by asking any node (CLUSTER KEYSLOT + SLOTS). */
export async function clusterNodeForKey(cluster: RedisCluster, key: string): Promise<RedisServer | undefined> {
  const any = cluster.nodes.find((n) => n.running)
  if (!any) return undefined
  const client = await RespClient.connect(any)
  try {
    const slot = Number(await client.command(['CLUSTER', 'KEYSLOT', key]))
    const ranges = (await client.command(['CLUSTER', 'SLOTS'])) as [number, number, [string, number]][]
    for (const [from, to, master] of ranges) {
      if (slot >= from && slot <= to) return cluster.nodes.find((n) => n.port === Number(master[1]))
    }
    return undefined
  } finally {
    client.close()
  }
}
