// redisQueue on real Redis servers: the WriteQueue contract, corrupted entries, a server killed mid-push, a cluster,
// and the durability test (a child process killed with SIGKILL while queuing; another consumer drains its writes).
import { type ChildProcess, spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { type RedisCluster, type RedisServer, startRedis, startRedisCluster } from '@cache/testing'
import { Cluster, Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isCacheError } from '../errors.js'
import { expectCode, pollUntil } from '../test-helpers.js'
import type { WriteBehindItem } from '../types.js'
import { WriteBehind } from '../write-behind.js'
import { writeQueueContract } from './fixtures/write-queue-contract.js'
import { redisQueue } from './redis-queue.js'

const here = dirname(fileURLToPath(import.meta.url))
const coreDir = join(here, '..', '..')
const childScript = join(here, 'fixtures', 'write-behind-child.ts')

let server: RedisServer
let client: Redis
let n = 0
const streamName = (s: string) => `wb${process.pid}:${n++}:${s}`

beforeAll(async () => {
  server = await startRedis()
  client = new Redis(server.url)
})

afterAll(async () => {
  client?.disconnect()
  await server?.stop()
})

writeQueueContract('redisQueue', async () => {
  const stream = streamName('contract')
  // Just client and stream: what RedisStore.writeQueue(name) will pass.
  const queue = redisQueue({ client, stream })
  const other = redisQueue({ client, stream })
  return { queue, other, cleanup: async () => void (await client.del(stream, `${stream}:dead`)) }
})

function hooks() {
  const dead: { item: WriteBehindItem; error: Error }[] = []
  const errors: Error[] = []
  return {
    dead,
    errors,
    hooks: {
      deadLetter: (item: WriteBehindItem, error: Error) => dead.push({ item, error }),
      error: (e: Error) => errors.push(e),
    },
  }
}

const item = (key: string, value: unknown): WriteBehindItem => ({
  namespace: 'app',
  key,
  value,
  attempts: 0,
  queuedAt: Date.now(),
})

describe('redisQueue', () => {
  it('a WriteBehind over it batches, coalesces, retries and dead-letters like over memory', async () => {
    const stream = streamName('wb')
    const h = hooks()
    const seen: WriteBehindItem[] = []
    const wb = new WriteBehind(
      {
        flush: async (batch) => {
          if (batch.some((i) => i.key === 'poison')) throw new Error('constraint violated')
          seen.push(...batch)
        },
        maxAttempts: 2,
        backoff: 5,
        interval: 10,
      },
      redisQueue({ client, stream }),
      h.hooks,
    )
    try {
      await wb.enqueue([
        { namespace: 'app', key: 'a', value: 1 },
        { namespace: 'app', key: 'a', value: new Map([['v', 2]]) },
        { namespace: 'app', key: 'b', value: new Date(5) },
      ])
      await wb.flush()
      expect(seen.map((i) => [i.key, i.value])).toEqual([
        ['a', new Map([['v', 2]])],
        ['b', new Date(5)],
      ])
      await wb.enqueue([{ namespace: 'app', key: 'poison', value: 0 }])
      expect(await pollUntil(async () => h.dead.length === 1, 5_000, 20)).toBe(true)
      expect(h.dead[0]!.item).toMatchObject({ key: 'poison', attempts: 2 })
      expect((await wb.deadLetters()).map((d) => [d.item.key, d.error])).toEqual([['poison', 'constraint violated']])
      expect(await wb.size()).toBe(0)
      expect(await client.xlen(stream)).toBe(0)
    } finally {
      await wb.close()
    }
  })

  it('a live process whose flush outlasts claimAfter keeps its items: it renews them, nobody takes them over', async () => {
    const stream = streamName('renew')
    let release!: () => void
    const gate = new Promise<void>((r) => {
      release = r
    })
    let started = false
    const slow = new WriteBehind(
      {
        flush: async () => {
          started = true
          await gate
        },
        interval: 10,
        claimAfter: 1_000,
      },
      redisQueue({ client, stream, consumer: 'slow' }),
      hooks().hooks,
    )
    const seenByOther: string[] = []
    const other = new WriteBehind(
      { flush: async (batch) => void seenByOther.push(...batch.map((i) => i.key)), interval: 50, claimAfter: 1_000 },
      redisQueue({ client, stream, consumer: 'other' }),
      hooks().hooks,
    )
    try {
      await slow.enqueue([{ namespace: 'app', key: 'a', value: 1 }])
      expect(await pollUntil(async () => started, 5_000, 10)).toBe(true)
      // Well past claimAfter while the flush hangs; the other consumer polls all along.
      await new Promise((r) => setTimeout(r, 2_500))
      expect(seenByOther).toEqual([])
      release()
      expect(await pollUntil(async () => (await slow.size()) === 0, 5_000, 20)).toBe(true)
    } finally {
      release()
      await Promise.all([slow.close(), other.close()])
    }
    expect(seenByOther).toEqual([])
  })

  it('a corrupted entry is dead-lettered with its decode error, once, and the good ones still flush', async () => {
    const stream = streamName('corrupt')
    const queue = redisQueue({ client, stream })
    await queue.push([item('good1', 1)])
    await client.xadd(stream, '*', 'v', Buffer.from([0xc1, 0x01, 0xde, 0xad, 0xbe, 0xef, 0, 1, 2]))
    await client.xadd(stream, '*', 'other', 'no v field')
    await queue.push([item('good2', 2)])
    const h = hooks()
    const seen: string[] = []
    const wb = new WriteBehind(
      { flush: async (batch) => void seen.push(...batch.map((i) => i.key)), interval: '1h' },
      queue,
      h.hooks,
    )
    try {
      await wb.flush()
      await wb.flush()
      expect(seen).toEqual(['good1', 'good2'])
      expect(h.dead).toHaveLength(2)
      for (const d of h.dead) expect(isCacheError(d.error, 'E_DESERIALIZE')).toBe(true)
      const dead = await wb.deadLetters()
      expect(dead).toHaveLength(2)
      expect(dead[0]!.error).toMatch(/cannot be read/)
      expect(Buffer.isBuffer(dead[0]!.item.value)).toBe(true) // the raw bytes, kept for a post-mortem
      expect(await client.xlen(stream)).toBe(0)
    } finally {
      await wb.close()
    }
  })

  it('a value the codec refuses rejects the push with E_SERIALIZE, and nothing is queued', async () => {
    const stream = streamName('refused')
    const queue = redisQueue({ client, stream })
    const err = await queue.push([item('ok', 1), item('fn', () => 1)]).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(isCacheError(err, 'E_SERIALIZE'), String(err)).toBe(true)
    expect(await client.xlen(stream)).toBe(0)
  })

  it('recreates its group when the stream was deleted', async () => {
    const stream = streamName('deleted')
    const queue = redisQueue({ client, stream })
    await queue.push([item('a', 1)])
    expect(await queue.take(10)).toHaveLength(1)
    await client.del(stream)
    await queue.push([item('b', 2)])
    expect((await queue.take(10)).map((t) => t.item.key)).toEqual(['b'])
  })

  it('leaves the group on close when it holds nothing, and never closes the client', async () => {
    const stream = streamName('close')
    const queue = redisQueue({ client, stream, consumer: 'leaving' })
    await queue.push([item('a', 1)])
    await queue.ack((await queue.take(10)).map((t) => t.id))
    await queue.close()
    const consumers = (await client.call('XINFO', 'CONSUMERS', stream, 'write-behind')) as unknown[]
    expect(consumers).toEqual([])
    expect(await client.ping()).toBe('PONG')
  })

  it('rejects bad options with E_INVALID_OPTION', () => {
    const bad: unknown[] = [
      undefined,
      { stream: 's' },
      { client: {}, stream: 's' },
      { client, stream: '' },
      { client, stream: 's', group: '' },
      { client, stream: 's', claimAfter: 0 },
      { client, stream: 's', commandTimeout: 'never' },
      { client, stream: 's', maxDeadLetters: 0 },
    ]
    for (const options of bad) {
      expectCode(() => redisQueue(options as Parameters<typeof redisQueue>[0]), 'E_INVALID_OPTION')
    }
  })
})

describe('redisQueue when the server fails', () => {
  it('killed mid-push: pushes settle, failures are E_STORE_UNAVAILABLE; restarted: it works again', async () => {
    const own = await startRedis()
    const ownClient = new Redis(own.url, { maxRetriesPerRequest: 1 })
    ownClient.on('error', () => {}) // the queue reports failures through its calls
    const queue = redisQueue({ client: ownClient, stream: 'killed', commandTimeout: 300 })
    try {
      await queue.push([item('warmup', 0)])
      const pushes = Array.from({ length: 200 }, (_, i) => queue.push([item(`k${i}`, i)]))
      const killed = own.kill()
      const after = Array.from({ length: 50 }, (_, i) => queue.push([item(`late${i}`, i)]))
      await killed
      const results = await Promise.allSettled([...pushes, ...after])
      const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
      expect(failures.length).toBeGreaterThan(0)
      for (const f of failures) expect(isCacheError(f.reason, 'E_STORE_UNAVAILABLE'), String(f.reason)).toBe(true)
      for (const call of [() => queue.take(10), () => queue.size(), () => queue.push([item('x', 1)])]) {
        const err = await call().then(
          () => undefined,
          (e: unknown) => e,
        )
        expect(isCacheError(err, 'E_STORE_UNAVAILABLE'), String(err)).toBe(true)
      }
      await own.restart()
      expect(
        await pollUntil(
          () =>
            queue.push([item('back', 1)]).then(
              () => true,
              () => false,
            ),
          10_000,
        ),
      ).toBe(true)
    } finally {
      ownClient.disconnect()
      await own.stop()
    }
  })
})

describe('redisQueue on a cluster', () => {
  let cluster: RedisCluster
  let clusterClient: Cluster
  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 })
    clusterClient = new Cluster(cluster.startupNodes)
    await clusterClient.ping()
  })
  afterAll(async () => {
    clusterClient?.disconnect()
    await cluster?.stop()
  })

  it('push, take, retry, dead, takeover and ack work on streams in several slots (no CROSSSLOT)', async () => {
    for (const stream of ['cq:a', 'cq:b', 'cq:c', 'cq:d']) {
      const queue = redisQueue({ client: clusterClient, stream, commandTimeout: '5s' })
      const other = redisQueue({ client: clusterClient, stream, commandTimeout: '5s' })
      await queue.push([item('a', new Date(1)), item('b', 2), item('c', 3)])
      const [a, b, c] = await queue.take(3)
      await queue.retry(a!.id, { ...a!.item, attempts: 1 }, 0)
      await queue.dead(b!.id, b!.item, 'no')
      const claimed = await other.take(10, 1) // c, left unacknowledged; then the retried a
      expect(claimed.map((t) => t.item.key).sort()).toEqual(['a', 'c'])
      expect(claimed.find((t) => t.item.key === 'a')!.item.value).toEqual(new Date(1))
      expect(claimed.some((t) => t.id === c!.id)).toBe(true)
      await other.ack(claimed.map((t) => t.id))
      expect(await queue.size()).toBe(0)
      expect((await queue.deadLetters()).map((d) => d.item.key)).toEqual(['b'])
    }
  })
})

