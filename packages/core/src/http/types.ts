import type { Duration } from '../duration.js'
import type { LockOptions } from '../types.js'

/** A header's value as frameworks hand it over. Names are always lower case. */
export type HeaderValue = string | number | readonly string[] | undefined
export type HttpHeaders = Readonly<Record<string, HeaderValue>>

/** A request as the policy sees it. Adapters build it from their framework's request. */
export interface HttpRequest {
  /** Upper case: 'GET', 'HEAD', 'POST', … */
  readonly method: string
  /** 'http' or 'https': the scheme the client used (part of the key). */
  readonly protocol: string
  /** Path and query as the client sent them ('/todos?page=2'); express's `originalUrl`, not its `url`. */
  readonly url: string
  /** Lower-case names. `host` is part of the key (unless `host` below is given). */
  readonly headers: HttpHeaders
  /**
   * The host the application sees, when it is not the `Host` header: express or fastify behind a trusted proxy read
   * `X-Forwarded-Host`. It is validated (RFC 9110 `uri-host [":" port]`) and keyed instead of `Host`. @default the
   * `Host` header
   */
  readonly host?: string | undefined
}

/** A complete response: what is stored, and what the engine sends on a hit. */
export interface HttpResponse {
  readonly status: number
  /** Lower-case names; `set-cookie` may be a list. */
  readonly headers: HttpHeaders
  /** Binary-safe. Empty for HEAD, 304 and 204 answers. */
  readonly body: Uint8Array
  /**
   * Only on what `HttpExchange.detached` resolves with: the headers that middleware before the cache had set on this
   * response when the handler started. A header of `headers` with the same name and value counts in whether and
   * how long the response is stored, as every final header does, but is left out of the stored copy.
   */
  readonly outer?: HttpHeaders | undefined
}

/**
 * What an adapter must do with the response its handler produced, decided by the engine once the status and the
 * headers are known and before a byte of it is sent.
 */
export type ForwardDecision =
  /**
   * Let the response go to the client with `headers` added (replacing any the handler set under the same name). When
   * `capture` > 0, also collect the body for the cache, at most `capture` bytes: a bigger body is sent in full but
   * not collected.
   */
  | {
      readonly action: 'send'
      readonly headers: readonly (readonly [string, string])[]
      readonly capture: number
      /**
       * When set, finish the response (its last bytes, its end) only once this settles: an invalidation that the
       * client's next request must already see. It never rejects.
       */
      readonly hold?: Promise<void> | undefined
    }
  /** Send nothing of it: the engine answers the client with `send()` instead (a stale copy, on stale-if-error). */
  | { readonly action: 'discard' }

/**
 * One request in flight, as an adapter hands it to the engine. The engine calls `forward` at most once and `send` at
 * most once, never both unless `forward`'s decision was 'discard'.
 */
export interface HttpExchange<R = HttpRequest> {
  readonly request: HttpRequest
  /** The framework's own request object (express `Request`, hono `Context`, …), passed to the route's callbacks. */
  readonly source: R
  /**
   * Runs the route's handler for this request. The adapter calls `head` exactly once, when the status and headers
   * are final (express: at `writeHead` or the first write; fastify: in `onSend`; hono: after `next()`), follows
   * the decision, and resolves with the collected body: `undefined` when none was asked for, the body outgrew the
   * cap, the stream was aborted, or the adapter cannot collect this kind of body. An adapter that holds the whole
   * response before sending it (hono) may call `head` once more, with the `content-length` it learnt by reading a
   * body the first decision asked to collect. An adapter whose framework lets middleware that runs before the cache
   * change the headers after the handler (express-session's writeHead wrapper, a later fastify `onSend` hook, hono
   * middleware after `next()`) calls `head` once more with the headers as they finally went out, and drops the copy
   * unless that decision still asks for it. A second call can only veto: what is stored is the answer as the first
   * call saw it (such middleware runs again on every hit, compressing or adding its headers).
   *
   * `headers` are the response's final headers, whoever set them (the handler, or middleware that ran before the
   * cache): the decision is taken on all of them. `outer` are the headers that earlier middleware had set when the
   * handler started: a final header with the same name and value is kept out of the stored copy, since it belongs
   * to this request (a request id, a session cookie), and the earlier middleware sets it again on the next request.
   */
  forward(
    head: (status: number, headers: HttpHeaders, outer?: HttpHeaders) => ForwardDecision,
  ): Promise<Uint8Array | undefined>
  /**
   * Sends a response the engine made (a hit, a 304, a stale copy). Status, headers and body are sent exactly as
   * given: `content-length` is set by the engine (also on HEAD, where the body is empty).
   */
  send(response: HttpResponse): void | Promise<void>
  /**
   * Makes the handler see `url` (path and query, as in `HttpRequest.url`) instead of the request's own: how the
   * engine removes the parameters of `ignoreQuery` from what the application reads (URL and parsed query), so that
   * a parameter left out of the key can never shape a stored answer. Called at most once, before the handler runs.
   * Optional: without it, no parameter is ignored (every one is part of the key).
   */
  rewriteUrl?: ((url: string) => void) | undefined
  /**
   * Runs the route's handler for this request with `headers` added to its response, and watches nothing: how the
   * engine serves a URL whose responses it has seen are not storable, again and again (hit-for-pass). Optional:
   * without it, `forward` is used.
   */
  pass?: ((headers: readonly (readonly [string, string])[]) => void) | undefined
  /**
   * Runs a copy of `request` with no client attached and resolves with its complete response: how the engine
   * revalidates in the background (stale-while-revalidate) and fills the cache for a HEAD. `runDetached` in
   * `@cache/core/http` does it for any Node `http.Server`. Without it, stale entries are revalidated while the client
   * waits (and still served if that fails, within stale-if-error).
   */
  detached?: ((request: HttpRequest) => Promise<HttpResponse>) | undefined
}

