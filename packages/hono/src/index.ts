/**
 * `@cache/hono`: hono middleware over `@cache/core/http`, the one HTTP cache policy of `@cache/*`. This file only
 * translates hono's `Context` into an `HttpExchange`; every caching decision is the engine's.
 */

import type { ServerResponse } from 'node:http'
import type { Cache } from '@cache/core'
import { CacheError } from '@cache/core'
import {
  createHttpCache,
  forwardDetached,
  type HttpCacheOptions,
  type HttpExchange,
  type HttpRequest,
  isDetached,
  runDetached,
} from '@cache/core/http'
import type { Context, MiddlewareHandler } from 'hono'
import { collect, NO_BODY, type Ready, readReady } from './body.js'

/** The route options of `cacheResponse`; callbacks (`key`, `tags`, `invalidateTags`) receive hono's `Context`. */
export type CacheResponseOptions = HttpCacheOptions<Context>

/**
 * Caches the responses of the routes it guards, with `@cache/core`'s HTTP policy: fresh hits, `Cache-Status`, `Age`,
 * ETag/304, HEAD, Vary, stale-while-revalidate / stale-if-error, coalescing, tags. Requests with `Authorization` or
 * `Cookie` bypass it unless `scope: 'public'` or a `key` says whose the response is; `Set-Cookie` is never stored.
 * Works on every runtime hono runs on; background revalidation needs Node (`@hono/node-server`), elsewhere a stale
 * entry is revalidated while the client waits.
 *
 * Defaults (see `HttpCacheOptions`): `ttl` undefined (only responses that state their freshness are stored, for at
 * most a minute), `staleWhileRevalidate` 0, `staleIfError` 0, `maxBodySize` 1 MiB, `maxVariants` 100,
 * `ignoreQuery` ['utm_*', 'fbclid', 'gclid'] (also removed from the URL the handler sees), `cacheStatus` 'cache',
 * `keyPrefix` 'http:'.
 *
 * @example
 * const cache = createCache()
 * app.get('/todos', cacheResponse(cache, { ttl: '30s', tags: () => ['todos'] }), (c) => c.json(todos))
 * app.post('/todos', cacheResponse(cache, { invalidateTags: () => ['todos'] }), (c) => c.json(add(c)))
 */
export function cacheResponse(cache: Cache, options: CacheResponseOptions = {}): MiddlewareHandler {
  if (typeof cache !== 'object' || cache === null || typeof cache.getOrSet !== 'function') {
    throw new CacheError('E_INVALID_OPTION', 'cacheResponse(cache, options): cache must be a Cache from createCache()')
  }
  const http = createHttpCache<Context>(cache, options)
  return async function cacheResponse(c, next) {
    const incoming = (c.env as { incoming?: { socket?: { server?: unknown } } } | undefined)?.incoming
    // A copy made by runDetached to refresh a stale entry: it must reach the handler and come back untouched.
    if (isDetached(incoming)) {
      // What earlier middleware set counts in whether the refresh is stored, but is not stored: runDetached is told.
      const outgoing = (c.env as { outgoing?: { getHeaders?: unknown } }).outgoing
      if (typeof outgoing?.getHeaders === 'function') {
        forwardDetached(outgoing as ServerResponse, () => {}, headersOf(c.res.headers))
      }
      await next()
      return
    }
    // The middleware returns once the client's response is in c.res; storing the body goes on behind.
    let answered!: () => void
    const ready = new Promise<void>((resolve) => {
      answered = resolve
    })
    let failure: { error: unknown } | undefined
    const passing: { run?: Promise<void> } = {}
    http.handle(exchange(c, next, answered, serverOf(incoming), passing)).then(answered, (error: unknown) => {
      failure = { error }
      answered()
    })
    await ready
    if (failure) throw failure.error
    if (passing.run) await passing.run
  }
}