describe('durability: a process killed with SIGKILL while queuing loses no confirmed write', () => {
  const N = 500

  it('another consumer takes over the dead process’s writes and flushes every confirmed one', async () => {
    const stream = streamName('durable')
    const child: ChildProcess = spawn(
      process.execPath,
      ['--import', 'tsx', '--conditions=@cache/source', childScript, server.url, stream, String(N)],
      { cwd: coreDir, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let stderr = ''
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    const confirmed = new Set<number>()
    let flushing = false
    let killed = false
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()))
    // Every line the child wrote before it died is read, including those still in the pipe when SIGKILL lands.
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const [word, arg] = line.split(' ')
      if (word === 'queued') confirmed.add(Number(arg))
      if (word === 'flushing') flushing = true
      if (!killed && flushing && confirmed.size >= N / 2 + 20) {
        killed = true
        child.kill('SIGKILL')
      }
    })
    try {
      expect(await pollUntil(async () => killed || child.exitCode !== null, 12_000, 20), stderr).toBe(true)
      await exited
    } finally {
      child.kill('SIGKILL')
    }
    expect(killed, stderr).toBe(true)
    expect(child.signalCode).toBe('SIGKILL')
    // Killed mid-queue, with part of its writes taken by its (blocked) flush and never acknowledged.
    expect(confirmed.size).toBeGreaterThan(N / 2)
    expect(confirmed.size).toBeLessThan(N)
    const pending = (await client.call('XPENDING', stream, 'write-behind')) as [number, ...unknown[]]
    expect(Number(pending[0])).toBeGreaterThan(0)

    const sink = new Map<string, WriteBehindItem[]>()
    const h = hooks()
    const rescuer = new WriteBehind(
      {
        flush: async (batch) => {
          for (const i of batch) sink.set(i.key, [...(sink.get(i.key) ?? []), i])
        },
        interval: 50,
        claimAfter: 200,
      },
      redisQueue({ client, stream, consumer: 'rescuer' }),
      h.hooks,
    )
    try {
      const missing = () => [...confirmed].filter((i) => !sink.has(`k${i}`))
      expect(await pollUntil(async () => missing().length === 0, 10_000, 50), `missing: ${missing()}`).toBe(true)
      for (const i of confirmed) {
        const got = sink.get(`k${i}`)!
        expect(got[0]!.value).toEqual({ i, at: new Date(1_700_000_000_000 + i) })
      }
      expect(h.dead).toEqual([])
      // Everything queued (confirmed or not) is flushed and acknowledged: nothing stays behind.
      expect(await pollUntil(async () => (await rescuer.size()) === 0, 5_000, 50)).toBe(true)
    } finally {
      await rescuer.close()
    }
  }, 30_000)
})