/** How a route caches; every field is optional. `R` is the framework's request type (see `HttpExchange.source`). */
export interface HttpCacheOptions<R = HttpRequest> {
  /**
   * How long a response stays fresh when it says nothing about its freshness (no `s-maxage`, `max-age` or
   * `Expires`), and the cap on what it says. Left out, a response that says nothing is not stored at all (so an
   * app-wide `cacheResponse(cache)` never stores a page that did not ask to be cached, such as private data under
   * `/account/profile.css`), and what a response says is capped at one minute. @default undefined (only responses
   * that state their freshness are stored, for at most '1m')
   */
  ttl?: Duration
  /**
   * How long a stale response may be served while one background request refreshes it (RFC 5861), unless the
   * response's own `stale-while-revalidate` says otherwise. @default 0
   */
  staleWhileRevalidate?: Duration
  /**
   * How long a stale response may be served when refreshing it fails (5xx or a thrown handler), unless the
   * response's own `stale-if-error` says otherwise. @default 0
   */
  staleIfError?: Duration
  /**
   * Requests carrying `Authorization` or `Cookie` bypass the cache unless the route says whose the response is:
   * `'public'` (the same for everyone, whatever the credentials) or a per-user `key`. @default undefined
   */
  scope?: 'public' | undefined
  /**
   * Adds a part to the key, such as the user's id, so each user gets their own copy; return `undefined` to bypass
   * the cache for this request. Requests with credentials are cached only under such a key (or `scope: 'public'`).
   */
  key?: ((req: R) => string | undefined) | undefined
  /** Tags of the stored response, for `cache.invalidateTags`. */
  tags?: ((req: R) => readonly string[]) | undefined
  /** Tags to invalidate after an unsafe request (POST, PUT, PATCH, DELETE) to this route succeeds (2xx or 3xx). */
  invalidateTags?: ((req: R) => readonly string[]) | undefined
  /**
   * Status codes that may be stored. @default [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501] (RFC 9110
   * §15.1; 206 only for requests with `Range`, which is then part of the key)
   */
  statuses?: readonly number[] | undefined
  /**
   * Query parameters left out of the key, and removed from the URL the handler sees (so they can never shape a stored
   * answer); a trailing '*' matches a prefix. Names are matched as sent (percent-encoded). @default ['utm_*',
   * 'fbclid', 'gclid']
   */
  ignoreQuery?: readonly string[] | undefined
  /**
   * Most variants (distinct values of the headers its `Vary` names) kept per URL; storing one more drops the oldest.
   * Bounds what a flood of `Accept-Language` values can store, and what invalidating the URL costs. @default 100
   */
  maxVariants?: number | undefined
  /** Responses with a bigger body are passed through uncached. @default 1_048_576 (1 MiB) */
  maxBodySize?: number | undefined
  /** Cross-process coalescing of misses (see `GetOrSetOptions.lock`). @default the cache's `lock` */
  lock?: boolean | LockOptions | undefined
  /** The cache's name in `Cache-Status`; `false` leaves the header out. @default 'cache' */
  cacheStatus?: string | false | undefined
  /** Prefix of every key and tag the engine writes. @default 'http:' */
  keyPrefix?: string | undefined
}
