/**
 * `@cache/core/http`: the one HTTP cache policy every adapter uses (what is storable, the key, Vary, freshness, Age,
 * ETag/304, HEAD, stale-while-revalidate / stale-if-error, coalescing, `Cache-Status`, tags). Adapters only
 * translate their framework's request and response into an `HttpExchange`.
 */
export { createHttpCache, type HttpCache } from './engine.js'
export { forwardDetached, isDetached, nodeExchange, runDetached } from './node.js'
export type {
  ForwardDecision,
  HeaderValue,
  HttpCacheOptions,
  HttpExchange,
  HttpHeaders,
  HttpRequest,
  HttpResponse,
} from './types.js'
