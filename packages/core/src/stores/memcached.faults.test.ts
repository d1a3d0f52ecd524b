// Failures on real memcached processes: kill, pause (SIGSTOP), restart, and a black hole in front of the server.
import { startFaultProxy, startMemcached } from '@cache/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCache } from '../cache.js'
import { isCacheError } from '../errors.js'
import { liveEntry, recovers, caught as rejection } from '../test-helpers.js'
import { memcachedStore } from './memcached.js'

const unhandled: unknown[] = []
const onUnhandled = (reason: unknown) => unhandled.push(reason)
beforeAll(() => {
  process.on('unhandledRejection', onUnhandled)
})
afterAll(() => {
  process.off('unhandledRejection', onUnhandled)
})

const entry = (value: unknown) => liveEntry(value, {}, 60_000)

describe('memcachedStore on a failing server', () => {
  it('kill during a burst: every call settles, failures are E_STORE_UNAVAILABLE; restart: works again', async () => {
    const server = await startMemcached()
    const store = memcachedStore({ servers: server.address, commandTimeout: '300ms' })
    try {
      await store.set('burst:warm', entry(0))
      // Outcomes are collected as the calls are made (a rejection left unobserved across a tick is "unhandled").
      const calls: Promise<PromiseSettledResult<unknown>>[] = []
      const settle = (p: Promise<unknown>) =>
        calls.push(
          p.then(
            (value) => ({ status: 'fulfilled', value }) as const,
            (reason: unknown) => ({ status: 'rejected', reason }) as const,
          ),
        )
      let kill: Promise<void> | undefined
      for (let i = 0; i < 300; i++) {
        settle(i % 2 === 0 ? store.set(`burst:${i}`, entry(i)) : store.get(`burst:${i - 1}`))
        if (i === 50) kill = server.kill()
        if (i % 25 === 0) await new Promise((r) => setImmediate(r))
      }
      await kill
      const settled = await Promise.all(calls)
      const failures = settled.filter((s) => s.status === 'rejected')
      expect(failures.length).toBeGreaterThan(0)
      for (const f of failures)
        expect(isCacheError((f as PromiseRejectedResult).reason, 'E_STORE_UNAVAILABLE')).toBe(true)
      // While it is down: fail fast with the code, never hang.
      expect(isCacheError(await rejection(store.get('burst:warm')), 'E_STORE_UNAVAILABLE')).toBe(true)
      await server.restart()
      expect(
        await recovers(async () => {
          await store.set('burst:after', entry('back'))
          if ((await store.get('burst:after'))?.value !== 'back') throw new Error('not yet')
        }),
      ).toBe(true)
      expect(unhandled).toEqual([])
    } finally {
      await store.close()
      await server.stop()
    }
  }, 30_000)

  it('pause (SIGSTOP) beyond the deadline: E_STORE_UNAVAILABLE with a cause; resume: works again', async () => {
    const server = await startMemcached()
    const store = memcachedStore({ servers: server.address, commandTimeout: '300ms' })
    try {
      await store.set('p:k', entry('v'))
      await server.pause()
      const err = await rejection(store.get('p:k'))
      expect(isCacheError(err, 'E_STORE_UNAVAILABLE')).toBe(true)
      expect((err as Error).cause).toBeDefined()
      expect(isCacheError(await rejection(store.set('p:k2', entry(1))), 'E_STORE_UNAVAILABLE')).toBe(true)
      await server.resume()
      expect(
        await recovers(async () => {
          if ((await store.get('p:k'))?.value !== 'v') throw new Error('not yet')
        }),
      ).toBe(true)
      expect(unhandled).toEqual([])
    } finally {
      await store.close()
      await server.stop()
    }
  }, 30_000)

  it('black hole (connections accepted, never answered): E_STORE_UNAVAILABLE; healed: works again', async () => {
    const server = await startMemcached()
    const proxy = await startFaultProxy({ target: server })
    const store = memcachedStore({ servers: proxy.address, commandTimeout: '300ms' })
    try {
      await store.set('bh:k', entry('v'))
      proxy.blackhole()
      expect(isCacheError(await rejection(store.get('bh:k')), 'E_STORE_UNAVAILABLE')).toBe(true)
      expect(isCacheError(await rejection(store.clear('bh:')), 'E_STORE_UNAVAILABLE')).toBe(true)
      proxy.blackhole(false)
      // The clear that timed out was held by the black hole and runs once it heals (a call abandoned at its deadline
      // may still happen, as with any network): 'bh:k' may be gone, so recovery is shown with a fresh write.
      expect(
        await recovers(async () => {
          await store.set('bh:k2', entry('w'))
          if ((await store.get('bh:k2'))?.value !== 'w') throw new Error('not yet')
        }),
      ).toBe(true)
      expect(unhandled).toEqual([])
    } finally {
      await store.close()
      await proxy.close()
      await server.stop()
    }
  }, 30_000)

  it('a Cache over a dead memcached answers from the loader and counts the errors', async () => {
    const server = await startMemcached()
    const store = memcachedStore({ servers: server.address, commandTimeout: '300ms' })
    const cache = createCache({ store, namespace: 'dead' })
    try {
      await cache.set('k', 'cached')
      await server.kill()
      const errors: string[] = []
      cache.on('error', ({ error }) => errors.push((error as { code?: string }).code ?? error.message))
      expect(await cache.getOrSet('k', () => 'loaded')).toBe('loaded')
      expect(await cache.getOrSet('k2', async () => 42)).toBe(42)
      expect(cache.stats().errors).toBeGreaterThan(0)
      expect(errors).toContain('E_STORE_UNAVAILABLE')
      expect(unhandled).toEqual([])
    } finally {
      await cache.close()
      await store.close()
      await server.stop()
    }
  }, 30_000)
})
