// What the Redis store, the bus and the write-behind queue share about one ioredis round trip: its deadline, and
// whether the client lost a connection it had.

import type { Cluster, Redis } from 'ioredis'
import { CacheError, isCacheError } from '../errors.js'
import { withDeadline } from './deadline.js'

/**
 * After a client was connected once, says why it is not connected now (its status), or undefined while it is. Before
 * the first connection commands may wait in ioredis' queue (within their deadline): start-up would otherwise fail.
 */
export function connectionLost(client: Redis | Cluster): () => string | undefined {
  let wasReady = client.status === 'ready'
  if (!wasReady) client.once('ready', () => (wasReady = true))
  return () => (wasReady && client.status !== 'ready' ? client.status : undefined)
}

/**
 * Races one round trip of `client` against `ms`: past it, `E_STORE_UNAVAILABLE` "<label>: <command> got no answer"
 * (the connection status in the cause); any failure but a CacheError becomes `E_STORE_UNAVAILABLE` with it as cause.
 * The abandoned command's eventual rejection is caught (see `withDeadline`).
 */
export function redisDeadline<T>(
  label: string,
  command: string,
  work: Promise<T>,
  ms: number,
  client: Redis | Cluster,
): Promise<T> {
  return withDeadline(
    work,
    ms,
    () =>
      new CacheError('E_STORE_UNAVAILABLE', `${label}: ${command} got no answer within ${ms}ms`, {
        cause: new Error(`timed out after ${ms}ms (connection status: ${client.status})`),
      }),
    (err) => {
      if (isCacheError(err)) return err
      const message = err instanceof Error ? err.message : String(err)
      return new CacheError('E_STORE_UNAVAILABLE', `${label}: ${command} failed: ${message}`, { cause: err })
    },
  )
}
