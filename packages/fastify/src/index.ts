// @cache/fastify: translates fastify's request lifecycle into the engine's HttpExchange. All policy lives in
// @cache/core/http; this file only wires hooks.
import { pipeline, Readable, Transform } from 'node:stream'
import { type Cache, CacheError } from '@cache/core'
import {
  createHttpCache,
  forwardDetached,
  type HttpCache,
  type HttpCacheOptions,
  type HttpExchange,
  type HttpHeaders,
  type HttpResponse,
  isDetached,
  runDetached,
} from '@cache/core/http'
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Caches this route: `true` for the plugin's defaults, or options that override them. @default undefined (off) */
    cache?: boolean | HttpCacheOptions<FastifyRequest> | undefined
  }
}

/** The plugin's options: the cache, and the defaults of every route that opts in. */
export interface FastifyCacheOptions extends HttpCacheOptions<FastifyRequest> {
  /** The cache responses are stored in (`createCache(...)`). */
  cache: Cache
}

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
type RouteCache = true | HttpCacheOptions<FastifyRequest>
type OnSend = (reply: FastifyReply, payload: unknown, done: (err: Error | null, payload?: unknown) => void) => void

/** Requests whose response the engine is waiting for, with what to do when fastify is about to send it. */
const sending = new WeakMap<FastifyRequest, OnSend>()

