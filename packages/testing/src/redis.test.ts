import { existsSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisServer, startRedis, startRedises } from './redis.js'
import { ReplyTimeoutError, RespClient, redisCommand } from './resp.js'

const refused = { code: 'ECONNREFUSED' }

describe('startRedis', () => {
  let server: RedisServer

  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(async () => {
    await server?.stop()
  })

  it('answers PING on 127.0.0.1 at the port it reports', async () => {
    expect(server.source).toBe('binary')
    expect(server.host).toBe('127.0.0.1')
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`)
    expect(server.address).toBe(`127.0.0.1:${server.port}`)
    expect(server.pid).toBeGreaterThan(0)
    expect(server.running).toBe(true)
    expect(await redisCommand(server, ['PING'])).toBe('PONG')
  })

  it('stores and returns values (SET/GET, INCR, a missing key)', async () => {
    const client = await RespClient.connect(server)
    try {
      expect(await client.command(['SET', 'greeting', 'héllo wörld'])).toBe('OK')
      expect(await client.command(['GET', 'greeting'])).toBe('héllo wörld')
      expect(await client.command(['INCR', 'counter'])).toBe(1)
      expect(await client.command(['GET', 'nothing-here'])).toBeNull()
      await expect(client.command(['NOT-A-COMMAND'])).rejects.toThrow(/ERR unknown command/)
    } finally {
      client.close()
    }
  })

  it('runs without persistence, in its own temp dir', async () => {
    expect(server.dir).toBeDefined()
    expect(existsSync(server.dir!)).toBe(true)
    expect(await redisCommand(server, ['CONFIG', 'GET', 'appendonly'])).toEqual(['appendonly', 'no'])
    expect(await redisCommand(server, ['CONFIG', 'GET', 'save'])).toEqual(['save', ''])
    expect(await redisCommand(server, ['CONFIG', 'GET', 'dir'])).toEqual(['dir', server.dir])
  })

  it('kill() makes connections fail; restart() brings it back on the same port, without its data', async () => {
    const port = server.port
    const oldPid = server.pid
    await redisCommand(server, ['SET', 'k', 'v'])
    await server.kill()
    expect(server.running).toBe(false)
    expect(server.pid).toBeUndefined()
    await expect(redisCommand(server, ['PING'])).rejects.toMatchObject(refused)

    await server.restart()
    expect(server.port).toBe(port)
    expect(server.pid).not.toBe(oldPid)
    expect(await redisCommand(server, ['PING'])).toBe('PONG')
    expect(await redisCommand(server, ['GET', 'k'])).toBeNull()
  })

  it('pause() leaves PING unanswered, resume() answers again (including what was sent meanwhile)', async () => {
    const before = await RespClient.connect(server)
    try {
      await server.pause()
      // A liveness probe: a paused process accepts nothing and answers nothing.
      const probe = await RespClient.connect(server).catch((err: unknown) => err)
      if (probe instanceof RespClient) {
        await expect(probe.command(['PING'], { timeoutMs: 300 })).rejects.toBeInstanceOf(ReplyTimeoutError)
      } else {
        expect(probe).toBeInstanceOf(ReplyTimeoutError)
      }
      const pending = before.command(['PING'], { timeoutMs: 10_000 })
      await server.resume()
      expect(await pending).toBe('PONG')
      expect(await redisCommand(server, ['PING'])).toBe('PONG')
    } finally {
      before.close()
    }
  })

  it('stop() ends it and removes its temp dir; restart() after stop() starts with a fresh dir', async () => {
    const dir = server.dir!
    await server.stop()
    expect(server.running).toBe(false)
    expect(existsSync(dir)).toBe(false)
    await expect(redisCommand(server, ['PING'])).rejects.toMatchObject(refused)
    await server.stop() // idempotent

    await server.restart()
    expect(await redisCommand(server, ['PING'])).toBe('PONG')
    expect(server.dir).toBeDefined()
    expect(existsSync(server.dir!)).toBe(true)
  })
})

describe('startRedis options', () => {
  it('keeps data across a graceful restart and a kill with { appendonly: true }', async () => {
    const server = await startRedis({ appendonly: true, appendfsync: 'always' })
    try {
      expect(await redisCommand(server, ['CONFIG', 'GET', 'appendonly'])).toEqual(['appendonly', 'yes'])
      await redisCommand(server, ['SET', 'durable', '1'])
      await server.restart()
      expect(await redisCommand(server, ['GET', 'durable'])).toBe('1')
      await redisCommand(server, ['SET', 'durable', '2'])
      await server.kill()
      await server.restart()
      expect(await redisCommand(server, ['GET', 'durable'])).toBe('2')
    } finally {
      await server.stop()
    }
  })

  it('passes extra arguments to redis-server', async () => {
    const server = await startRedis({ args: ['--maxmemory', '10mb'] })
    try {
      expect(await redisCommand(server, ['CONFIG', 'GET', 'maxmemory'])).toEqual([
        'maxmemory',
        String(10 * 1024 * 1024),
      ])
    } finally {
      await server.stop()
    }
  })

  it('fails clearly, with the server output, when the requested port is taken', async () => {
    const first = await startRedis()
    try {
      const err = await startRedis({ port: first.port }).catch((e: unknown) => e)
      expect(err).toMatchObject({ name: 'StartupError', portInUse: true })
      expect((err as Error).message).toMatch(/redis-server on 127\.0\.0\.1:\d+ exited with code 1 during startup/)
      expect((err as Error).message).toMatch(/Address already in use/)
    } finally {
      await first.stop()
    }
  })
})

describe('startRedises', () => {
  it('starts independent servers on distinct ports, all answering', async () => {
    const servers = await startRedises(3)
    try {
      expect(new Set(servers.map((s) => s.port)).size).toBe(3)
      expect(new Set(servers.map((s) => s.dir)).size).toBe(3)
      await Promise.all(servers.map((s, i) => redisCommand(s, ['SET', 'who', `server-${i}`])))
      const values = await Promise.all(servers.map((s) => redisCommand(s, ['GET', 'who'])))
      expect(values).toEqual(['server-0', 'server-1', 'server-2'])
    } finally {
      await Promise.all(servers.map((s) => s.stop()))
    }
  })
})

describe('REDIS_URL', () => {
  it('is used only with { allowEnv: true }, and refuses fault control', async () => {
    const real = await startRedis()
    const saved = process.env.REDIS_URL
    process.env.REDIS_URL = real.url
    try {
      const given = await startRedis({ allowEnv: true })
      expect(given.source).toBe('env')
      expect(given.url).toBe(real.url)
      expect(given.port).toBe(real.port)
      expect(given.pid).toBeUndefined()
      for (const action of [() => given.kill(), () => given.pause(), () => given.resume(), () => given.restart()]) {
        await expect(action()).rejects.toThrow(
          /this server was given by REDIS_URL; fault tests need a server started here/,
        )
      }
      await given.stop() // not ours: leaves it running
      expect(await redisCommand(real, ['PING'])).toBe('PONG')

      const own = await startRedis()
      expect(own.source).toBe('binary')
      expect(own.port).not.toBe(real.port)
      await own.stop()
    } finally {
      if (saved === undefined) delete process.env.REDIS_URL
      else process.env.REDIS_URL = saved
      await real.stop()
    }
  })
})
