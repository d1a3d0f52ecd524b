import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clusterNodeForKey, type RedisCluster, startRedisCluster } from './redis.js'
import { clusterCommand, redisCommand } from './resp.js'

describe('startRedisCluster', () => {
  let cluster: RedisCluster

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 })
  }, 60_000)
  afterAll(async () => {
    await cluster?.stop()
  })

  it('reports cluster_state:ok on every node, with every slot assigned', async () => {
    expect(cluster.nodes).toHaveLength(3)
    expect(cluster.startupNodes).toEqual(cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })))
    for (const node of cluster.nodes) {
      expect(node.port + 10_000).toBeLessThanOrEqual(65_535)
      const info = String(await redisCommand(node, ['CLUSTER', 'INFO']))
      expect(info).toMatch(/cluster_state:ok/)
      expect(info).toMatch(/cluster_slots_assigned:16384/)
      expect(info).toMatch(/cluster_known_nodes:3/)
    }
  })

  it('serves keys through any node (following MOVED)', async () => {
    const keys = Array.from({ length: 12 }, (_, i) => `key:${i}`)
    for (const key of keys) expect(await clusterCommand(cluster.startupNodes, ['SET', key, `v-${key}`])).toBe('OK')
    // Read starting from another node; at least one key lives elsewhere, so redirections are exercised.
    const reversed = [...cluster.startupNodes].reverse()
    for (const key of keys) expect(await clusterCommand(reversed, ['GET', key])).toBe(`v-${key}`)
    const owners = new Set(await Promise.all(keys.map(async (k) => (await clusterNodeForKey(cluster, k))?.port)))
    expect(owners.size).toBeGreaterThan(1)
    // Asking a node that does not own the key directly yields MOVED.
    const owner = await clusterNodeForKey(cluster, 'key:0')
    const other = cluster.nodes.find((n) => n !== owner)!
    await expect(redisCommand(other, ['GET', 'key:0'])).rejects.toThrow(/^MOVED \d+ 127\.0\.0\.1:\d+$/)
  })

  it('stop() ends every node', async () => {
    await cluster.stop()
    for (const node of cluster.nodes) {
      expect(node.running).toBe(false)
      await expect(redisCommand(node, ['PING'])).rejects.toMatchObject({ code: 'ECONNREFUSED' })
    }
  })
})

/** Retries `check` until it passes (every 100 ms, up to `ms`). */
async function eventually(check: () => Promise<void>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    try {
      return await check()
    } catch (err) {
      if (Date.now() > deadline) throw err
      await sleep(100)
    }
  }
}

describe('startRedisCluster with replicas', () => {
  it('fails over when a master is killed, and the old master rejoins after restart()', async () => {
    // A shorter node timeout makes the failure detected, and the failover done, sooner.
    const cluster = await startRedisCluster({ masters: 3, replicas: 1, nodeTimeoutMs: 1_000 })
    try {
      expect(cluster.nodes).toHaveLength(6)
      const roles = String(await redisCommand(cluster.nodes[0]!, ['CLUSTER', 'NODES']))
      expect(roles.match(/\bmaster\b/g)).toHaveLength(3)
      expect(roles.match(/\bslave\b/g)).toHaveLength(3)

      expect(await clusterCommand(cluster.startupNodes, ['SET', 'survivor', 'yes'])).toBe('OK')
      const owner = (await clusterNodeForKey(cluster, 'survivor'))!
      // Wait until the write reached the replica before losing its master.
      expect(await redisCommand(owner, ['WAIT', '1', '5000'], { timeoutMs: 6_000 })).toBe(1)

      await owner.kill()
      await cluster.waitForOk()
      const promoted = (await clusterNodeForKey(cluster, 'survivor'))!
      expect(promoted.port).not.toBe(owner.port)
      expect(await clusterCommand(cluster.startupNodes, ['GET', 'survivor'])).toBe('yes')

      await owner.restart() // same port, same nodes.conf: it rejoins, as a replica of its old slots
      await cluster.waitForOk()
      await eventually(async () => expect(((await redisCommand(owner, ['ROLE'])) as unknown[])[0]).toBe('slave'))
    } finally {
      await cluster.stop()
    }
  }, 60_000)
})
