import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type FaultProxy, startFaultProxy } from './fault-proxy.js'
import { type RedisServer, startRedis } from './redis.js'
import { ReplyTimeoutError, RespClient, redisCommand } from './resp.js'

/** Tracks whether a promise has settled, to check that an answer is not there yet. */
function track<T>(promise: Promise<T>): { readonly settled: boolean; promise: Promise<T> } {
  const state = { settled: false, promise }
  promise.then(
    () => {
      state.settled = true
    },
    () => {
      state.settled = true
    },
  )
  return state
}

function rawConnect(target: { host: string; port: number }): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(target.port, target.host)
    socket.once('connect', () => resolve(socket))
    socket.once('error', reject)
  })
}

describe('startFaultProxy', () => {
  let redis: RedisServer
  let proxy: FaultProxy
  const clients: RespClient[] = []

  beforeAll(async () => {
    redis = await startRedis()
    proxy = await startFaultProxy({ target: redis })
  })
  afterEach(() => {
    for (const c of clients.splice(0)) c.close()
    proxy.setLatency(0)
    proxy.blackhole(false)
  })
  afterAll(async () => {
    await proxy?.close()
    await redis?.stop()
  })

  async function client(): Promise<RespClient> {
    const c = await RespClient.connect(proxy)
    clients.push(c)
    return c
  }

  it('passes traffic through to the target', async () => {
    expect(proxy.host).toBe('127.0.0.1')
    expect(proxy.port).not.toBe(redis.port)
    expect(proxy.url).toBe(`redis://127.0.0.1:${proxy.port}`)
    const c = await client()
    expect(await c.command(['SET', 'via-proxy', 'yes'])).toBe('OK')
    expect(await redisCommand(redis, ['GET', 'via-proxy'])).toBe('yes')
    // A larger payload crosses in several chunks.
    const big = 'y'.repeat(1_000_000)
    expect(await c.command(['SET', 'big', big])).toBe('OK')
    expect(await c.command(['GET', 'big'])).toBe(big)
  })

  it('setLatency() delays answers, keeping their order', async () => {
    const c = await client()
    proxy.setLatency(200)
    const reply = track(c.command(['PING'], { timeoutMs: 10_000 }))
    await sleep(50)
    expect(reply.settled).toBe(false) // a liveness check: 200 ms each way cannot have passed
    expect(await reply.promise).toBe('PONG')

    const replies = Array.from({ length: 20 }, () => c.command(['INCR', 'ordered'], { timeoutMs: 10_000 }))
    expect(await Promise.all(replies)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))

    proxy.setLatency(0)
    expect(await c.command(['PING'])).toBe('PONG')
  })

  it('blackhole() accepts connections but answers nothing; blackhole(false) restores service', async () => {
    const before = await client()
    expect(await before.command(['PING'])).toBe('PONG')
    proxy.blackhole()

    const during = await client() // connecting still succeeds
    await expect(during.command(['PING'], { timeoutMs: 300 })).rejects.toBeInstanceOf(ReplyTimeoutError)
    await expect(before.command(['PING'], { timeoutMs: 300 })).rejects.toBeInstanceOf(ReplyTimeoutError)

    const held = await client()
    const late = held.command(['PING'], { timeoutMs: 10_000 })
    await sleep(20)
    proxy.blackhole(false)
    expect(await late).toBe('PONG') // what was held is delivered once the partition heals

    const after = await client()
    expect(await after.command(['PING'])).toBe('PONG')
  })

  it('cutAll() closes every client connection; new connections still work', async () => {
    const sockets = await Promise.all([rawConnect(proxy), rawConnect(proxy)])
    const closed = sockets.map(
      (s) =>
        new Promise<void>((resolve) => {
          s.on('error', () => {})
          s.once('close', () => resolve())
        }),
    )
    // Make sure both connections are established through to Redis before cutting.
    for (const s of sockets) s.write('*1\r\n$4\r\nPING\r\n')
    await Promise.all(sockets.map((s) => new Promise((resolve) => s.once('data', resolve))))
    expect(proxy.connections).toBeGreaterThanOrEqual(2)

    proxy.cutAll()
    await Promise.all(closed)
    expect(sockets.every((s) => s.destroyed)).toBe(true)

    const c = await client()
    expect(await c.command(['PING'])).toBe('PONG')
  })

  it('resets clients when the target is down, and works again after it restarts', async () => {
    await redis.kill()
    const socket = await rawConnect(proxy)
    await new Promise<void>((resolve) => {
      socket.on('error', () => {})
      socket.once('close', () => resolve())
    })
    await redis.restart()
    const c = await client()
    expect(await c.command(['PING'])).toBe('PONG')
  })

  it('close() stops listening', async () => {
    const other = await startFaultProxy({ target: redis, latencyMs: 10 })
    expect(other.url).toBe(`redis://127.0.0.1:${other.port}`)
    expect(await redisCommand(other, ['PING'])).toBe('PONG')
    await other.close()
    await expect(redisCommand(other, ['PING'])).rejects.toMatchObject({ code: 'ECONNREFUSED' })
    const noUrl = await startFaultProxy({ target: { host: redis.host, port: redis.port } })
    expect(noUrl.url).toBeUndefined()
    await noUrl.close()
  })
})
