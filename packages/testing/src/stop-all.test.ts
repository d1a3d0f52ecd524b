import { existsSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { startFaultProxy } from './fault-proxy.js'
import { startMemcached } from './memcached.js'
import { startRedis } from './redis.js'
import { stopAll } from './registry.js'
import { redisCommand } from './resp.js'

describe('cleanup', () => {
  it('await using stops a server at the end of the block', async () => {
    let dir: string | undefined
    {
      await using redis = await startRedis()
      dir = redis.dir
      expect(await redisCommand(redis, ['PING'])).toBe('PONG')
    }
    expect(existsSync(dir!)).toBe(false)
  })

  it('stopAll() stops every server and proxy still running', async () => {
    const redis = await startRedis()
    const memcached = await startMemcached()
    const proxy = await startFaultProxy({ target: redis })
    const dir = redis.dir!
    await redis.pause() // a paused server is stopped too
    await stopAll()
    expect(redis.running).toBe(false)
    expect(memcached.running).toBe(false)
    expect(existsSync(dir)).toBe(false)
    await expect(redisCommand(proxy, ['PING'])).rejects.toMatchObject({ code: 'ECONNREFUSED' })
  })
})
