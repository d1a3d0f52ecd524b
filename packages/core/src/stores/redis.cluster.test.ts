import { clusterNodeForKey, type RedisCluster, redisCommand, startRedisCluster } from '@cache/testing'
import { Cluster } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { liveEntry } from '../test-helpers.js'
import { storeSuite } from '../testing/store-suite.js'
import type { StoredEntry } from '../types.js'
import { keySlot, redisStore } from './redis.js'

let cluster: RedisCluster
let client: Cluster

beforeAll(async () => {
  cluster = await startRedisCluster({ masters: 3 })
  client = new Cluster(cluster.startupNodes)
  await client.ping()
})

afterAll(async () => {
  client?.disconnect()
  await cluster?.stop()
})

storeSuite('redisStore (cluster)', {
  create: () => redisStore({ client, commandTimeout: '5s' }),
  cleanup: async (store) => store.close(),
  keyPrefix: `redis-cluster-suite-${process.pid}`,
})

const entry = (value: unknown, fields: Partial<StoredEntry> = {}) => liveEntry(value, fields, 60_000, 120_000)

describe('redisStore on a 3-master cluster', () => {
  const run = `c${process.pid}.${Date.now().toString(36)}`
  // Enough keys to land on every master and in many slots.
  const keysIn = (name: string, count = 200) => Array.from({ length: count }, (_, i) => `${run}:${name}:${i}`)

  it('keySlot agrees with CLUSTER KEYSLOT', async () => {
    const node = cluster.nodes[0]!
    for (const key of [
      '123456789',
      'foo',
      '{}foo',
      'foo{}{bar}',
      'foo{{bar}}zap',
      '日本語:😀',
      'a\u0000b',
      '{a}{b}',
      'x'.repeat(300),
    ]) {
      expect(keySlot(key), key).toBe(Number(await redisCommand(node, ['CLUSTER', 'KEYSLOT', key])))
    }
  })

  it('setMany, getMany and deleteMany over keys in many slots: no CROSSSLOT', async () => {
    const store = redisStore({ client })
    const keys = keysIn('batch')
    expect(new Set(keys.map((k) => keySlot(k))).size).toBeGreaterThan(100)
    await store.setMany(keys.map((k, i) => [k, entry(new Uint8Array([i & 0xff]), { tags: [`${run}:tag:${i % 5}`] })]))
    const got = await store.getMany(keys)
    for (const [i, e] of got.entries()) expect(e?.value).toEqual(new Uint8Array([i & 0xff]))
    expect(await store.deleteTagged([`${run}:tag:0`])).toBe(40)
    expect(await store.deleteMany(keys)).toBe(160)
    expect((await store.getMany(keys)).every((e) => e === undefined)).toBe(true)
  })

  it('clear(prefix) runs on every master: keys on all 3 are gone, others stay', async () => {
    const store = redisStore({ client })
    const gone = keysIn('clear', 300)
    const kept = keysIn('kept', 30)
    await store.setMany([...gone, ...kept].map((k) => [k, entry(new Uint8Array([1]))]))
    const owners = new Set(
      await Promise.all(gone.slice(0, 60).map(async (k) => (await clusterNodeForKey(cluster, k))?.port)),
    )
    expect(owners.size).toBe(3)
    for (const node of cluster.nodes) expect((await scanNode(node.port, `${run}:clear:*`)).length).toBeGreaterThan(0)
    await store.clear(`${run}:clear:`)
    for (const node of cluster.nodes) {
      expect(await scanNode(node.port, `${run}:clear:*`), `node ${node.port}`).toEqual([])
    }
    expect((await store.getMany(kept)).every((e) => e !== undefined)).toBe(true)
    await store.deleteMany(kept)
  })

  it('creates and closes its own cluster client', async () => {
    const store = redisStore({ cluster: { nodes: cluster.startupNodes } })
    const k = `${run}:own`
    await store.set(k, entry(new Uint8Array([9])))
    expect((await store.get(k))?.value).toEqual(new Uint8Array([9]))
    await store.delete(k)
    await store.close()
    expect(store.client.status).toBe('end')
    expect(client.status).toBe('ready')
  })
})

async function scanNode(port: number, pattern: string): Promise<string[]> {
  const node = cluster.nodes.find((n) => n.port === port)!
  const [, found] = (await redisCommand(node, ['SCAN', '0', 'MATCH', pattern, 'COUNT', '100000'])) as [string, string[]]
  return found
}