function exchange(
  c: Context,
  next: () => Promise<void>,
  answered: () => void,
  server: unknown,
  passing: { run?: Promise<void> },
): HttpExchange<Context> {
  const request = requestOf(c)
  // What middleware before this one set on c.res before next() (CORS, a session cookie): it belongs to this request,
  // not to the handler's answer, so it is never stored and it is put on whatever this request is answered with.
  let outer: Headers | undefined
  return {
    request,
    source: c,
    async forward(head) {
      outer = new Headers(c.res.headers)
      if (outer.keys().next().done === true) {
        // Nothing set before next(): forget the empty c.res that reading it just made, or hono would rebuild the
        // handler's response over it (a full Fetch Response, stream and all) when the handler returns.
        c.res = undefined
        c.finalized = false
      }
      await next()
      const res = c.res
      // Taken before the body is read: reading a lightweight @hono/node-server Response may rebuild its headers.
      const { headers: resHeaders, status } = res
      // The engine judges the final headers, those earlier middleware set included, and stores none of those that
      // still carry what earlier middleware set before next() (`before`).
      const seen = headersOf(resHeaders)
      const before = headersOf(outer)
      let decision = head(status, seen, before)
      // A body made from a string or bytes is ready at once. When the engine wants a copy, read it and, if it is
      // over the cap, let the engine decide again with its length (nothing has been sent yet).
      let read: Ready | undefined
      if (
        decision.action === 'send' &&
        decision.capture > 0 &&
        seen['content-length'] === undefined &&
        request.method === 'GET'
      ) {
        read = await readReady(res.body)
        if (read.whole && !NO_BODY.has(status)) {
          seen['content-length'] = String(read.whole.byteLength)
          // Decided again with the length: over the cap it is not stored, and within it Cache-Status can say stored.
          decision = head(status, seen, before)
        }
      }
      // undefined: the handler's body, untouched; else what replaces it (null once it was read whole).
      let body = read ? (read.rest ?? null) : undefined
      if (decision.action === 'discard') {
        await (body === undefined ? res.body : body)?.cancel().catch(() => {})
        // Back to what earlier middleware had set: nothing of the failed answer (onError's headers) may reach the
        // stale copy that replaces it.
        replace(c, new Response(null, { headers: outer }))
        return undefined
      }
      const { capture } = decision
      const whole = read?.whole
      let collected = Promise.resolve(capture > 0 && whole && whole.byteLength <= capture ? whole : undefined)
      const stream = body === undefined && capture > 0 ? res.body : body
      if (capture > 0 && stream) {
        const [client, mine] = stream.tee()
        body = client
        collected = collect(mine, capture)
      }
      // An unsafe request's answer waits for its invalidation: the client's next request must not find the old copy.
      if (decision.hold !== undefined) await decision.hold
      // Nothing to store and nothing read: the handler's answer goes out as it is, its body untouched (reading
      // `res.body` of a lightweight @hono/node-server Response would rebuild it, and the headers with it).
      if (capture <= 0 && body === undefined && trySet(resHeaders, decision.headers)) {
        answered()
        return collected
      }
      let clientBody: ReadableStream<Uint8Array> | Uint8Array | null = whole?.byteLength
        ? whole
        : body === undefined
          ? res.body
          : body
      // Middleware before this one runs on after next() returns here, and may still change the answer's headers
      // (c.header('Cache-Control', 'private') for a signed-in user): a copy is stored only once the answer has gone
      // out, judged again on its headers as they finally were.
      const outgoing = (c.env as { outgoing?: unknown } | undefined)?.outgoing
      let sent: Promise<boolean> | undefined
      if (capture > 0) {
        // Off Node, the body's first read also tells that the app returned the answer.
        let firstRead: (() => void) | undefined
        const read = outgoing === undefined ? new Promise<void>((resolve) => (firstRead = resolve)) : undefined
        if (firstRead !== undefined && clientBody !== null) clientBody = onFirstRead(clientBody, firstRead)
        sent = sentOf(outgoing, read)
      }
      const out = new Headers(resHeaders)
      for (const [name, value] of decision.headers) out.set(name, value)
      if (typeof seen['content-length'] === 'string') out.set('content-length', seen['content-length'])
      replace(c, new Response(clientBody, { status, statusText: res.statusText, headers: out }))
      answered()
      if (sent === undefined) return collected
      return Promise.all([collected, sent]).then(([copy, complete]) => {
        if (!complete || copy === undefined) return undefined
        const final = headersOf(c.res.headers)
        const again = head(c.res.status, final, before)
        return again.action === 'send' && again.capture > 0 && copy.byteLength <= again.capture ? copy : undefined
      })
    },
    send(response) {
      const empty = response.body.byteLength === 0 || NO_BODY.has(response.status)
      // c.body() puts what earlier middleware set (c.header(), a CORS header on c.res) under the engine's headers,
      // as hono does for any handler's answer.
      const headers = response.headers as Record<string, string | string[]>
      const status = response.status as 200
      replace(
        c,
        empty ? c.body(null, status, headers) : c.body(response.body as Uint8Array<ArrayBuffer>, status, headers),
      )
      answered()
    },
    // The handler reads the URL and query from c.req.raw: it gets a copy with the ignored parameters removed.
    rewriteUrl(to) {
      const raw = c.req.raw
      const url = new URL(raw.url)
      const at = to.indexOf('?')
      url.search = at < 0 ? '' : to.slice(at)
      c.req.raw = new Request(url, raw)
      const node = (c.env as { incoming?: { url?: unknown } } | undefined)?.incoming
      if (node !== undefined && typeof node.url === 'string') node.url = to
    },
    // A URL the engine knows is uncacheable: on to the handler with the engine's headers, nothing watched.
    pass(headers) {
      // Set on the handler's answer once it exists: a plain Response the handler returns drops c.header()'s.
      passing.run = next().then(() => {
        const res = c.res
        if (trySet(res.headers, headers)) return
        const out = new Headers(res.headers)
        for (const [name, value] of headers) out.set(name, value)
        replace(c, new Response(res.body, { status: res.status, statusText: res.statusText, headers: out }))
      })
      passing.run.then(answered, answered)
    },
    detached: server === undefined ? undefined : (req: HttpRequest) => runDetached(server as never, req),
  }
}

