/**
 * `@cache/express`: express middleware for `@cache/core`'s HTTP cache. All the policy (what is stored, the key, Vary,
 * freshness, ETag/304, HEAD, stale-while-revalidate, coalescing, `Cache-Status`, tags) lives in `@cache/core/http`;
 * this file only hands express's request and response (which are Node's) to it.
 */
import { type Cache, CacheError } from '@cache/core'
import { createHttpCache, forwardDetached, type HttpCacheOptions, isDetached, nodeExchange } from '@cache/core/http'
import type { NextFunction, Request, RequestHandler, Response } from 'express'

/**
 * How a route caches; every field is optional. The callbacks (`key`, `tags`, `invalidateTags`) receive express's
 * `Request`. See `HttpCacheOptions` in `@cache/core/http` for the semantics of each field.
 *
 * Defaults: `ttl` undefined (only responses that state their freshness are stored, capped at a minute; with a
 * `ttl`, it is the freshness of those that state none and the cap), `staleWhileRevalidate` 0, `staleIfError` 0,
 * `scope` undefined (requests with `Authorization` or `Cookie` bypass the cache), `statuses`
 * [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501], `ignoreQuery` ['utm_*', 'fbclid', 'gclid'] (left
 * out of the key and removed from `req.url`, `req.originalUrl` and `req.query`), `maxBodySize` 1 MiB,
 * `maxVariants` 100, `lock` the cache's, `cacheStatus` 'cache', `keyPrefix` 'http:'.
 */
export type CacheResponseOptions = HttpCacheOptions<Request>

/**
 * Express middleware that caches the responses of the handlers after it. GET and HEAD requests are answered from
 * `cache` when a fresh copy is stored, else the handler runs and its response is stored if it may be; a POST, PUT,
 * PATCH or DELETE that goes through it and succeeds drops the stored responses of its URL (and `invalidateTags`).
 * Every answer carries a `Cache-Status` header (RFC 9211) saying what happened.
 *
 * Safe by default: requests with `Authorization` or `Cookie` are neither served from nor stored in the cache unless
 * the route says whose the response is (`scope: 'public'` or a per-user `key`), `Set-Cookie` is never stored, and
 * `no-store`, `private` and `Vary: *` responses are passed through, whoever set those headers. Without a `ttl`, a
 * response that says nothing about its freshness is not stored: app-wide, that keeps a private page requested as
 * `/account/profile.css` out of the cache (web cache deception).
 *
 * Works with express 4.21+ and 5, on a route or app-wide. One call makes one policy: reuse the returned middleware
 * on several routes to share its options.
 *
 * @param cache the `Cache` that holds the responses (a memory store, or tiers over Redis for several instances).
 * @param options how the route caches; see `CacheResponseOptions` for the defaults.
 * @throws CacheError `E_INVALID_OPTION` when `cache` is not a Cache or an option is invalid.
 *
 * @example
 * import { createCache } from '@cache/core'
 * import { cacheResponse } from '@cache/express'
 *
 * const cache = createCache()
 * app.get('/todos', cacheResponse(cache, { ttl: '30s', tags: () => ['todos'] }), listTodos)
 * app.post('/todos', cacheResponse(cache, { invalidateTags: () => ['todos'] }), createTodo)
 *
 * // or app-wide: every GET is cached for a minute, every successful POST/PUT/PATCH/DELETE invalidates its URL
 * app.use(cacheResponse(cache))
 */
export function cacheResponse(cache: Cache, options: CacheResponseOptions = {}): RequestHandler {
  if (typeof cache !== 'object' || cache === null || typeof (cache as Partial<Cache>).getOrSet !== 'function') {
    throw new CacheError('E_INVALID_OPTION', 'cacheResponse(cache, options) needs a Cache from createCache() first')
  }
  if (typeof options !== 'object' || options === null) {
    throw new CacheError('E_INVALID_OPTION', 'cacheResponse(cache, options): options must be an object')
  }
  const engine = createHttpCache<Request>(cache, options)

  return function cacheResponseMiddleware(req: Request, res: Response, next: NextFunction): void {
    // A background revalidation made by the engine itself: it wants the handler's answer, not the cache's.
    if (isDetached(req)) {
      forwardDetached(res, next)
      return
    }
    let ran = false
    const run = () => {
      ran = true
      next()
    }
    const exchange = nodeExchange(req, res, run, req, req.originalUrl)
    // The key is made of what the app reads: express's `req.protocol` and host honour the app's 'trust proxy'
    // setting (X-Forwarded-Proto and X-Forwarded-Host behind a trusted proxy), so an http->https redirect is never
    // stored under the https key, nor a page that prints its host under another host's key.
    const request = { ...exchange.request, protocol: req.protocol, host: hostOf(req) }
    const rewriteUrl = (to: string) => {
      exchange.rewriteUrl?.(to)
      req.originalUrl = to
      // express 4 parses `req.query` once, before any middleware; express 5 reads it from `req.url` on each access.
      const own = Object.getOwnPropertyDescriptor(req, 'query')
      if (own !== undefined && 'value' in own) {
        const parse = req.app?.get('query parser fn') as ((query: string) => unknown) | undefined
        const at = to.indexOf('?')
        ;(req as { query: unknown }).query = typeof parse === 'function' ? parse(at < 0 ? '' : to.slice(at + 1)) : {}
      }
    }
    engine.handle({ ...exchange, request, rewriteUrl }).catch((err: unknown) => {
      // The engine promises not to reject; should it, make sure the client is not left waiting. Before the handler
      // ran, express's error handling answers; after, the handler owns the response and we only end a stuck one.
      if (!ran) next(err)
      else if (!res.writableEnded) res.destroy(err instanceof Error ? err : new Error(String(err)))
    })
  }
}

/**
 * The host the app sees, as express computes it for `req.hostname` (and express 5's `req.host`): `X-Forwarded-Host`
 * (its first value) when the app trusts the proxy that sent the request, else `Host`. Unlike `req.hostname`, the
 * port is kept: it is part of what a page may print.
 */
function hostOf(req: Request): string | undefined {
  const trust = req.app?.get('trust proxy fn') as ((address: string | undefined, hop: number) => boolean) | undefined
  const forwarded = req.headers['x-forwarded-host']
  if (typeof forwarded === 'string' && forwarded !== '' && typeof trust === 'function') {
    if (trust(req.socket?.remoteAddress, 0)) {
      const comma = forwarded.indexOf(',')
      return (comma < 0 ? forwarded : forwarded.slice(0, comma)).trim()
    }
  }
  const host = req.headers.host
  return typeof host === 'string' ? host : undefined
}
