import type { Cache } from '../cache.js'
import type { HttpCacheOptions, HttpExchange, HttpRequest } from './types.js'

/** The policy engine for one route (or one app): serves requests from `cache` and fills it. */
export interface HttpCache<R = HttpRequest> {
  /**
   * Serves one request: from the cache when it may, else through the exchange's handler (storing what may be
   * stored); an unsafe method that succeeds invalidates the URL's stored responses. Never leaves the client without
   * an answer and never rejects because of the cache: a cache that fails is passed through.
   */
  handle(exchange: HttpExchange<R>): Promise<void>
  /** Drops every stored response (every variant, every user) for an absolute URL ('https://example.com/todos?x=1'). */
  invalidate(url: string | URL): Promise<void>
}

/**
 * @example
 * const http = createHttpCache(cache, { ttl: '30s', staleWhileRevalidate: '1m' })
 * server.on('request', (req, res) => http.handle(nodeExchange(req, res, () => route(req, res), req)))
 */
export function createHttpCache<R = HttpRequest>(cache: Cache, options: HttpCacheOptions<R> = {}): HttpCache<R> {
  throw new Error(`not yet: ${String(cache)} ${String(options)}`)
}