/**
 * The request as the engine sees it. On @hono/node-server the Node request's own parsed headers and URL are used:
 * reading `c.req.raw.headers` there would build a whole Fetch Request just to look at a few headers.
 */
function requestOf(c: Context): HttpRequest {
  const node = (c.env as { incoming?: NodeIncoming } | undefined)?.incoming
  if (node !== undefined && typeof node.url === 'string' && typeof node.headers === 'object' && node.headers !== null) {
    const headers = node.headers
    return {
      method: c.req.method,
      protocol: node.socket?.encrypted === true ? 'https' : 'http',
      url: node.url,
      headers: headers.host === undefined ? { ...headers, host: new URL(c.req.url).host } : headers,
    }
  }
  const raw = c.req.raw
  const url = new URL(raw.url)
  const headers = headersOf(raw.headers)
  if (headers.host === undefined) headers.host = url.host
  return { method: raw.method, protocol: url.protocol.slice(0, -1), url: url.pathname + url.search, headers }
}

interface NodeIncoming {
  url?: unknown
  headers?: Record<string, string | string[] | undefined>
  socket?: { encrypted?: boolean }
}

/** The node `http.Server` that received the request (set by `@hono/node-server` as `c.env.incoming`), if any. */
function serverOf(incoming: { socket?: { server?: unknown } } | undefined): unknown {
  const server = incoming?.socket?.server as { listeners?: unknown; emit?: unknown } | undefined
  return typeof server?.listeners === 'function' && typeof server.emit === 'function' ? server : undefined
}

/** hono's `c.res` setter copies the old response's headers over the new one's: clearing it first keeps ours exact. */
function replace(c: Context, res: Response): void {
  c.res = undefined
  c.res = res
}

/** Sets the engine's headers in place; false when they are immutable (a fetched or redirect Response). */
function trySet(headers: Headers, extra: readonly (readonly [string, string])[]): boolean {
  try {
    for (const [name, value] of extra) headers.set(name, value)
    return true
  } catch {
    return false
  }
}

function headersOf(headers: Headers): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of headers) if (name !== 'set-cookie') out[name] = value
  const cookies = headers.getSetCookie()
  if (cookies.length > 0) out['set-cookie'] = cookies
  return out
}

/**
 * When the answer has left the middleware chain (what middleware before the cache does after `next()` is done), so
 * that its final headers can be judged: on @hono/node-server, when the server writes the response's head (it does
 * so once the app returned it), or false when the response closes first. Elsewhere, where nothing tells when the
 * response left, once the tasks queued now have run or the body is first read, whichever comes first (middleware
 * that awaits more work after `next()` is not waited for there). Never the client's pace: a slow reader must not hold up the requests that wait for this answer, and
 * never the first read of the body, which middleware such as etag() or compress() may do before the chain is done.
 */
/** `body` as a stream that calls `then` when it is first read (and reads its source only then). */
function onFirstRead(body: ReadableStream<Uint8Array> | Uint8Array, then: () => void): ReadableStream<Uint8Array> {
  const bytes = body instanceof Uint8Array ? body : undefined
  const reader = bytes === undefined ? (body as ReadableStream<Uint8Array>).getReader() : undefined
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        then()
        if (bytes !== undefined) {
          controller.enqueue(bytes)
          controller.close()
          return
        }
        try {
          const next = await reader!.read()
          if (next.done) controller.close()
          else controller.enqueue(next.value)
        } catch (error) {
          controller.error(error)
        }
      },
      cancel(reason) {
        then()
        return reader?.cancel(reason)
      },
    },
    // Pulled only when read: by default a stream reads ahead at once, before anyone asked.
    { highWaterMark: 0 },
  )
}

function sentOf(outgoing: unknown, read?: Promise<void>): Promise<boolean> {
  return new Promise<boolean>((settle) => {
    const node = outgoing as
      | { once?: (event: string, fn: () => void) => void; writeHead?: (...args: unknown[]) => unknown }
      | undefined
    const writeHead = node?.writeHead
    if (node === undefined || typeof node.once !== 'function' || typeof writeHead !== 'function') {
      setTimeout(() => settle(true), 0)
      if (read !== undefined) void read.then(() => settle(true))
      return
    }
    node.once('close', () => settle(false))
    node.writeHead = function (this: unknown, ...args: unknown[]) {
      node.writeHead = writeHead
      const out = writeHead.apply(this, args)
      settle(true)
      return out
    }
  })
}

export type { HttpCacheOptions } from '@cache/core/http'
