import type { Cache } from '../cache.js'
import type { Duration } from '../duration.js'
import type { LockOptions } from '../types.js'

/** A request as a suite route's callbacks see it, whatever the framework. Header names in lower case. */
export interface SuiteRequest {
  readonly method: string
  /** Path and query as sent. */
  readonly url: string
  readonly headers: Readonly<Record<string, string | undefined>>
}

/** What a suite handler answers; the harness turns it into its framework's response. */
export interface SuiteReply {
  /** @default 200 */
  status?: number
  /** Set exactly (a list for several `set-cookie`). */
  headers?: Record<string, string | string[]>
  /** A string is sent as UTF-8. Ignored when `stream` is given. */
  body?: string | Uint8Array
  /** A streamed body (sent chunk by chunk as the iterator yields); an iterator that throws aborts the response. */
  stream?: AsyncIterable<Uint8Array>
  /** The handler throws this instead of answering (the framework's error handling answers, with a 5xx). */
  throws?: Error
}

/** The route options the suite uses, with framework-free callbacks; the harness adapts them to its adapter. */
export interface SuiteCacheOptions {
  ttl?: Duration
  staleWhileRevalidate?: Duration
  staleIfError?: Duration
  scope?: 'public'
  key?: (req: SuiteRequest) => string | undefined
  tags?: (req: SuiteRequest) => readonly string[]
  invalidateTags?: (req: SuiteRequest) => readonly string[]
  statuses?: readonly number[]
  ignoreQuery?: readonly string[]
  maxBodySize?: number
  lock?: boolean | LockOptions
  cacheStatus?: string | false
}

/** One route: the same handler and cache options for each of `methods`, at `path` (exact match, any query). */
export interface SuiteRoute {
  readonly path: string
  /** @default ['GET'] (HEAD is answered by the GET route, as every framework does) */
  readonly methods?: readonly ('GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE')[]
  readonly cache: SuiteCacheOptions
  readonly handler: (req: SuiteRequest) => SuiteReply | Promise<SuiteReply>
}

/** A running server of the harness. */
export interface SuiteServer {
  /** 'http://127.0.0.1:PORT' */
  readonly url: string
  close(): Promise<void>
}

/** What an adapter can do; each flag switches one group of the suite on or off. */
export interface HttpAdapterCapabilities {
  /**
   * The adapter speaks HTTP caching on the wire: status codes, `Cache-Status`, `Age`, `ETag`/304, HEAD, Vary,
   * `no-store`/`private`, `Set-Cookie`, Host. Off for tRPC, whose procedures return data. Default true.
   */
  http: boolean
  /** Streamed responses pass through (and are cached within the cap when the adapter can tee them). Default true. */
  streaming: boolean
  /** Stale entries are revalidated in the background while the stale copy is served at once. Default true. */
  backgroundRevalidation: boolean
}

export interface HttpAdapterHarness {
  /** Shown in the suite's describe(). */
  readonly name: string
  /** Starts a server on 127.0.0.1 (port 0) that serves `routes`, each behind the adapter with its `cache` options. */
  start(cache: Cache, routes: readonly SuiteRoute[]): Promise<SuiteServer>
  /**
   * Calls a route as a client and returns status, headers and body text. Default: `fetch(server.url + path, init)`.
   * tRPC's harness maps the path to a query procedure and unwraps the data.
   */
  call?(
    server: SuiteServer,
    path: string,
    init?: { method?: string; headers?: Record<string, string> },
  ): Promise<{ status: number; headers: Headers; body: string }>
  capabilities?: Partial<HttpAdapterCapabilities>
}

/**
 * The conformance suite every HTTP adapter runs, against a real server on loopback.
 *
 * @example
 * httpAdapterSuite({ name: 'express', start: async (cache, routes) => { … } })
 */
export function httpAdapterSuite(harness: HttpAdapterHarness): void {
  throw new Error(`not yet: ${harness.name}`)
}