const plugin: FastifyPluginCallback<FastifyCacheOptions> = (app, options, done) => {
  const { cache, ...defaults } = options ?? ({} as FastifyCacheOptions)
  if (typeof cache?.getOrSet !== 'function') {
    return done(new CacheError('E_INVALID_OPTION', 'fastifyCache: `cache` must be a Cache made by createCache()'))
  }
  const shared = createHttpCache<FastifyRequest>(cache, defaults)
  const engines = new WeakMap<object, HttpCache<FastifyRequest>>()
  const engineFor = (route: RouteCache): HttpCache<FastifyRequest> => {
    if (route === true) return shared
    let engine = engines.get(route)
    if (!engine) {
      engine = createHttpCache(cache, { ...defaults, ...route })
      engines.set(route, engine)
    }
    return engine
  }

  // Builds engines as routes are declared, so bad options fail at startup (routes declared before the plugin loaded
  // are built on their first request instead).
  app.addHook('onRoute', (route) => {
    const option: unknown = route.config?.cache
    if (option === undefined || option === false) return
    if (option !== true && (typeof option !== 'object' || option === null)) {
      throw new CacheError('E_INVALID_OPTION', `fastifyCache: config.cache of ${route.url} must be true or options`)
    }
    engineFor(option as RouteCache)
  })

  app.addHook('onRequest', (request, reply, next) => {
    const route = request.routeOptions.config?.cache
    if (!route) return next()
    // What hooks before this one set (a request id, Cache-Control: private): judged with the answer, never stored.
    const outer = { ...reply.getHeaders() }
    // A background refresh made by the engine itself: it wants the handler's answer, not the cache's.
    if (isDetached(request.raw)) return forwardDetached(reply.raw, next, outer as HttpHeaders)
    let started = false
    // The handler (and onSend) may run inside handle() itself, before it returns: hence a promise of our own.
    let handledNow = () => {}
    const handled = new Promise<void>((resolve) => {
      handledNow = resolve
    })
    let settle: (body: Uint8Array | undefined) => void = () => {}
    let answerStale: ((response: HttpResponse) => void) | undefined
    const exchange: HttpExchange<FastifyRequest> = {
      // The key is made of what the app reads: `request.protocol` and `request.host` honour `trustProxy`
      // (X-Forwarded-Proto, X-Forwarded-Host). The URL is read from the raw request, not `request.originalUrl`,
      // which fastify computes once and keeps: read now, it would keep the parameters rewriteUrl removes.
      request: {
        method: request.method,
        protocol: request.protocol,
        url: request.raw.url ?? '/',
        headers: request.headers,
        host: request.host,
      },
      source: request,
      // fastify parsed the query before any hook: it is parsed again, by the router's own querystringParser (what
      // findRoute hands back), from the URL without the ignored parameters. Should that fail, this throws, and the
      // engine keys every parameter instead.
      rewriteUrl: (to) => {
        const found = app.findRoute({ method: request.method, url: to }) as { searchParams?: unknown } | null
        const query = found?.searchParams
        if (typeof query !== 'object' || query === null) throw new Error(`no route to parse ${to} with`)
        request.raw.url = to
        request.query = query
      },
      detached: (copy) => runDetached(app.server, copy),
      // A URL the engine knows is uncacheable: on to the handler with the engine's headers, nothing watched.
      pass: (headers) => {
        started = true
        for (const [name, value] of headers) reply.header(name, value)
        next()
      },
      forward: (head) =>
        new Promise((resolve) => {
          started = true
          // Settled by onSend once the body is known; a response that closes first (client gone) gives nothing.
          settle = (body) => {
            settle = () => {}
            resolve(body)
          }
          reply.raw.once('close', () => {
            sending.delete(request) // the handler may still answer later: nobody to tell about it
            settle(undefined)
          })
          sending.set(request, (reply, payload, done) => {
            const whole = payload == null || typeof payload === 'string' || payload instanceof Uint8Array
            const headers = reply.getHeaders()
            // fastify sets content-length after onSend; the engine needs it now to judge the size.
            if (whole && headers['content-length'] === undefined) headers['content-length'] = byteLength(payload)
            const decision = head(reply.statusCode, headers, outer as HttpHeaders)
            // onSend hooks added after this plugin's (@fastify/cookie and @fastify/session write Set-Cookie there)
            // run after this decision: the copy is judged again on the headers as they go out, when fastify writes
            // them (not when the client has read it all: a slow reader must not hold up the requests waiting).
            let cap = 0
            // Synchronously: Node may emit 'close' before a promise callback would run.
            const atHeaders = (then: () => void): void => {
              const raw = reply.raw
              const writeHead = raw.writeHead
              raw.writeHead = function (this: typeof raw, ...args: unknown[]) {
                raw.writeHead = writeHead
                // Judged after the inner writeHead: a wrapper installed before this one (on-headers, through
                // middie) adds its headers there.
                const out = (writeHead as (...a: unknown[]) => typeof raw).apply(this, args)
                const final = { ...reply.getHeaders(), ...raw.getHeaders() }
                const again = head(raw.statusCode, final, outer as HttpHeaders)
                cap = again.action === 'send' ? again.capture : 0
                then()
                return out
              } as typeof raw.writeHead
            }
            const judgedAgain = (body: Uint8Array | undefined): Uint8Array | undefined =>
              body !== undefined && cap > 0 && body.byteLength <= cap ? body : undefined
            if (decision.action === 'discard') {
              settle(undefined)
              new Promise<HttpResponse | undefined>((answer) => {
                answerStale = answer
                const none = () => answer(undefined)
                handled.then(none, none)
              }).then((stale) => {
                if (!stale) return done(null, payload)
                for (const name of Object.keys(reply.getHeaders())) {
                  reply.removeHeader(name)
                  reply.raw.removeHeader(name)
                }
                setHeaders(reply.code(stale.status), stale.headers)
                done(null, payloadOf(stale, request.method))
              })
              return
            }
            for (const [name, value] of decision.headers) reply.header(name, value)
            if (decision.capture <= 0) settle(undefined)
            else if (whole) {
              if (byteLength(payload) > decision.capture) settle(undefined)
              else {
                const copy = typeof payload === 'string' ? Buffer.from(payload) : (payload ?? EMPTY)
                atHeaders(() => settle(judgedAgain(copy)))
              }
            } else if (typeof (payload as Readable).pipe === 'function') {
              const tee = collector(decision.capture)
              atHeaders(() => {})
              // 'finish' (all of it written) comes before 'close'; a response cut short has only 'close'.
              reply.raw.once('finish', () => settle(judgedAgain(tee.body())))
              // pipeline: an error of the handler's stream reaches fastify through the tee, and a client that goes
              // away (fastify destroys the tee) ends the handler's stream too.
              pipeline(payload as Readable, tee, () => {})
              return done(null, tee)
            } else settle(undefined) // a web stream or Response: passed through, not collected
            if (!UNSAFE.has(request.method)) return done(null, payload)
            // The engine invalidates once the handler succeeded: finish that first, so the client's next GET is fresh.
            const send = () => done(null, payload)
            handled.then(send, send)
          })
          next()
        }),
      send: (response) => {
        if (answerStale) return answerStale(response)
        started = true
        setHeaders(reply.code(response.status), response.headers)
        reply.send(payloadOf(response, request.method))
      },
    }
    // The engine never rejects and always forwards or sends; if it ever does neither, the handler still answers.
    engineFor(route)
      .handle(exchange)
      .then(
        () => started || next(),
        (err: Error) => started || next(err),
      )
      .finally(handledNow)
  })

  app.addHook('onSend', (request, reply, payload, done) => {
    const onSend = sending.get(request)
    if (!onSend) return done(null, payload)
    sending.delete(request)
    onSend(reply, payload, done)
  })
  done()
}

