// Several real processes over one real Redis (standalone and Cluster): cross-process stampede protection.
// k = 4 child processes × 250 concurrent callers of one cold key with `lock: true` → exactly 1 loader call.
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { type RedisCluster, type RedisServer, startRedis, startRedisCluster } from '@cache/testing'
import { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const here = dirname(fileURLToPath(import.meta.url))
const CHILD = join(here, 'fixtures', 'stampede-child.ts')
const PROCESSES = 4
const CALLERS = 250

interface ChildReport {
  calls: number
  values: string[]
  errors: string[]
  waitedMs: number
}

/** Starts one instance process; resolves once it printed "ready", with a promise of its report. */
async function startChild(args: string[]): Promise<{ child: ChildProcess; report: Promise<ChildReport> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=@cache/source', CHILD, ...args], {
    cwd: join(here, '..'),
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (chunk) => {
    stderr += String(chunk)
  })
  const lines = createInterface({ input: child.stdout! })
  const iterator = lines[Symbol.asyncIterator]()
  const first = await Promise.race([
    iterator.next(),
    once(child, 'exit').then(([code]) => {
      throw new Error(`child exited with ${code} before ready: ${stderr}`)
    }),
  ])
  expect(first.value).toBe('ready')
  const report = iterator.next().then((line) => {
    if (line.done) throw new Error(`child ended without a report: ${stderr}`)
    return JSON.parse(line.value) as ChildReport
  })
  report.catch(() => {})
  return { child, report }
}

async function stampede(target: string, namespace: string, counter: Redis | Cluster): Promise<ChildReport[]> {
  const children = await Promise.all(
    Array.from({ length: PROCESSES }, () => startChild([target, namespace, 'cold', String(CALLERS), '200'])),
  )
  try {
    // All at once: every process is connected and waiting on stdin.
    for (const { child } of children) child.stdin!.end('go\n')
    const reports = await Promise.all(children.map(({ report }) => report))
    await Promise.all(children.map(({ child }) => (child.exitCode === null ? once(child, 'exit') : undefined)))
    expect(Number(await counter.get(`${namespace}:loads`))).toBe(1)
    return reports
  } finally {
    for (const { child } of children) if (child.exitCode === null) child.kill('SIGKILL')
  }
}

function expectOneLoad(reports: ChildReport[]): void {
  expect(reports.reduce((sum, r) => sum + r.calls, 0)).toBe(1)
  expect(reports.flatMap((r) => r.errors)).toEqual([])
  // Every caller of every process got the one value.
  expect(new Set(reports.flatMap((r) => r.values)).size).toBe(1)
}

describe('cross-process stampede protection', () => {
  let server: RedisServer
  let cluster: RedisCluster
  let redis: Redis
  let clusterClient: Cluster

  beforeAll(async () => {
    ;[server, cluster] = await Promise.all([startRedis(), startRedisCluster()])
    redis = new Redis(server.port, server.host)
    clusterClient = new Cluster(cluster.startupNodes)
  }, 90_000)

  afterAll(async () => {
    redis?.disconnect()
    clusterClient?.disconnect()
    await Promise.all([server?.stop(), cluster?.stop()])
  })

  it(`${PROCESSES} processes × ${CALLERS} callers on standalone Redis: exactly 1 loader call`, async () => {
    expectOneLoad(await stampede(`redis://${server.host}:${server.port}`, `st-${process.pid}`, redis))
  }, 60_000)

  it(`${PROCESSES} processes × ${CALLERS} callers on a Redis Cluster: exactly 1 loader call`, async () => {
    const nodes = cluster.startupNodes.map(({ host, port }) => `${host}:${port}`).join(',')
    expectOneLoad(await stampede(`cluster:${nodes}`, `cl-${process.pid}`, clusterClient))
  }, 60_000)
})
