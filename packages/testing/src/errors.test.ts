import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { startMemcached } from './memcached.js'
import { startRedis, startRedisCluster, startRedises } from './redis.js'

const empty = mkdtempSync(join(tmpdir(), 'cache-testing-empty-path-'))
const scripts = mkdtempSync(join(tmpdir(), 'cache-testing-fake-bin-'))

afterAll(() => {
  rmSync(empty, { recursive: true, force: true })
  rmSync(scripts, { recursive: true, force: true })
})

function script(name: string, body: string): string {
  const path = join(scripts, name)
  writeFileSync(path, `#!/bin/sh\n${body}\n`)
  chmodSync(path, 0o755)
  return path
}

const HOW_TO_GET_IT = /apt-get install -y redis-server memcached/

describe('a missing binary', () => {
  it('startRedis says how to install it, or to set REDIS_URL', async () => {
    const err = (await startRedis({ PATH: empty }).catch((e: unknown) => e)) as Error
    expect(err).toBeInstanceOf(Error)
    expect(err.message).toMatch(/^redis-server was not found on PATH/)
    expect(err.message).toMatch(HOW_TO_GET_IT)
    expect(err.message).toMatch(/REDIS_URL/)
  })

  it('an explicit binary path that does not exist is reported the same way', async () => {
    await expect(startRedis({ binary: '/nonexistent/redis-server' })).rejects.toThrow(HOW_TO_GET_IT)
    await expect(startRedises(2, { PATH: '' })).rejects.toThrow(HOW_TO_GET_IT)
  })

  it('startRedisCluster and startMemcached say the same', async () => {
    await expect(startRedisCluster({ PATH: empty })).rejects.toThrow(HOW_TO_GET_IT)
    const err = (await startMemcached({ PATH: empty }).catch((e: unknown) => e)) as Error
    expect(err.message).toMatch(/^memcached was not found on PATH/)
    expect(err.message).toMatch(HOW_TO_GET_IT)
    expect(err.message).toMatch(/MEMCACHED_URL/)
    await expect(startMemcached({ binary: '/nonexistent/memcached' })).rejects.toThrow(HOW_TO_GET_IT)
  })
})

describe('a server that does not come up', () => {
  it('reports its exit and its last output', async () => {
    const binary = script('crashing-redis', 'echo "starting up"; echo "boom: bad config" >&2; exit 3')
    const err = (await startRedis({ binary }).catch((e: unknown) => e)) as Error
    expect(err.name).toBe('StartupError')
    expect(err.message).toMatch(/exited with code 3 during startup/)
    expect(err.message).toMatch(/starting up/)
    expect(err.message).toMatch(/\[stderr\] boom: bad config/)
  })

  it('is killed after the startup deadline, with a clear message', async () => {
    const binary = script('silent-memcached', 'echo "never listening"; exec sleep 30')
    const err = (await startMemcached({ binary, startupTimeoutMs: 500 }).catch((e: unknown) => e)) as Error
    expect(err.name).toBe('StartupError')
    expect(err.message).toMatch(/did not answer version within 500 ms/)
    expect(err.message).toMatch(/never listening/)
  })
})