const EMPTY = new Uint8Array(0)

function byteLength(payload: string | Uint8Array | null | undefined): number {
  return payload == null ? 0 : typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength
}

function setHeaders(reply: FastifyReply, headers: HttpHeaders): void {
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) reply.header(name, value)
}

/**
 * The engine's body as fastify should send it. fastify sets content-length from a Buffer (to 0 on HEAD routes) and
 * adds a content-type to a Buffer without one; a stream leaves both as the engine set them.
 */
function payloadOf(response: HttpResponse, method: string): Buffer | Readable {
  const body = Buffer.from(response.body.buffer, response.body.byteOffset, response.body.byteLength)
  if (method !== 'HEAD' && body.byteLength > 0 && response.headers['content-type'] !== undefined) return body
  return Readable.from(body.byteLength > 0 ? [body] : [])
}

/** A pass-through that keeps a copy of what flows through it, up to `cap` bytes (nothing at all beyond). */
function collector(cap: number): Transform & { body(): Uint8Array | undefined } {
  const chunks: Buffer[] = []
  let size = 0
  let ended = false
  const tee = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.byteLength
      if (size <= cap) chunks.push(chunk)
      callback(null, chunk)
    },
    flush(callback) {
      ended = true
      callback()
    },
  })
  return Object.assign(tee, { body: () => (ended && size <= cap ? Buffer.concat(chunks) : undefined) })
}

/**
 * The fastify plugin: register it once with the cache (and route defaults); each route opts in with
 * `config: { cache: true }` (the defaults) or `config: { cache: { ...options } }` (merged over them). GET and HEAD
 * are served from the cache, unsafe methods invalidate. Requests with `Authorization` or `Cookie` bypass the cache
 * unless the route sets `scope: 'public'` or a `key`; `Set-Cookie` is never stored.
 *
 * Defaults (see `HttpCacheOptions`): no ttl (only responses that state their freshness are stored, for at most a
 * minute), no stale serving, statuses of RFC 9110, maxBodySize 1 MiB, maxVariants 100, ignoreQuery ['utm_*',
 * 'fbclid', 'gclid'] (also removed from `request.url` and `request.query`), `Cache-Status: cache; …`.
 *
 * @example
 * import fastifyCache from '@cache/fastify'
 * await app.register(fastifyCache, { cache: createCache(), ttl: '30s' })
 * app.get('/todos', { config: { cache: { staleWhileRevalidate: '1m', tags: () => ['todos'] } } }, listTodos)
 */
export const fastifyCache = fp(plugin, { fastify: '5.x', name: '@cache/fastify' })
export default fastifyCache
