import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type MemcachedServer, startMemcached } from './memcached.js'
import { memcachedRequest } from './memcached-text.js'
import { ReplyTimeoutError } from './resp.js'

describe('startMemcached', () => {
  let server: MemcachedServer

  beforeAll(async () => {
    server = await startMemcached()
  })
  afterAll(async () => {
    await server?.stop()
  })

  it('answers version on 127.0.0.1 at the port it reports', async () => {
    expect(server.source).toBe('binary')
    expect(server.address).toBe(`127.0.0.1:${server.port}`)
    expect(server.url).toBe(`memcached://127.0.0.1:${server.port}`)
    expect(server.pid).toBeGreaterThan(0)
    expect(await memcachedRequest(server, 'version\r\n')).toMatch(/^VERSION \d+\.\d+/)
  })

  it('stores and returns values over the text protocol', async () => {
    expect(await memcachedRequest(server, 'set greeting 5 0 11\r\nhello world\r\n')).toBe('STORED\r\n')
    expect(await memcachedRequest(server, 'get greeting\r\n')).toBe('VALUE greeting 5 11\r\nhello world\r\nEND\r\n')
    // A value that looks like a reply line is read as data, not as the end of the response.
    expect(await memcachedRequest(server, 'set tricky 0 0 3\r\nEND\r\n')).toBe('STORED\r\n')
    expect(await memcachedRequest(server, 'get tricky missing\r\n')).toBe('VALUE tricky 0 3\r\nEND\r\nEND\r\n')
  })

  it('kill() makes connections fail; restart() brings it back, empty, on the same port', async () => {
    const port = server.port
    await server.kill()
    expect(server.running).toBe(false)
    await expect(memcachedRequest(server, 'version\r\n')).rejects.toMatchObject({ code: 'ECONNREFUSED' })
    await server.restart()
    expect(server.port).toBe(port)
    expect(await memcachedRequest(server, 'version\r\n')).toMatch(/^VERSION /)
    expect(await memcachedRequest(server, 'get greeting\r\n')).toBe('END\r\n')
  })

  it('pause() leaves requests unanswered, resume() answers again', async () => {
    await server.pause()
    await expect(memcachedRequest(server, 'version\r\n', { timeoutMs: 300 })).rejects.toBeInstanceOf(ReplyTimeoutError)
    await server.resume()
    expect(await memcachedRequest(server, 'version\r\n')).toMatch(/^VERSION /)
  })
})

describe('startMemcached options', () => {
  it('raises the item size limit with maxItemSize', async () => {
    const server = await startMemcached({ maxItemSize: '4m' })
    try {
      const big = 'x'.repeat(2 * 1024 * 1024)
      expect(await memcachedRequest(server, `set big 0 0 ${big.length}\r\n${big}\r\n`)).toBe('STORED\r\n')
      const reply = await memcachedRequest(server, 'get big\r\n', { timeoutMs: 5_000 })
      expect(reply.length).toBe(big.length + 'VALUE big 0 2097152\r\n\r\nEND\r\n'.length)
    } finally {
      await server.stop()
    }
  })

  it('uses MEMCACHED_URL only with { allowEnv: true }, and refuses fault control', async () => {
    const real = await startMemcached()
    const saved = process.env.MEMCACHED_URL
    process.env.MEMCACHED_URL = real.address
    try {
      const given = await startMemcached({ allowEnv: true })
      expect(given.source).toBe('env')
      expect(given.port).toBe(real.port)
      await expect(given.kill()).rejects.toThrow(/given by MEMCACHED_URL; fault tests need a server started here/)
      const own = await startMemcached()
      expect(own.source).toBe('binary')
      expect(own.port).not.toBe(real.port)
      await own.kill()
      await own.stop()
    } finally {
      if (saved === undefined) delete process.env.MEMCACHED_URL
      else process.env.MEMCACHED_URL = saved
      await real.stop()
    }
  })
})
