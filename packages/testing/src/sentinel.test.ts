import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisCommand } from './resp.js'
import { type RedisSentinel, startRedisSentinel } from './sentinel.js'

describe('startRedisSentinel', () => {
  let setup: RedisSentinel

  beforeAll(async () => {
    setup = await startRedisSentinel({ replicas: 1, sentinels: 3, masterName: 'mymaster' })
  }, 60_000)
  afterAll(async () => {
    await setup?.stop()
  })

  it('every sentinel reports the master, the replica and the other sentinels', async () => {
    expect(setup.masterName).toBe('mymaster')
    expect(setup.replicas).toHaveLength(1)
    expect(setup.sentinels).toHaveLength(3)
    expect(setup.sentinels).toEqual(setup.sentinelServers.map((s) => ({ host: '127.0.0.1', port: s.port })))
    for (const sentinel of setup.sentinels) {
      expect(await redisCommand(sentinel, ['SENTINEL', 'get-master-addr-by-name', 'mymaster'])).toEqual([
        '127.0.0.1',
        String(setup.master.port),
      ])
      expect(await redisCommand(sentinel, ['SENTINEL', 'replicas', 'mymaster'])).toHaveLength(1)
      expect(await redisCommand(sentinel, ['SENTINEL', 'sentinels', 'mymaster'])).toHaveLength(2)
    }
    expect(((await redisCommand(setup.master, ['ROLE'])) as unknown[])[0]).toBe('master')
    expect(((await redisCommand(setup.replicas[0]!, ['ROLE'])) as unknown[])[0]).toBe('slave')
    expect(await setup.waitForMaster()).toBe(setup.master)
  })

  it('promotes the replica when the master is killed', async () => {
    expect(await redisCommand(setup.master, ['SET', 'survivor', 'yes'])).toBe('OK')
    expect(await redisCommand(setup.master, ['WAIT', '1', '5000'], { timeoutMs: 6_000 })).toBe(1)

    await setup.master.kill()
    const promoted = await setup.waitForMaster(20_000)
    expect(promoted).toBe(setup.replicas[0])
    for (const sentinel of setup.sentinels) {
      expect(await redisCommand(sentinel, ['SENTINEL', 'get-master-addr-by-name', 'mymaster'])).toEqual([
        '127.0.0.1',
        String(promoted.port),
      ])
    }
    expect(await redisCommand(promoted, ['GET', 'survivor'])).toBe('yes')
  }, 60_000)

  it('stop() ends every process', async () => {
    await setup.stop()
    for (const server of [...setup.dataNodes, ...setup.sentinelServers]) expect(server.running).toBe(false)
  })
})
