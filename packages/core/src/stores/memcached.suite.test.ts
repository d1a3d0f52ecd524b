import { type MemcachedServer, startMemcached } from '@cache/testing'
import { afterAll, beforeAll } from 'vitest'
import { storeSuite } from '../testing/store-suite.js'
import { memcachedStore } from './memcached.js'

let server: MemcachedServer

beforeAll(async () => {
  server = await startMemcached()
})
afterAll(async () => {
  await server?.stop()
})

storeSuite('memcachedStore', {
  create: () => memcachedStore({ servers: server.address, commandTimeout: '5s' }),
  capabilities: {
    // Memcached cannot scan: clear() takes namespace boundaries only ('ns:', 'ns.'), and the suite's prefixes are
    // arbitrary ones (E_UNSUPPORTED). Namespace clearing is tested in memcached.test.ts.
    clearPrefix: false,
    // deleteTagged works through tag generations but cannot count what it dropped (resolves 0); the suite checks
    // counts. Tags are tested in memcached.test.ts.
    tags: false,
    // Its own server: clear() may empty it.
    clearAll: true,
  },
  // Memcached's expiry counts whole seconds.
  timeScale: 3,
  // Under the default item size (1 MiB, key and header included).
  maxValueBytes: 900_000,
})
