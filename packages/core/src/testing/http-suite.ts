import { randomBytes } from 'node:crypto'
import { gunzipSync, gzipSync } from 'node:zlib'
import { afterEach, describe, expect, it } from 'vitest'
import { type Cache, createCache } from '../cache.js'
import type { Duration } from '../duration.js'
import type { LockOptions } from '../types.js'
import {
  type CacheStatusParams,
  eventually,
  fetchReply,
  gate,
  parseCacheStatus,
  type Reply,
  type RequestInit,
  rawRequest,
  sleep,
} from './http-client.js'

/** A request as a suite route's callbacks see it, whatever the framework. Header names in lower case. */
export interface SuiteRequest {
  readonly method: string
  /** Path and query as the app reads them (express `req.originalUrl`, fastify `request.url`, hono's URL). */
  readonly url: string
  readonly headers: Readonly<Record<string, string | undefined>>
  /**
   * The host name the framework gives the app (express `req.hostname`, fastify `request.hostname`, hono and
   * node:http the `Host` header's): behind a trusted proxy, `X-Forwarded-Host`'s.
   */
  readonly host?: string | undefined
  /** The query as the framework parsed it for the app (express `req.query`, fastify `request.query`, …). */
  readonly query?: Readonly<Record<string, unknown>> | undefined
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
  maxVariants?: number
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
  /**
   * Headers that middleware running BEFORE the cache sets on the response (an auth middleware's
   * `Cache-Control: private, no-store`, an i18n middleware's `Vary: Accept-Language`): the harness installs such a
   * middleware in front of the cache middleware of this route.
   */
  readonly before?: Readonly<Record<string, string>>
  /**
   * Headers that middleware running before the cache adds LATE, once the handler's answer is final and the cache has
   * decided: express-session adds its `Set-Cookie` in a writeHead wrapper (on-headers), `@fastify/cookie` in an
   * `onSend` hook registered after the cache's, hono middleware after `await next()`.
   */
  readonly late?: Readonly<Record<string, string>>
}

/** How the harness sets its framework up for a test. */
export interface SuiteSetup {
  /** The app trusts the proxy in front of it: express `'trust proxy'`, fastify `trustProxy` (X-Forwarded-*). */
  readonly trustProxy?: boolean
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
  /**
   * The framework can trust a proxy (`SuiteSetup.trustProxy`) and then gives the app `X-Forwarded-Host` as its host
   * (express, fastify). Default false.
   */
  trustProxy: boolean
}

export interface HttpAdapterHarness {
  /** Shown in the suite's describe(). */
  readonly name: string
  /**
   * Starts a server on 127.0.0.1 (port 0) that serves `routes`, each behind the adapter with its `cache` options,
   * and behind a middleware that sets a route's `before` headers (when it has some) in front of the cache.
   */
  start(cache: Cache, routes: readonly SuiteRoute[], setup?: SuiteSetup): Promise<SuiteServer>
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

/** The suite's groups; each is a `describe` block of the same name. */
export type HttpSuiteGroup =
  | 'basics'
  | 'head'
  | 'conditional'
  | 'cache-status'
  | 'vary'
  | 'storable'
  | 'unsafe'
  | 'tags'
  | 'coalescing'
  | 'stale'
  | 'body'
  | 'streaming'
  | 'leaks'
  | 'keys'
  | 'safety'

export interface HttpAdapterSuiteOptions {
  /** Makes the cache for each test; default `createCache()` (memory store). The suite closes it after the test. */
  createCache?: () => Cache | Promise<Cache>
  /** Run only these groups (names below); default all that the capabilities allow. */
  groups?: readonly HttpSuiteGroup[]
}

const ALL_GROUPS: readonly HttpSuiteGroup[] = [
  'basics',
  'head',
  'conditional',
  'cache-status',
  'vary',
  'storable',
  'unsafe',
  'tags',
  'coalescing',
  'stale',
  'body',
  'streaming',
  'leaks',
  'keys',
  'safety',
]
/** The groups a data-level adapter (`capabilities.http` false) runs, through `harness.call` only. */
const DATA_GROUPS: ReadonlySet<HttpSuiteGroup> = new Set(['basics', 'coalescing', 'stale', 'tags', 'leaks', 'keys'])

/** RFC 9110 §15.1, less 206 (tested apart: it needs Range). */
const DEFAULT_STATUSES = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]
const OTHER_STATUSES = [201, 202, 302, 303, 307, 400, 401, 403, 409, 429, 500, 502, 503]

// Short TTLs keep the waits short. A `ttl=` of a stale entry is only sure to be negative once it is a second stale.
const SHORT_TTL = '200ms'
const PAST_SHORT_TTL = 400
const A_SECOND_STALE = 1300

/** What a test talks to: one server of the harness over one fresh cache. */
interface App {
  readonly server: SuiteServer
  readonly cache: Cache
  /** `fetch` (no redirects followed): the HTTP groups' client. */
  get(path: string, init?: RequestInit): Promise<Reply>
  /** `node:http` on a fresh connection: exact headers (Host) and bytes as sent (no decompression). */
  raw(path: string, init?: RequestInit): Promise<Reply>
  /** `harness.call` (default `fetch`): the data-level groups' client. */
  call(path: string, init?: RequestInit): Promise<{ status: number; body: string }>
}

/** A handler that counts its calls. */
function counted(reply: (n: number, req: SuiteRequest) => SuiteReply | Promise<SuiteReply>) {
  const counter = {
    calls: 0,
    handler: (req: SuiteRequest) => reply(++counter.calls, req),
  }
  return counter
}

/** The parameters of the `Cache-Status` member `name`; fails the test when there is none. */
function cacheStatus(reply: Reply, name = 'cache'): CacheStatusParams {
  const value = reply.headers.get('cache-status')
  const params = parseCacheStatus(value, name)
  expect(params, `a Cache-Status member '${name}' (got ${String(value)})`).toBeDefined()
  return params as CacheStatusParams
}

/** An integer parameter (`ttl`, `fwd-status`). */
function intParam(params: CacheStatusParams, key: string): number {
  const value = params[key]
  expect(value, `Cache-Status parameter ${key} (got ${JSON.stringify(params)})`).toMatch(/^-?\d+$/)
  return Number(value)
}

/** The `Age` header of a hit, as a number of seconds. */
function age(reply: Reply): number {
  const value = reply.headers.get('age')
  expect(value, 'an Age header').toMatch(/^\d+$/)
  return Number(value)
}

/** A response served from the cache: `hit`, an integer `ttl` (returned), and `Age`. */
function expectHit(reply: Reply, name = 'cache'): number {
  const params = cacheStatus(reply, name)
  expect(params.hit, `a hit (got ${JSON.stringify(params)})`).toBe(true)
  expect(params.fwd).toBeUndefined()
  age(reply)
  return intParam(params, 'ttl')
}

/** A miss that was stored: `fwd=miss; stored; ttl=` (returned), no `Age`. */
function expectStored(reply: Reply): number {
  const params = cacheStatus(reply)
  expect(params.fwd, `a miss (got ${JSON.stringify(params)})`).toBe('miss')
  expect(params.stored, `stored (got ${JSON.stringify(params)})`).toBe(true)
  expect(params.hit).toBeUndefined()
  expect(reply.headers.get('age')).toBeNull()
  return intParam(params, 'ttl')
}

/** A miss that was not stored, for the reason `detail`; no `Age`. */
function expectNotStored(reply: Reply, detail: string): void {
  const params = cacheStatus(reply)
  expect(params, `fwd=miss; detail=${detail}`).toMatchObject({ fwd: 'miss', detail })
  expect(params.stored).toBeUndefined()
  expect(params.hit).toBeUndefined()
  expect(reply.headers.get('age')).toBeNull()
}

/** A request the cache let through: `fwd=bypass; detail=`, no `Age`. */
function expectBypass(reply: Reply, detail: string): void {
  const params = cacheStatus(reply)
  expect(params, `fwd=bypass; detail=${detail}`).toMatchObject({ fwd: 'bypass', detail })
  expect(params.stored).toBeUndefined()
  expect(params.hit).toBeUndefined()
  expect(reply.headers.get('age')).toBeNull()
}

/** Not served from the cache (whatever the reason). */
function expectNotHit(reply: Reply): void {
  expect(cacheStatus(reply).hit, `not a hit (got ${reply.headers.get('cache-status')})`).toBeUndefined()
}

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b))

/** Resolves with `promise`, or rejects after `ms` naming `what` (a clear failure instead of a test timeout). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function defaultCall(server: SuiteServer, path: string, init: RequestInit = {}) {
  const res = await fetch(server.url + path, { method: init.method ?? 'GET', headers: init.headers ?? {} })
  return { status: res.status, headers: res.headers, body: await res.text() }
}

/**
 * Registers the conformance suite every HTTP adapter must pass, as a vitest `describe` block named after the
 * harness. Each test starts the harness's server on a fresh cache with the routes it needs, talks to it over
 * loopback, and checks what a client sees (status, headers, bytes, `Cache-Status`) and how often the handler ran.
 *
 * The HTTP groups talk to `server.url` with `fetch` (and `node:http` where `fetch` cannot: the Host header, bytes
 * as sent). With `capabilities.http` false (tRPC) only the data-level groups run — basics, coalescing, stale, tags,
 * leaks (per-user key), keys — and only through `harness.call`, reading its status (200 on success, >= 500 on
 * failure) and body (the handler's body string).
 *
 * @example
 * // express.test.ts
 * import { httpAdapterSuite } from '@cache/core/testing'
 *
 * httpAdapterSuite({
 *   name: 'express',
 *   async start(cache, routes) {
 *     const app = express()
 *     for (const route of routes) app.get(route.path, cacheResponse(cache, adapt(route.cache)), toExpress(route))
 *     const server = app.listen(0, '127.0.0.1')
 *     await once(server, 'listening')
 *     return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => close(server) }
 *   },
 * })
 */
export function httpAdapterSuite(harness: HttpAdapterHarness, options: HttpAdapterSuiteOptions = {}): void {
  const caps: HttpAdapterCapabilities = {
    http: true,
    streaming: true,
    backgroundRevalidation: true,
    trustProxy: false,
    ...harness.capabilities,
  }
  const wanted = new Set<HttpSuiteGroup>(options.groups ?? ALL_GROUPS)
  const makeCache = options.createCache ?? (() => createCache())
  const servers: SuiteServer[] = []
  const caches: Cache[] = []

  async function app(...routes: SuiteRoute[]): Promise<App> {
    return appWith({}, ...routes)
  }

  async function appWith(setup: SuiteSetup, ...routes: SuiteRoute[]): Promise<App> {
    const cache = await makeCache()
    caches.push(cache)
    const server = await harness.start(cache, routes, setup)
    servers.push(server)
    return {
      server,
      cache,
      get: (path, init) => fetchReply(server.url + path, init),
      raw: (path, init) => rawRequest(server.url + path, init),
      call: (path, init) => (harness.call ? harness.call(server, path, init) : defaultCall(server, path, init)),
    }
  }

  /** A describe block for `name`, when it was asked for and the capabilities allow it. */
  const group = (name: HttpSuiteGroup, body: () => void): void => {
    if (!wanted.has(name)) return
    if (!caps.http && !DATA_GROUPS.has(name)) return
    if (name === 'streaming' && !caps.streaming) return
    describe(name, body)
  }
  /** Registers a test only where it applies: a test an adapter cannot pass by design is left out, not skipped. */
  const itWhen = (applies: boolean) => (applies ? it : (_name: string, _test: () => Promise<void>, _ms?: number) => {})
  /** A test of the HTTP wire (headers, statuses): not for data-level adapters. */
  const httpIt = itWhen(caps.http)
  const backgroundIt = itWhen(caps.backgroundRevalidation)
  const foregroundIt = itWhen(!caps.backgroundRevalidation)
  const httpBackgroundIt = itWhen(caps.http && caps.backgroundRevalidation)
  const trustProxyIt = itWhen(caps.http && caps.trustProxy)

  describe(`httpAdapterSuite: ${harness.name}`, () => {
    afterEach(async () => {
      await Promise.allSettled(servers.splice(0).map((server) => server.close()))
      await Promise.allSettled(caches.splice(0).map((cache) => cache.close()))
    })

    group('basics', () => {
      it('runs the handler once for repeated requests and answers each with its body', async () => {
        const route = counted((n) => ({ body: `hello ${n}` }))
        const a = await app({ path: '/hello', cache: { ttl: '1m' }, handler: route.handler })
        for (let i = 0; i < 3; i++) expect(await a.call('/hello')).toMatchObject({ status: 200, body: 'hello 1' })
        expect(route.calls).toBe(1)
      })

      it('keeps two routes apart', async () => {
        const one = counted(() => ({ body: 'one' }))
        const two = counted(() => ({ body: 'two' }))
        const a = await app(
          { path: '/one', cache: { ttl: '1m' }, handler: one.handler },
          { path: '/two', cache: { ttl: '1m' }, handler: two.handler },
        )
        for (let i = 0; i < 2; i++) {
          expect((await a.call('/one')).body).toBe('one')
          expect((await a.call('/two')).body).toBe('two')
        }
        expect([one.calls, two.calls]).toEqual([1, 1])
      })

      it('runs the handler again once the ttl has passed', async () => {
        const route = counted((n) => ({ body: `v${n}` }))
        const a = await app({ path: '/short', cache: { ttl: SHORT_TTL }, handler: route.handler })
        expect((await a.call('/short')).body).toBe('v1')
        await sleep(PAST_SHORT_TTL)
        expect((await a.call('/short')).body).toBe('v2')
        expect((await a.call('/short')).body).toBe('v2')
        expect(route.calls).toBe(2)
      })

      it('passes a failing handler through and stores nothing of it', async () => {
        const route = counted((n) => (n === 1 ? { throws: new Error('boom') } : { body: 'ok' }))
        const a = await app({ path: '/flaky', cache: { ttl: '1m' }, handler: route.handler })
        expect((await a.call('/flaky')).status).toBeGreaterThanOrEqual(500)
        expect(await a.call('/flaky')).toMatchObject({ status: 200, body: 'ok' })
        expect(await a.call('/flaky')).toMatchObject({ status: 200, body: 'ok' })
        expect(route.calls).toBe(2)
      })

      httpIt('replays status and headers on a hit, with Age, and says miss then hit in Cache-Status', async () => {
        const route = counted(() => ({
          status: 200,
          headers: { 'content-type': 'text/html; charset=utf-8', 'x-custom': 'kept', 'content-language': 'en' },
          body: '<p>hi</p>',
        }))
        const a = await app({ path: '/page', cache: { ttl: '1m' }, handler: route.handler })
        const miss = await a.get('/page')
        const hit = await a.get('/page')
        expectStored(miss)
        expectHit(hit)
        for (const reply of [miss, hit]) {
          expect(reply.status).toBe(200)
          expect(reply.text).toBe('<p>hi</p>')
          expect(reply.headers.get('content-type')).toBe('text/html; charset=utf-8')
          expect(reply.headers.get('x-custom')).toBe('kept')
          expect(reply.headers.get('content-language')).toBe('en')
        }
        expect(hit.headers.get('content-length')).toBe(String(Buffer.byteLength('<p>hi</p>')))
        expect(route.calls).toBe(1)
      })

      httpIt('never stores hop-by-hop headers', async () => {
        const route = counted(() => ({
          headers: { 'proxy-authenticate': 'Basic realm="x"', 'x-end': 'yes' },
          body: 'b',
        }))
        const a = await app({ path: '/hop', cache: { ttl: '1m' }, handler: route.handler })
        await a.get('/hop')
        const hit = await a.get('/hop')
        expectHit(hit)
        expect(hit.headers.get('x-end')).toBe('yes')
        expect(hit.headers.get('proxy-authenticate')).toBeNull()
      })

      httpIt('serves only GET and HEAD from the cache: POST is passed to the handler each time', async () => {
        const route = counted((n, req) => ({ body: `${req.method} ${n}` }))
        const a = await app({ path: '/form', methods: ['GET', 'POST'], cache: { ttl: '1m' }, handler: route.handler })
        expect((await a.get('/form', { method: 'POST' })).text).toBe('POST 1')
        expect((await a.get('/form', { method: 'POST' })).text).toBe('POST 2')
        expect((await a.get('/form')).text).toBe('GET 3')
      })
    })

    group('head', () => {
      const page = 'x'.repeat(1234)

      it('answers HEAD from the stored GET: same status and headers, no body', async () => {
        const route = counted(() => ({ headers: { 'content-type': 'text/plain', 'x-custom': 'h' }, body: page }))
        const a = await app({ path: '/page', cache: { ttl: '1m' }, handler: route.handler })
        const get = await a.get('/page')
        const head = await a.get('/page', { method: 'HEAD' })
        expect(head.status).toBe(200)
        expect(head.bytes.length).toBe(0)
        expectHit(head)
        expect(head.headers.get('content-length')).toBe('1234')
        expect(head.headers.get('content-type')).toBe(get.headers.get('content-type'))
        expect(head.headers.get('x-custom')).toBe('h')
        expect(route.calls).toBe(1)
      })

      it('a HEAD on a cold key never stores an empty body', async () => {
        const route = counted(() => ({ headers: { 'content-type': 'text/plain' }, body: page }))
        const a = await app({ path: '/page', cache: { ttl: '1m' }, handler: route.handler })
        const head = await a.get('/page', { method: 'HEAD' })
        expect(head.status).toBe(200)
        expect(head.bytes.length).toBe(0)
        for (let i = 0; i < 2; i++) {
          const get = await a.get('/page')
          expect(get.text).toBe(page)
          expect(get.headers.get('content-length') ?? '1234').toBe('1234')
        }
        // What a second HEAD says is now answered from a full entry: its length is the body's.
        const again = await a.get('/page', { method: 'HEAD' })
        expect(again.headers.get('content-length')).toBe('1234')
      })

      it('a HEAD on a cold key is a miss: fwd=miss, and stored (a full GET filled it) or detail=method', async () => {
        const a = await app({ path: '/page', cache: { ttl: '1m' }, handler: () => ({ body: page }) })
        const head = await a.get('/page', { method: 'HEAD' })
        const params = cacheStatus(head)
        expect(params.hit, `not a hit: the cache had nothing (got ${JSON.stringify(params)})`).toBeUndefined()
        expect(params.fwd).toBe('miss')
        if (params.stored !== true) expect(params.detail).toBe('method')
        expect(head.headers.get('age')).toBeNull()
      })
    })

    group('conditional', () => {
      const etagged = () => counted(() => ({ headers: { etag: '"v1"', 'content-type': 'text/plain' }, body: 'tagged' }))

      it('If-None-Match with the stored ETag: 304 without a body, with ETag, Cache-Status and Age', async () => {
        const route = etagged()
        const a = await app({ path: '/e', cache: { ttl: '1m' }, handler: route.handler })
        await a.get('/e')
        const reply = await a.get('/e', { headers: { 'if-none-match': '"v1"' } })
        expect(reply.status).toBe(304)
        expect(reply.bytes.length).toBe(0)
        expect(reply.headers.get('etag')).toBe('"v1"')
        expectHit(reply)
        expect(route.calls).toBe(1)
      })

      it('compares weakly: W/"v1" matches "v1"', async () => {
        const a = await app({ path: '/e', cache: { ttl: '1m' }, handler: etagged().handler })
        await a.get('/e')
        expect((await a.get('/e', { headers: { 'if-none-match': 'W/"v1"' } })).status).toBe(304)
      })

      it('matches a list when any member matches, and answers 200 in full when none does', async () => {
        const route = etagged()
        const a = await app({ path: '/e', cache: { ttl: '1m' }, handler: route.handler })
        await a.get('/e')
        expect((await a.get('/e', { headers: { 'if-none-match': '"a", W/"b", "v1"' } })).status).toBe(304)
        const full = await a.get('/e', { headers: { 'if-none-match': '"a", "b"' } })
        expect(full.status).toBe(200)
        expect(full.text).toBe('tagged')
        expectHit(full)
        expect(route.calls).toBe(1)
      })

      it('matches * against any stored response', async () => {
        const a = await app({ path: '/e', cache: { ttl: '1m' }, handler: etagged().handler })
        await a.get('/e')
        expect((await a.get('/e', { headers: { 'if-none-match': '*' } })).status).toBe(304)
      })

      it('computes a weak ETag when the origin sends none, and honours it', async () => {
        const route = counted(() => ({ body: 'no tag' }))
        const a = await app({ path: '/n', cache: { ttl: '1m' }, handler: route.handler })
        await a.get('/n')
        const hit = await a.get('/n')
        const etag = hit.headers.get('etag')
        expect(etag).toMatch(/^W\/".+"$/)
        const reply = await a.get('/n', { headers: { 'if-none-match': etag as string } })
        expect(reply.status).toBe(304)
        expect(reply.headers.get('etag')).toBe(etag)
        expect(route.calls).toBe(1)
      })

      it('If-Modified-Since: 304 unless Last-Modified is after it', async () => {
        const modified = new Date(Math.floor(Date.now() / 1000) * 1000 - 3_600_000)
        const route = counted(() => ({ headers: { 'last-modified': modified.toUTCString() }, body: 'dated' }))
        const a = await app({ path: '/d', cache: { ttl: '1m' }, handler: route.handler })
        await a.get('/d')
        const same = await a.get('/d', { headers: { 'if-modified-since': modified.toUTCString() } })
        expect(same.status).toBe(304)
        expect(same.bytes.length).toBe(0)
        const later = new Date(modified.getTime() + 60_000).toUTCString()
        expect((await a.get('/d', { headers: { 'if-modified-since': later } })).status).toBe(304)
        const earlier = new Date(modified.getTime() - 60_000).toUTCString()
        const full = await a.get('/d', { headers: { 'if-modified-since': earlier } })
        expect(full.status).toBe(200)
        expect(full.text).toBe('dated')
        expect(route.calls).toBe(1)
      })

      it('ignores If-Modified-Since when the request has If-None-Match', async () => {
        const modified = new Date(Date.now() - 3_600_000).toUTCString()
        const route = counted(() => ({ headers: { etag: '"v1"', 'last-modified': modified }, body: 'both' }))
        const a = await app({ path: '/b', cache: { ttl: '1m' }, handler: route.handler })
        await a.get('/b')
        const reply = await a.get('/b', { headers: { 'if-none-match': '"other"', 'if-modified-since': modified } })
        expect(reply.status).toBe(200)
        expect(reply.text).toBe('both')
      })
    })

    group('cache-status', () => {
      it('a stored miss says fwd=miss; stored; ttl=<the ttl>, with no Age', async () => {
        const a = await app({ path: '/s', cache: { ttl: '30s' }, handler: () => ({ body: 's' }) })
        const ttl = expectStored(await a.get('/s'))
        expect(ttl).toBeGreaterThanOrEqual(28)
        expect(ttl).toBeLessThanOrEqual(30)
      })

      it('a hit says hit; ttl=<remaining>, with Age', async () => {
        const a = await app({ path: '/s', cache: { ttl: '30s' }, handler: () => ({ body: 's' }) })
        await a.get('/s')
        const hit = await a.get('/s')
        const ttl = expectHit(hit)
        expect(ttl).toBeGreaterThanOrEqual(25)
        expect(ttl).toBeLessThanOrEqual(30)
        expect(age(hit)).toBeLessThanOrEqual(5)
      })

      it("Age adds the origin's own Age to the time stored, and grows", async () => {
        const a = await app({
          path: '/aged',
          cache: { ttl: '10m' },
          handler: () => ({ headers: { age: '30', 'cache-control': 'max-age=600' }, body: 'aged' }),
        })
        await a.get('/aged')
        const hit = await a.get('/aged')
        const first = age(hit)
        // The origin's Age counts against its freshness too: 600 s of life, 30 of them already spent.
        expect(expectHit(hit)).toBeLessThanOrEqual(570)
        expect(first).toBeGreaterThanOrEqual(30)
        expect(first).toBeLessThanOrEqual(35)
        await sleep(1100)
        expect(age(await a.get('/aged'))).toBeGreaterThanOrEqual(first + 1)
      })

      it('names the member after cacheStatus, and leaves the header out with false', async () => {
        const a = await app(
          { path: '/named', cache: { ttl: '1m', cacheStatus: 'edge' }, handler: () => ({ body: 'n' }) },
          { path: '/silent', cache: { ttl: '1m', cacheStatus: false }, handler: () => ({ body: 's' }) },
        )
        const miss = await a.get('/named')
        expect(parseCacheStatus(miss.headers.get('cache-status'), 'edge')).toMatchObject({ fwd: 'miss', stored: true })
        expect(parseCacheStatus(miss.headers.get('cache-status'), 'cache')).toBeUndefined()
        expectHit(await a.get('/named'), 'edge')
        await a.get('/silent')
        const silent = await a.get('/silent')
        expect(silent.headers.get('cache-status')).toBeNull()
        expect(silent.headers.get('age')).toMatch(/^\d+$/)
      })

      it('a request with credentials says fwd=bypass; detail=authorization or detail=cookie', async () => {
        const a = await app({ path: '/c', cache: { ttl: '1m' }, handler: () => ({ body: 'c' }) })
        expectBypass(await a.get('/c', { headers: { authorization: 'Bearer a' } }), 'authorization')
        expectBypass(await a.get('/c', { headers: { cookie: 'sid=a' } }), 'cookie')
      })

      it('an unsafe method says fwd=method', async () => {
        const a = await app({
          path: '/m',
          methods: ['GET', 'POST', 'DELETE'],
          cache: { ttl: '1m' },
          handler: () => ({ body: 'm' }),
        })
        for (const method of ['POST', 'DELETE']) {
          const params = cacheStatus(await a.get('/m', { method }))
          expect(params.fwd).toBe('method')
          expect(params.hit).toBeUndefined()
        }
      })
    })

    group('vary', () => {
      it('keeps one entry per value of a Vary header (a missing header is a value too)', async () => {
        const route = counted((n, req) => ({
          headers: { vary: 'X-Lang' },
          body: `${req.headers['x-lang'] ?? 'none'} ${n}`,
        }))
        const a = await app({ path: '/v', cache: { ttl: '1m' }, handler: route.handler })
        const en = { headers: { 'x-lang': 'en' } }
        const fr = { headers: { 'x-lang': 'fr' } }
        expectStored(await a.get('/v', en))
        expectStored(await a.get('/v', fr))
        const enHit = await a.get('/v', en)
        expectHit(enHit)
        expect(enHit.text).toBe('en 1')
        expect(enHit.headers.get('vary')?.toLowerCase()).toContain('x-lang')
        expect((await a.get('/v', fr)).text).toBe('fr 2')
        expect((await a.get('/v')).text).toBe('none 3')
        expect((await a.get('/v')).text).toBe('none 3')
        expect(route.calls).toBe(3)
      })

      it('keys on the combination of several Vary headers', async () => {
        const route = counted((n, req) => ({
          headers: { vary: 'x-a, x-b' },
          body: `${req.headers['x-a']}${req.headers['x-b']} ${n}`,
        }))
        const a = await app({ path: '/v', cache: { ttl: '1m' }, handler: route.handler })
        const ask = (x: string, y: string) => a.get('/v', { headers: { 'x-a': x, 'x-b': y } })
        expect((await ask('1', '1')).text).toBe('11 1')
        expect((await ask('1', '2')).text).toBe('12 2')
        expect((await ask('2', '1')).text).toBe('21 3')
        expect((await ask('1', '1')).text).toBe('11 1')
        expect((await ask('1', '2')).text).toBe('12 2')
        expect(route.calls).toBe(3)
      })

      it('never stores Vary: *', async () => {
        const route = counted((n) => ({ headers: { vary: '*' }, body: `star ${n}` }))
        const a = await app({ path: '/star', cache: { ttl: '1m' }, handler: route.handler })
        expectNotStored(await a.get('/star'), 'vary')
        const second = await a.get('/star')
        expect(second.text).toBe('star 2')
        expectNotStored(second, 'vary')
        expect(route.calls).toBe(2)
      })
    })

    group('storable', () => {
      it('never stores no-store', async () => {
        const route = counted((n) => ({ headers: { 'cache-control': 'no-store' }, body: `n${n}` }))
        const a = await app({ path: '/ns', cache: { ttl: '1m' }, handler: route.handler })
        expectNotStored(await a.get('/ns'), 'no-store')
        expect((await a.get('/ns')).text).toBe('n2')
        expect(route.calls).toBe(2)
      })

      it('never stores private', async () => {
        const route = counted((n) => ({ headers: { 'cache-control': 'private, max-age=60' }, body: `p${n}` }))
        const a = await app({ path: '/p', cache: { ttl: '1m' }, handler: route.handler })
        expectNotStored(await a.get('/p'), 'private')
        expect((await a.get('/p')).text).toBe('p2')
        expect(route.calls).toBe(2)
      })

      it('stores no-cache but sends every request to the handler', async () => {
        const route = counted((n) => ({ headers: { 'cache-control': 'no-cache' }, body: `c${n}` }))
        const a = await app({ path: '/nc', cache: { ttl: '1m' }, handler: route.handler })
        for (let n = 1; n <= 3; n++) {
          const reply = await a.get('/nc')
          expect(reply.text).toBe(`c${n}`)
          expectNotHit(reply)
        }
        expect(route.calls).toBe(3)
      })

      it('serves a no-cache copy only when the handler then fails (stale-if-error)', async () => {
        const route = counted((n) =>
          n === 1 ? { headers: { 'cache-control': 'no-cache' }, body: 'good' } : { status: 503, body: 'down' },
        )
        const a = await app({ path: '/nc', cache: { ttl: '1m', staleIfError: '1m' }, handler: route.handler })
        await a.get('/nc')
        const reply = await a.get('/nc')
        expect(reply.status).toBe(200)
        expect(reply.text).toBe('good')
        expect(cacheStatus(reply)).toMatchObject({ fwd: 'stale', 'fwd-status': '503', detail: 'stale-if-error' })
        expect(route.calls).toBe(2)
      })

      it('stores the statuses cacheable by default and no others', async () => {
        const calls = new Map<number, number>()
        const a = await app({
          path: '/status',
          cache: { ttl: '1m' },
          handler: (req) => {
            const code = Number(new URL(req.url, 'http://x').searchParams.get('code'))
            calls.set(code, (calls.get(code) ?? 0) + 1)
            const headers: Record<string, string> = code >= 300 && code < 400 ? { location: '/elsewhere' } : {}
            return { status: code, headers, body: code === 204 ? '' : `status ${code}` }
          },
        })
        for (const code of [...DEFAULT_STATUSES, ...OTHER_STATUSES]) {
          const first = await a.get(`/status?code=${code}`)
          const second = await a.get(`/status?code=${code}`)
          expect([first.status, second.status], `status ${code}`).toEqual([code, code])
          if (DEFAULT_STATUSES.includes(code)) {
            expectHit(second)
            if (code !== 204) expect(second.text).toBe(`status ${code}`)
            if (code >= 300 && code < 400) expect(second.headers.get('location')).toBe('/elsewhere')
          } else expectNotStored(second, 'status')
        }
        for (const code of DEFAULT_STATUSES) expect(calls.get(code), `calls for ${code}`).toBe(1)
        for (const code of OTHER_STATUSES) expect(calls.get(code), `calls for ${code}`).toBe(2)
      })

      it('stores a 206 only under the Range it answered', async () => {
        const route = counted((_, req) =>
          req.headers.range === undefined
            ? { body: '0123456789' }
            : { status: 206, headers: { 'content-range': 'bytes 0-3/10' }, body: '0123' },
        )
        const a = await app({ path: '/r', cache: { ttl: '1m' }, handler: route.handler })
        const range = { headers: { range: 'bytes=0-3' } }
        expect((await a.get('/r', range)).status).toBe(206)
        const partial = await a.get('/r', range)
        expect(partial.status).toBe(206)
        expect(partial.text).toBe('0123')
        expectHit(partial)
        const whole = await a.get('/r')
        expect(whole.status).toBe(200)
        expect(whole.text).toBe('0123456789')
        expect((await a.get('/r')).text).toBe('0123456789')
        expect(route.calls).toBe(2)
        await a.get('/r', { headers: { range: 'bytes=4-5' } })
        expect(route.calls).toBe(3)
      })

      it('statuses replaces the default list', async () => {
        const route = counted((_, req) => ({ status: req.url.includes('created') ? 201 : 404, body: 'x' }))
        const a = await app({ path: '/s', cache: { ttl: '1m', statuses: [200, 201] }, handler: route.handler })
        await a.get('/s?created')
        expectHit(await a.get('/s?created'))
        await a.get('/s?missing')
        expectNotStored(await a.get('/s?missing'), 'status')
        expect(route.calls).toBe(3)
      })

      it('fresh for min(route ttl, s-maxage > max-age > Expires)', async () => {
        const expires = (s: number) => new Date(Date.now() + s * 1000).toUTCString()
        const cases: Record<string, [Record<string, string>, number]> = {
          'max-age': [{ 'cache-control': 'max-age=30' }, 30],
          's-maxage': [{ 'cache-control': 's-maxage=20, max-age=30' }, 20],
          capped: [{ 'cache-control': 'max-age=600' }, 60],
          expires: [{ expires: expires(40) }, 40],
          'max-age over expires': [{ 'cache-control': 'max-age=30', expires: expires(50) }, 30],
          none: [{}, 60],
        }
        const a = await app({
          path: '/f',
          cache: { ttl: '1m' },
          handler: (req) => ({
            headers: cases[new URL(req.url, 'http://x').searchParams.get('case') ?? '']?.[0] ?? {},
          }),
        })
        for (const [name, [, seconds]] of Object.entries(cases)) {
          const ttl = expectStored(await a.get(`/f?case=${encodeURIComponent(name)}`))
          expect(ttl, name).toBeLessThanOrEqual(seconds)
          expect(ttl, name).toBeGreaterThanOrEqual(seconds - 3)
        }
      })

      it("expires by the response's max-age", async () => {
        const route = counted((n) => ({ headers: { 'cache-control': 'max-age=1' }, body: `m${n}` }))
        const a = await app({ path: '/m', cache: { ttl: '1m' }, handler: route.handler })
        await a.get('/m')
        expectHit(await a.get('/m'))
        await sleep(1200)
        expect((await a.get('/m')).text).toBe('m2')
        expect(route.calls).toBe(2)
      })
    })

    group('unsafe', () => {
      /** A resource: GET reads its version; a mutation bumps it, or fails with x-fail's status. */
      function resource(extra: Partial<SuiteRoute> = {}) {
        const state = { version: 1, reads: 0 }
        const route: SuiteRoute = {
          path: '/todos',
          methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
          cache: { ttl: '1m' },
          handler: (req): SuiteReply => {
            if (req.method === 'GET' || req.method === 'HEAD') {
              state.reads++
              return { headers: { vary: 'x-lang' }, body: `v${state.version} ${req.headers['x-lang'] ?? ''}` }
            }
            const fail = req.headers['x-fail']
            if (fail !== undefined) return { status: Number(fail), body: 'refused' }
            state.version++
            return { status: req.method === 'POST' ? 201 : 200, headers: { location: '/todos/7' }, body: 'done' }
          },
          ...extra,
        }
        return { state, route }
      }

      for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
        it(`a ${method} that succeeds drops the stored GET`, async () => {
          const { state, route } = resource()
          const a = await app(route)
          await a.get('/todos')
          expectHit(await a.get('/todos'))
          const mutation = await a.get('/todos', { method })
          expect(mutation.status).toBeLessThan(300)
          expect(cacheStatus(mutation).fwd).toBe('method')
          const after = await a.get('/todos')
          expect(after.text).toBe('v2 ')
          expectStored(after)
          expect(state.reads).toBe(2)
        })
      }

      it('a mutation that fails (4xx, 5xx) drops nothing', async () => {
        const { state, route } = resource()
        const a = await app(route)
        await a.get('/todos')
        for (const status of ['400', '409', '500']) {
          expect((await a.get('/todos', { method: 'POST', headers: { 'x-fail': status } })).status).toBe(Number(status))
          expectHit(await a.get('/todos'))
        }
        expect(state.reads).toBe(1)
      })

      it('never stores the response of an unsafe method', async () => {
        const route = counted((n) => ({ body: `post ${n}` }))
        const a = await app({ path: '/p', methods: ['POST'], cache: { ttl: '1m' }, handler: route.handler })
        expect((await a.get('/p', { method: 'POST' })).text).toBe('post 1')
        expect((await a.get('/p', { method: 'POST' })).text).toBe('post 2')
      })

      it('drops every variant of the URL', async () => {
        const { state, route } = resource()
        const a = await app(route)
        for (const lang of ['en', 'fr']) await a.get('/todos', { headers: { 'x-lang': lang } })
        expectHit(await a.get('/todos', { headers: { 'x-lang': 'fr' } }))
        await a.get('/todos', { method: 'PUT' })
        expect((await a.get('/todos', { headers: { 'x-lang': 'en' } })).text).toBe('v2 en')
        expect((await a.get('/todos', { headers: { 'x-lang': 'fr' } })).text).toBe('v2 fr')
        expect(state.reads).toBe(4)
      })

      it('drops the same URL with its query', async () => {
        const route = counted((n) => ({ body: `page ${n}` }))
        const a = await app({ path: '/todos', methods: ['GET', 'POST'], cache: { ttl: '1m' }, handler: route.handler })
        await a.get('/todos?page=2')
        expectHit(await a.get('/todos?page=2'))
        await a.get('/todos?page=2', { method: 'POST' })
        expectStored(await a.get('/todos?page=2'))
      })

      it('drops the URLs named by Location and Content-Location', async () => {
        const item = counted((n) => ({ body: `item ${n}` }))
        const other = counted((n) => ({ body: `other ${n}` }))
        const a = await app(
          {
            path: '/todos',
            methods: ['POST'],
            cache: { ttl: '1m' },
            handler: () => ({ status: 201, headers: { location: '/todos/7', 'content-location': '/todos/8' } }),
          },
          { path: '/todos/7', cache: { ttl: '1m' }, handler: item.handler },
          { path: '/todos/8', cache: { ttl: '1m' }, handler: other.handler },
        )
        await a.get('/todos/7')
        await a.get('/todos/8')
        expectHit(await a.get('/todos/7'))
        await a.get('/todos', { method: 'POST' })
        expect((await a.get('/todos/7')).text).toBe('item 2')
        expect((await a.get('/todos/8')).text).toBe('other 2')
      })

      httpIt('never drops a URL of another host named by Location', async () => {
        const item = counted((n, req) => ({ body: `${req.headers.host} ${n}` }))
        const a = await app(
          {
            path: '/todos',
            methods: ['POST'],
            cache: { ttl: '1m' },
            handler: () => ({ status: 201, headers: { location: 'http://other.example/todos/7' } }),
          },
          { path: '/todos/7', cache: { ttl: '1m' }, handler: item.handler },
        )
        const other = { headers: { host: 'other.example' } }
        await a.raw('/todos/7', other)
        await a.get('/todos', { method: 'POST' })
        const after = await a.raw('/todos/7', other)
        expectHit(after)
        expect(after.text).toBe('other.example 1')
      })

      it("drops the route's invalidateTags after a success, and not after a failure", async () => {
        const list = counted((n) => ({ body: `list ${n}` }))
        const a = await app(
          { path: '/list', cache: { ttl: '1m', tags: () => ['todos'] }, handler: list.handler },
          {
            path: '/todos',
            methods: ['POST'],
            cache: { ttl: '1m', invalidateTags: () => ['todos'] },
            handler: (req) => ({ status: req.headers['x-fail'] ? 500 : 201 }),
          },
        )
        await a.get('/list')
        await a.get('/todos', { method: 'POST', headers: { 'x-fail': '1' } })
        expectHit(await a.get('/list'))
        await a.get('/todos', { method: 'POST' })
        expect((await a.get('/list')).text).toBe('list 2')
      })
    })

    group('tags', () => {
      it('cache.invalidateTags drops the tagged responses, and only those', async () => {
        const one = counted((n) => ({ body: `a${n}` }))
        const two = counted((n) => ({ body: `b${n}` }))
        const a = await app(
          { path: '/a', cache: { ttl: '1m', tags: () => ['tag-a', 'all'] }, handler: one.handler },
          { path: '/b', cache: { ttl: '1m', tags: () => ['tag-b', 'all'] }, handler: two.handler },
        )
        await a.call('/a')
        await a.call('/b')
        await a.cache.invalidateTags(['tag-a'])
        expect((await a.call('/a')).body).toBe('a2')
        expect((await a.call('/b')).body).toBe('b1')
        await a.cache.invalidateTags(['all'])
        expect((await a.call('/a')).body).toBe('a3')
        expect((await a.call('/b')).body).toBe('b2')
        expect((await a.call('/a')).body).toBe('a3')
      })

      httpIt('tags may depend on the request', async () => {
        const route = counted((n, req) => ({ body: `${req.url} ${n}` }))
        const id = (req: SuiteRequest) => new URL(req.url, 'http://x').searchParams.get('id') ?? ''
        const a = await app({
          path: '/item',
          cache: { ttl: '1m', tags: (req) => [`item:${id(req)}`] },
          handler: route.handler,
        })
        await a.get('/item?id=1')
        await a.get('/item?id=2')
        await a.cache.invalidateTags(['item:1'])
        expectStored(await a.get('/item?id=1'))
        expectHit(await a.get('/item?id=2'))
        expect(route.calls).toBe(3)
      })
    })

    group('coalescing', () => {
      it('1 000 concurrent cold requests run the handler once, and all get its body', async () => {
        const route = counted(async (n) => {
          await sleep(100)
          return { body: `shared ${n}` }
        })
        const a = await app({ path: '/hot', cache: { ttl: '1m' }, handler: route.handler })
        const replies = await Promise.all(Array.from({ length: 1000 }, () => a.call('/hot')))
        expect(route.calls).toBe(1)
        for (const reply of replies) expect(reply).toMatchObject({ status: 200, body: 'shared 1' })
      })

      it('coalesces with lock: true too', async () => {
        const route = counted(async (n) => {
          await sleep(100)
          return { body: `locked ${n}` }
        })
        const a = await app({ path: '/locked', cache: { ttl: '1m', lock: true }, handler: route.handler })
        const replies = await Promise.all(Array.from({ length: 100 }, () => a.call('/locked')))
        expect(route.calls).toBe(1)
        for (const reply of replies) expect(reply.body).toBe('locked 1')
      })

      httpIt("waiters get the stored copy as hits; only the leader's answer is a miss", async () => {
        const held = gate()
        const route = counted(async (n) => {
          await held.promise
          return { body: `w${n}` }
        })
        const a = await app({ path: '/w', cache: { ttl: '1m' }, handler: route.handler })
        const pending = Promise.all(Array.from({ length: 50 }, () => a.get('/w')))
        await sleep(200)
        held.open()
        const replies = await pending
        expect(route.calls).toBe(1)
        const misses = replies.filter((reply) => cacheStatus(reply).fwd === 'miss')
        expect(misses.length).toBe(1)
        for (const reply of replies) {
          expect(reply.text).toBe('w1')
          if (reply !== misses[0]) expectHit(reply)
        }
      })

      httpIt('never shares a response that may not be stored: each waiter runs the handler', async () => {
        const route = counted(async (n) => {
          await sleep(50)
          return { headers: { 'cache-control': 'no-store' }, body: `own ${n}` }
        })
        const a = await app({ path: '/own', cache: { ttl: '1m' }, handler: route.handler })
        const replies = await Promise.all(Array.from({ length: 20 }, () => a.get('/own')))
        expect(route.calls).toBe(20)
        expect(new Set(replies.map((reply) => reply.text)).size).toBe(20)
      })
    })

    group('stale', () => {
      /** A handler whose answers are versioned; `mode` decides how the next call fails, if it does. */
      function versioned(options: { hold?: boolean; headers?: Record<string, string> } = {}) {
        const held = gate()
        const state = { version: 0, calls: 0, mode: 'ok' as 'ok' | '5xx' | 'throw', held }
        const handler = async (): Promise<SuiteReply> => {
          state.calls++
          if (options.hold && state.calls > 1) await held.promise
          if (state.mode === 'throw') return { throws: new Error('origin down') }
          if (state.mode === '5xx') return { status: 503, body: 'origin down' }
          state.version++
          return { headers: options.headers ?? {}, body: `v${state.version}` }
        }
        return { state, handler }
      }

      backgroundIt('within staleWhileRevalidate: stale at once, one background refresh, then fresh', async () => {
        const { state, handler } = versioned({ hold: true })
        const a = await app({ path: '/swr', cache: { ttl: SHORT_TTL, staleWhileRevalidate: '1m' }, handler })
        expect((await a.call('/swr')).body).toBe('v1')
        await sleep(PAST_SHORT_TTL)
        // The refresh is held: these can only be answered from the stale copy.
        const stale = await within(
          Promise.all(Array.from({ length: 5 }, () => a.call('/swr'))),
          10_000,
          'stale requests while the refresh is held',
        )
        for (const reply of stale) expect(reply).toMatchObject({ status: 200, body: 'v1' })
        expect(await eventually(() => state.calls >= 2)).toBe(true)
        state.held.open()
        expect(await eventually(async () => (await a.call('/swr')).body === 'v2')).toBe(true)
        expect((await a.call('/swr')).body).toBe('v2')
        expect(state.calls).toBe(2)
      })

      httpBackgroundIt('a stale copy served in the background case says hit; ttl=<negative>', async () => {
        const { state, handler } = versioned()
        const a = await app({ path: '/swr', cache: { ttl: SHORT_TTL, staleWhileRevalidate: '1m' }, handler })
        await a.get('/swr')
        await sleep(A_SECOND_STALE)
        const reply = await a.get('/swr')
        expect(reply.text).toBe('v1')
        expect(expectHit(reply)).toBeLessThan(0)
        expect(await eventually(() => state.calls === 2)).toBe(true)
      })

      foregroundIt('without background revalidation, a stale entry is refreshed while the client waits', async () => {
        const { state, handler } = versioned()
        const a = await app({ path: '/swr', cache: { ttl: SHORT_TTL, staleWhileRevalidate: '1m' }, handler })
        await a.call('/swr')
        await sleep(PAST_SHORT_TTL)
        expect((await a.call('/swr')).body).toBe('v2')
        expect(state.calls).toBe(2)
        if (caps.http) {
          await sleep(PAST_SHORT_TTL)
          expect(cacheStatus(await a.get('/swr'))).toMatchObject({ fwd: 'stale', 'fwd-status': '200' })
        }
      })

      it('within staleIfError: a failing refresh serves the stale copy, a good one replaces it', async () => {
        const { state, handler } = versioned()
        const a = await app({ path: '/sie', cache: { ttl: SHORT_TTL, staleIfError: '1m' }, handler })
        expect((await a.call('/sie')).body).toBe('v1')
        await sleep(PAST_SHORT_TTL)
        state.mode = 'throw'
        expect(await a.call('/sie')).toMatchObject({ status: 200, body: 'v1' })
        state.mode = 'ok'
        expect(await a.call('/sie')).toMatchObject({ status: 200, body: 'v2' })
        expect(await a.call('/sie')).toMatchObject({ status: 200, body: 'v2' })
        expect(state.calls).toBe(3)
      })

      httpIt('stale-if-error answers with the stale status and fwd=stale; fwd-status; ttl<0; detail', async () => {
        const { state, handler } = versioned()
        const a = await app({ path: '/sie', cache: { ttl: SHORT_TTL, staleIfError: '1m' }, handler })
        await a.get('/sie')
        await sleep(A_SECOND_STALE)
        for (const mode of ['5xx', 'throw'] as const) {
          state.mode = mode
          const reply = await a.get('/sie')
          expect(reply.status).toBe(200)
          expect(reply.text).toBe('v1')
          const params = cacheStatus(reply)
          expect(params, mode).toMatchObject({ fwd: 'stale', detail: 'stale-if-error' })
          const status = intParam(params, 'fwd-status')
          if (mode === '5xx') expect(status).toBe(503)
          else expect(status).toBeGreaterThanOrEqual(500)
          expect(intParam(params, 'ttl')).toBeLessThan(0)
        }
        state.mode = 'ok'
        const fresh = await a.get('/sie')
        expect(fresh.text).toBe('v2')
        expect(cacheStatus(fresh)).toMatchObject({ fwd: 'stale', 'fwd-status': '200', stored: true })
      })

      it('beyond staleIfError the failure reaches the client', async () => {
        const { state, handler } = versioned()
        const a = await app({ path: '/gone', cache: { ttl: SHORT_TTL, staleIfError: SHORT_TTL }, handler })
        await a.call('/gone')
        await sleep(3 * PAST_SHORT_TTL)
        state.mode = 'throw'
        expect((await a.call('/gone')).status).toBeGreaterThanOrEqual(500)
      })

      httpIt('must-revalidate forbids serving stale', async () => {
        const { state, handler } = versioned({ headers: { 'cache-control': 'max-age=1, must-revalidate' } })
        const a = await app({
          path: '/mr',
          cache: { ttl: '1m', staleWhileRevalidate: '1m', staleIfError: '1m' },
          handler,
        })
        await a.get('/mr')
        await sleep(1200)
        state.mode = '5xx'
        expect((await a.get('/mr')).status).toBe(503)
      })

      httpIt("the response's own stale-if-error overrides the route's", async () => {
        const { state, handler } = versioned({ headers: { 'cache-control': 'max-age=1, stale-if-error=60' } })
        const a = await app({ path: '/own-sie', cache: { ttl: '1m' }, handler })
        await a.get('/own-sie')
        await sleep(1200)
        state.mode = '5xx'
        const reply = await a.get('/own-sie')
        expect(reply.status).toBe(200)
        expect(reply.text).toBe('v1')
      })

      httpBackgroundIt("the response's own stale-while-revalidate overrides the route's", async () => {
        const { state, handler } = versioned({
          hold: true,
          headers: { 'cache-control': 'max-age=1, stale-while-revalidate=60' },
        })
        const a = await app({ path: '/own-swr', cache: { ttl: '1m' }, handler })
        await a.get('/own-swr')
        await sleep(1200)
        const reply = await within(a.get('/own-swr'), 10_000, 'a stale request while the refresh is held')
        expect(reply.text).toBe('v1')
        expect(cacheStatus(reply).hit).toBe(true)
        state.held.open()
        expect(await eventually(async () => (await a.get('/own-swr')).text === 'v2')).toBe(true)
      })
    })

    group('body', () => {
      it('keeps all 256 byte values exact through the cache', async () => {
        const bytes = new Uint8Array(1024).map((_, i) => i % 256)
        const route = counted(() => ({ headers: { 'content-type': 'application/octet-stream' }, body: bytes }))
        const a = await app({ path: '/bin', cache: { ttl: '1m' }, handler: route.handler })
        const miss = await a.get('/bin')
        const hit = await a.get('/bin')
        expect(equalBytes(miss.bytes, bytes)).toBe(true)
        expect(equalBytes(hit.bytes, bytes)).toBe(true)
        expect(hit.headers.get('content-length')).toBe('1024')
        expect(hit.headers.get('content-type')).toBe('application/octet-stream')
        expect(route.calls).toBe(1)
      })

      it('keeps 64 KiB of random bytes exact through the cache', async () => {
        const bytes = new Uint8Array(randomBytes(64 * 1024))
        const route = counted(() => ({ headers: { 'content-type': 'application/octet-stream' }, body: bytes }))
        const a = await app({ path: '/rand', cache: { ttl: '1m' }, handler: route.handler })
        await a.get('/rand')
        const hit = await a.get('/rand')
        expect(hit.bytes.length).toBe(bytes.length)
        expect(equalBytes(hit.bytes, bytes)).toBe(true)
        expect(route.calls).toBe(1)
      })

      it('passes a body over maxBodySize through intact and uncached; one at the cap is stored', async () => {
        const big = new Uint8Array(randomBytes(5000))
        const exact = new Uint8Array(randomBytes(1000))
        const bigRoute = counted(() => ({ body: big }))
        const exactRoute = counted(() => ({ body: exact }))
        const a = await app(
          { path: '/big', cache: { ttl: '1m', maxBodySize: 1000 }, handler: bigRoute.handler },
          { path: '/exact', cache: { ttl: '1m', maxBodySize: 1000 }, handler: exactRoute.handler },
        )
        for (let i = 0; i < 2; i++) {
          const reply = await a.get('/big')
          expect(equalBytes(reply.bytes, big)).toBe(true)
          if (caps.http) expectNotStored(reply, 'size')
          expect(equalBytes((await a.get('/exact')).bytes, exact)).toBe(true)
        }
        expect(bigRoute.calls).toBe(2)
        expect(exactRoute.calls).toBe(1)
      })

      it('caps bodies at 1 MiB by default', async () => {
        const big = new Uint8Array(randomBytes(1024 * 1024 + 1))
        const route = counted(() => ({ body: big }))
        const a = await app({ path: '/mib', cache: { ttl: '1m' }, handler: route.handler })
        for (let i = 0; i < 2; i++) expect(equalBytes((await a.get('/mib')).bytes, big)).toBe(true)
        expect(route.calls).toBe(2)
      })

      it('stores an empty 204 and replays it empty', async () => {
        const route = counted(() => ({ status: 204 }))
        const a = await app({ path: '/empty', cache: { ttl: '1m' }, handler: route.handler })
        await a.get('/empty')
        const hit = await a.get('/empty')
        expect(hit.status).toBe(204)
        expect(hit.bytes.length).toBe(0)
        expectHit(hit)
        expect(route.calls).toBe(1)
      })

      it('never serves a gzip body to a request without Accept-Encoding: gzip', async () => {
        const text = 'compressible '.repeat(200)
        const gzipped = new Uint8Array(gzipSync(text))
        // A careless origin: it compresses on demand and forgets Vary.
        const route = counted(
          (_, req): SuiteReply =>
            (req.headers['accept-encoding'] ?? '').includes('gzip')
              ? { headers: { 'content-encoding': 'gzip', 'content-type': 'text/plain' }, body: gzipped }
              : { headers: { 'content-type': 'text/plain' }, body: text },
        )
        const a = await app({ path: '/z', cache: { ttl: '1m' }, handler: route.handler })
        // Every order of gzip and non-gzip clients: gzip only for those who asked, the text for everyone.
        const asks = ['gzip', undefined, 'identity', 'gzip, deflate', 'br', undefined, 'gzip', 'deflate']
        for (const [i, encoding] of asks.entries()) {
          const reply = await a.raw('/z', encoding === undefined ? {} : { headers: { 'accept-encoding': encoding } })
          const what = `request ${i + 1}, accept-encoding: ${encoding}`
          expect(reply.status, what).toBe(200)
          if (reply.headers.get('content-encoding') === 'gzip') {
            expect(encoding ?? '', what).toContain('gzip')
            expect(gunzipSync(reply.bytes).toString(), what).toBe(text)
          } else {
            expect(reply.headers.get('content-encoding'), what).toBeNull()
            expect(reply.text, what).toBe(text)
          }
        }
        // The first gzip answer was stored (under its Accept-Encoding): the same request is a hit.
        expectHit(await a.raw('/z', { headers: { 'accept-encoding': 'gzip' } }))
      })
    })

    group('streaming', () => {
      const chunks = Array.from({ length: 20 }, () => new Uint8Array(randomBytes(1000)))
      const whole = Buffer.concat(chunks)
      async function* stream(parts: readonly Uint8Array[], failAfter = Number.POSITIVE_INFINITY) {
        let sent = 0
        for (const part of parts) {
          if (sent++ === failAfter) throw new Error('stream broke')
          await new Promise((resolve) => setImmediate(resolve))
          yield part
        }
      }

      it('passes a streamed body through intact (and answers the same again)', async () => {
        const route = counted(() => ({
          headers: { 'content-type': 'application/octet-stream' },
          stream: stream(chunks),
        }))
        const a = await app({ path: '/stream', cache: { ttl: '1m' }, handler: route.handler })
        for (let i = 0; i < 2; i++) {
          const reply = await a.get('/stream')
          expect(reply.status).toBe(200)
          expect(equalBytes(reply.bytes, whole)).toBe(true)
        }
      })

      it('passes a streamed body over the cap through intact and uncached', async () => {
        const route = counted(() => ({ stream: stream(chunks) }))
        const a = await app({ path: '/stream', cache: { ttl: '1m', maxBodySize: 5000 }, handler: route.handler })
        for (let i = 0; i < 2; i++) expect(equalBytes((await a.get('/stream')).bytes, whole)).toBe(true)
        expect(route.calls).toBe(2)
      })

      it('Cache-Status never says stored for a streamed body that outgrew maxBodySize', async () => {
        const big = counted(() => ({ stream: stream(chunks) }))
        const small = counted(() => ({ stream: stream(chunks.slice(0, 2)) }))
        const a = await app(
          { path: '/big', cache: { ttl: '1m', maxBodySize: 5000 }, handler: big.handler },
          { path: '/small', cache: { ttl: '1m', maxBodySize: 5000 }, handler: small.handler },
        )
        const first = cacheStatus(await a.get('/big'))
        expect(first.fwd).toBe('miss')
        expect(first.stored, JSON.stringify(first)).toBeUndefined()
        expectNotHit(await a.get('/big'))
        expect(big.calls).toBe(2)
        // Within the cap: its length was unknown when the header left, so it says streamed (or stored if the adapter
        // had it whole), and it is stored.
        const fits = cacheStatus(await a.get('/small'))
        expect(fits.stored === true || fits.detail === 'streamed', JSON.stringify(fits)).toBe(true)
        expectHit(await a.get('/small'))
        expect(small.calls).toBe(1)
      })

      it('a request waiting on a miss goes on as soon as the answer is known not to be stored (a slow or endless body)', async () => {
        const release = gate()
        const route = counted((n) => {
          if (n > 1) return { body: `answer ${n}` }
          async function* endless() {
            yield new TextEncoder().encode('event: one\n\n')
            await release.promise
          }
          return { headers: { 'cache-control': 'no-cache', 'content-type': 'text/event-stream' }, stream: endless() }
        })
        const a = await app({ path: '/events', cache: { ttl: '1m' }, handler: route.handler })
        const first = a.raw('/events')
        await eventually(() => route.calls === 1)
        try {
          const second = await within(a.get('/events'), 5000, 'the second request, while the first streams')
          expect(second.text).toBe('answer 2')
        } finally {
          release.open()
        }
        await first
      })

      it('never stores an aborted stream', async () => {
        const route = counted((n) => (n === 1 ? { stream: stream(chunks, 3) } : { body: 'complete' }))
        const a = await app({ path: '/broken', cache: { ttl: '1m' }, handler: route.handler })
        const broken = await a.raw('/broken')
        expect(broken.complete && broken.status < 500, 'the client sees the failure').toBe(false)
        const next = await a.get('/broken')
        expect(next.text).toBe('complete')
        expect(route.calls).toBe(2)
      })
    })

    group('leaks', () => {
      it('a per-user key gives each user their own copy; no key part bypasses the cache', async () => {
        const route = counted((n, req) => ({ body: `for ${req.headers['x-user'] ?? 'nobody'} ${n}` }))
        const a = await app({
          path: '/me',
          cache: { ttl: '1m', key: (req) => req.headers['x-user'] },
          handler: route.handler,
        })
        const as = (user: string) => ({ headers: { 'x-user': user } })
        expect((await a.call('/me', as('ann'))).body).toBe('for ann 1')
        expect((await a.call('/me', as('bob'))).body).toBe('for bob 2')
        expect((await a.call('/me', as('ann'))).body).toBe('for ann 1')
        expect((await a.call('/me', as('bob'))).body).toBe('for bob 2')
        expect((await a.call('/me')).body).toBe('for nobody 3')
        expect((await a.call('/me')).body).toBe('for nobody 4')
        expect(route.calls).toBe(4)
      })

      httpIt(
        'with a key, requests with Authorization are cached per user; key() undefined says detail=key',
        async () => {
          const route = counted((n, req) => ({ body: `${req.headers.authorization ?? 'anon'} ${n}` }))
          const user = (req: SuiteRequest) => req.headers.authorization?.replace(/^Bearer /, '')
          const a = await app({ path: '/me', cache: { ttl: '1m', key: user }, handler: route.handler })
          const as = (token: string) => ({ headers: { authorization: `Bearer ${token}` } })
          expectStored(await a.get('/me', as('a')))
          const hit = await a.get('/me', as('a'))
          expectHit(hit)
          expect(hit.text).toBe('Bearer a 1')
          expect((await a.get('/me', as('b'))).text).toBe('Bearer b 2')
          expectBypass(await a.get('/me'), 'key')
        },
      )

      httpIt('a request with Authorization is never served from the cache nor stored', async () => {
        const route = counted((n, req) => ({ body: `${req.headers.authorization ?? 'anyone'} ${n}` }))
        const a = await app({ path: '/doc', cache: { ttl: '1m' }, handler: route.handler })
        const secret = { headers: { authorization: 'Bearer secret' } }
        expect((await a.get('/doc', secret)).text).toBe('Bearer secret 1')
        expect((await a.get('/doc')).text).toBe('anyone 2')
        expect((await a.get('/doc')).text).toBe('anyone 2')
        const again = await a.get('/doc', secret)
        expect(again.text).toBe('Bearer secret 3')
        expectBypass(again, 'authorization')
      })

      httpIt('a request with Cookie is never served from the cache nor stored', async () => {
        const route = counted((n, req) => ({ body: `${req.headers.cookie ?? 'anyone'} ${n}` }))
        const a = await app({ path: '/doc', cache: { ttl: '1m' }, handler: route.handler })
        const cookie = { headers: { cookie: 'sid=secret' } }
        expect((await a.get('/doc', cookie)).text).toBe('sid=secret 1')
        expect((await a.get('/doc')).text).toBe('anyone 2')
        expect((await a.get('/doc')).text).toBe('anyone 2')
        const again = await a.get('/doc', cookie)
        expect(again.text).toBe('sid=secret 3')
        expectBypass(again, 'cookie')
      })

      httpIt('a response with Set-Cookie is not stored, and its client gets its cookie', async () => {
        const route = counted((n) => ({ headers: { 'set-cookie': `sid=${n}; HttpOnly` }, body: `hello ${n}` }))
        const a = await app({ path: '/login', cache: { ttl: '1m' }, handler: route.handler })
        const first = await a.get('/login')
        expect(first.headers.getSetCookie()).toEqual(['sid=1; HttpOnly'])
        expectNotStored(first, 'set-cookie')
        const second = await a.get('/login')
        expect(second.headers.getSetCookie()).toEqual(['sid=2; HttpOnly'])
        expect(route.calls).toBe(2)
      })

      for (const [label, cache] of [
        ["scope: 'public'", { ttl: '1m', scope: 'public' }],
        ['a key', { ttl: '1m', key: () => 'everyone' }],
      ] as const) {
        httpIt(`with ${label}, a Set-Cookie response is stored without its cookie`, async () => {
          const route = counted((n) => ({ headers: { 'set-cookie': [`a=${n}`, `b=${n}`] }, body: `page ${n}` }))
          const a = await app({ path: '/pub', cache, handler: route.handler })
          const first = await a.get('/pub')
          expect(first.headers.getSetCookie()).toEqual(['a=1', 'b=1'])
          expectStored(first)
          const hit = await a.get('/pub')
          expectHit(hit)
          expect(hit.text).toBe('page 1')
          expect(hit.headers.getSetCookie()).toEqual([])
          expect(route.calls).toBe(1)
        })
      }

      for (const scope of [undefined, 'public'] as const) {
        httpIt(`50 coalesced requests each get only their own cookie or none (scope: ${scope})`, async () => {
          const route = counted(async (_, req) => {
            await sleep(100)
            return { headers: { 'set-cookie': `sid=${req.headers['x-id']}` }, body: 'same page' }
          })
          const a = await app({
            path: '/c',
            cache: scope ? { ttl: '1m', scope } : { ttl: '1m' },
            handler: route.handler,
          })
          const replies = await Promise.all(
            Array.from({ length: 50 }, (_, i) => a.get('/c', { headers: { 'x-id': String(i) } })),
          )
          replies.forEach((reply, i) => {
            expect(reply.text).toBe('same page')
            const cookies = reply.headers.getSetCookie()
            expect(cookies.length === 0 || (cookies.length === 1 && cookies[0] === `sid=${i}`), cookies.join()).toBe(
              true,
            )
          })
          if (scope === undefined) {
            // Not storable, so not shared: everyone ran the handler and got their own cookie.
            expect(route.calls).toBe(50)
            replies.forEach((reply, i) => {
              expect(reply.headers.getSetCookie()).toEqual([`sid=${i}`])
            })
          } else {
            expect(route.calls).toBe(1)
            expect(replies.filter((reply) => reply.headers.getSetCookie().length > 0).length).toBe(1)
          }
        })
      }

      httpIt('Vary: Authorization on a public route keeps each user apart', async () => {
        const route = counted((n, req) => ({
          headers: { vary: 'Authorization' },
          body: `${req.headers.authorization ?? 'anon'} ${n}`,
        }))
        const a = await app({ path: '/v', cache: { ttl: '1m', scope: 'public' }, handler: route.handler })
        const as = (token: string) => ({ headers: { authorization: `Bearer ${token}` } })
        expect((await a.get('/v', as('a'))).text).toBe('Bearer a 1')
        expect((await a.get('/v', as('b'))).text).toBe('Bearer b 2')
        expect((await a.get('/v')).text).toBe('anon 3')
        const hit = await a.get('/v', as('a'))
        expectHit(hit)
        expect(hit.text).toBe('Bearer a 1')
        expect((await a.get('/v', as('b'))).text).toBe('Bearer b 2')
        expect(route.calls).toBe(3)
      })

      httpIt('a public route without Vary shares one copy whatever the credentials', async () => {
        const route = counted((n) => ({ body: `public ${n}` }))
        const a = await app({ path: '/p', cache: { ttl: '1m', scope: 'public' }, handler: route.handler })
        expect((await a.get('/p', { headers: { authorization: 'Bearer a' } })).text).toBe('public 1')
        expect((await a.get('/p', { headers: { cookie: 'sid=b' } })).text).toBe('public 1')
        expect((await a.get('/p')).text).toBe('public 1')
        expect(route.calls).toBe(1)
      })

      httpIt('Host is part of the key: two Host headers, two entries', async () => {
        const route = counted((n, req) => ({ body: `${req.headers.host} ${n}` }))
        const a = await app({ path: '/h', cache: { ttl: '1m' }, handler: route.handler })
        const on = (host: string) => ({ headers: { host } })
        expect((await a.raw('/h', on('a.example'))).text).toBe('a.example 1')
        expect((await a.raw('/h', on('b.example'))).text).toBe('b.example 2')
        const hit = await a.raw('/h', on('a.example'))
        expect(hit.text).toBe('a.example 1')
        expectHit(hit)
        expect((await a.raw('/h', on('b.example'))).text).toBe('b.example 2')
        expect(route.calls).toBe(2)
      })
    })

    group('keys', () => {
      it('the same path and query is one entry; another query is another', async () => {
        const route = counted((n) => ({ body: `n${n}` }))
        const a = await app({ path: '/items', cache: { ttl: '1m' }, handler: route.handler })
        expect((await a.call('/items?page=1')).body).toBe('n1')
        expect((await a.call('/items?page=1')).body).toBe('n1')
        expect((await a.call('/items?page=2')).body).toBe('n2')
        expect((await a.call('/items?page=2')).body).toBe('n2')
        expect((await a.call('/items?page=1')).body).toBe('n1')
        expect(route.calls).toBe(2)
      })

      httpIt('the order of query parameters does not matter', async () => {
        const route = counted((n) => ({ body: `n${n}` }))
        const a = await app({ path: '/q', cache: { ttl: '1m' }, handler: route.handler })
        await a.get('/q?a=1&b=2')
        const hit = await a.get('/q?b=2&a=1')
        expectHit(hit)
        expect(hit.text).toBe('n1')
        expect(route.calls).toBe(1)
      })

      httpIt('leaves utm_*, fbclid and gclid out of the key by default', async () => {
        const route = counted((n) => ({ body: `n${n}` }))
        const a = await app({ path: '/q', cache: { ttl: '1m' }, handler: route.handler })
        await a.get('/q?a=1')
        for (const query of ['utm_source=x', 'utm_medium=y&utm_campaign=z', 'fbclid=abc', 'gclid=def']) {
          expectHit(await a.get(`/q?a=1&${query}`))
        }
        expect((await a.get('/q?a=2&utm_source=x')).text).toBe('n2')
        expect(route.calls).toBe(2)
      })

      httpIt('ignoreQuery replaces the default list; a trailing * matches a prefix', async () => {
        const route = counted((n) => ({ body: `n${n}` }))
        const a = await app({
          path: '/q',
          cache: { ttl: '1m', ignoreQuery: ['ref*', 'session'] },
          handler: route.handler,
        })
        await a.get('/q?a=1')
        expectHit(await a.get('/q?a=1&ref=x&referrer=y'))
        expectHit(await a.get('/q?session=3&a=1'))
        expectStored(await a.get('/q?a=1&utm_source=x'))
        expect(route.calls).toBe(2)
      })

      httpIt('GET and HEAD share one entry', async () => {
        const route = counted(() => ({ body: 'shared' }))
        const a = await app({ path: '/gh', cache: { ttl: '1m' }, handler: route.handler })
        await a.get('/gh')
        expectHit(await a.get('/gh', { method: 'HEAD' }))
        expect(route.calls).toBe(1)
      })
    })

    // The attacker's cases (issue 11): each one leaked or poisoned a shared entry on some adapter once.
    group('safety', () => {
      httpIt(
        'Cache-Control: private, no-store set by middleware before the cache: never stored, never shared',
        async () => {
          const route = counted((n, req) => ({ body: `secret of ${req.headers['x-user']} ${n}` }))
          const a = await app({
            path: '/account',
            cache: { ttl: '1m' },
            before: { 'cache-control': 'private, no-store' },
            handler: route.handler,
          })
          const alice = await a.get('/account', { headers: { 'x-user': 'alice' } })
          expect(alice.text).toBe('secret of alice 1')
          expect(alice.headers.get('cache-control')).toBe('private, no-store')
          expectNotStored(alice, 'no-store')
          const mallory = await a.get('/account', { headers: { 'x-user': 'mallory' } })
          expect(mallory.text).toBe('secret of mallory 2')
          expect(route.calls).toBe(2)
        },
      )

      httpIt('Vary set by middleware before the cache keys the variants', async () => {
        const route = counted((n, req) => ({ body: `${req.headers['accept-language']} ${n}` }))
        const a = await app({
          path: '/i18n',
          cache: { ttl: '1m' },
          before: { vary: 'Accept-Language' },
          handler: route.handler,
        })
        const lang = (value: string) => ({ headers: { 'accept-language': value } })
        expect((await a.get('/i18n', lang('fr'))).text).toBe('fr 1')
        expect((await a.get('/i18n', lang('de'))).text).toBe('de 2')
        const fr = await a.get('/i18n', lang('fr'))
        expectHit(fr)
        expect(fr.text).toBe('fr 1')
        expect(fr.headers.get('vary')?.toLowerCase()).toContain('accept-language')
        expect((await a.get('/i18n', lang('de'))).text).toBe('de 2')
        expect(route.calls).toBe(2)
      })

      for (const [what, late, reason] of [
        ['a session cookie', { 'set-cookie': 'sid=fresh-session' }, 'set-cookie'],
        ['Cache-Control: private', { 'cache-control': 'private' }, 'private'],
      ] as const) {
        httpIt(
          `${what} added by earlier middleware after the cache decided keeps the answer out of the cache`,
          async () => {
            // express-session (on-headers), @fastify/cookie (a later onSend hook), hono middleware after next().
            const route = counted((n, req) => ({ body: `form of ${req.headers['x-user']} with csrf ${n}` }))
            const a = await app({ path: '/form', cache: { ttl: '1m' }, late, handler: route.handler })
            const first = await a.get('/form', { headers: { 'x-user': 'alice' } })
            expect(first.text, reason).toBe('form of alice with csrf 1')
            const second = await a.get('/form', { headers: { 'x-user': 'mallory' } })
            expect(second.text, reason).toBe('form of mallory with csrf 2')
            expectNotHit(second)
            expect(route.calls).toBe(2)
          },
        )
      }

      httpIt('freshness set by middleware before the cache counts (and is capped by the route)', async () => {
        const route = counted((n) => ({ body: `page ${n}` }))
        const a = await app({
          path: '/fresh',
          cache: {},
          before: { 'cache-control': 'public, max-age=30' },
          handler: route.handler,
        })
        const ttl = expectStored(await a.get('/fresh'))
        expect(ttl).toBeLessThanOrEqual(30)
        expect(ttl).toBeGreaterThanOrEqual(27)
        expectHit(await a.get('/fresh'))
        expect(route.calls).toBe(1)
      })

      httpIt('an invalid Host bypasses the cache: Host: victim.example/item cannot poison /item/…', async () => {
        const item = counted((n) => ({ body: `real item ${n}` }))
        const other = counted((n) => ({ body: `attacker page ${n}` }))
        const a = await app(
          { path: '/item/x', cache: { ttl: '1m' }, handler: item.handler },
          { path: '/x', cache: { ttl: '1m' }, handler: other.handler },
        )
        for (const host of [
          'victim.example/item',
          'victim.example?',
          'victim.example#',
          'user@victim.example',
          'a b',
        ]) {
          const attack = await a.raw('/x', { headers: { host } })
          // Refused by the framework (@hono/node-server answers 400 to a Host it cannot make a URL of), or bypassed.
          if (attack.status >= 400 && attack.status < 500) continue
          expect(attack.text, host).toMatch(/^attacker page/)
          expectBypass(attack, 'host')
        }
        const real = await a.raw('/item/x', { headers: { host: 'victim.example' } })
        expect(real.text).toBe('real item 1')
        expectStored(real)
        // Host is case-insensitive (RFC 9110 §4.2.3): one entry.
        expectHit(await a.raw('/item/x', { headers: { host: 'VICTIM.example' } }))
        expect(item.calls).toBe(1)
      })

      httpIt('no part of the URL can forge the Range or key part of another key', async () => {
        const route = counted((n, req) => ({ body: `${req.headers['x-user']} ${req.headers.range ?? 'whole'} ${n}` }))
        const a = await app({
          path: '/item',
          cache: { ttl: '1m', key: (req) => req.headers['x-user'] },
          handler: route.handler,
        })
        // The old key was `url#k=<key part>#r=<range>`: these three once shared one entry.
        const forged = await a.raw('/item', { headers: { 'x-user': 'a#r=bytes=0-4' } })
        expect(forged.text).toBe('a#r=bytes=0-4 whole 1')
        const piped = await a.raw('/item', { headers: { 'x-user': 'a|r=bytes=0-4|' } })
        expect(piped.text).toBe('a|r=bytes=0-4| whole 2')
        const ranged = await a.raw('/item', { headers: { 'x-user': 'a', range: 'bytes=0-4' } })
        expect(ranged.text).toBe('a bytes=0-4 3')
        expect(route.calls).toBe(3)
      })

      httpIt(
        'a request-target that is not a path (absolute-form, a fragment) never shares an entry with the path',
        async () => {
          const route = counted((n, req) => ({ body: `${req.headers.range ?? 'whole'} ${n}` }))
          const a = await app({ path: '/doc', cache: { ttl: '1m' }, handler: route.handler })
          await a.raw('/doc', { target: '/doc#r=bytes=0-4' })
          const ranged = await a.raw('/doc', { headers: { range: 'bytes=0-4' } })
          expect(ranged.text).toMatch(/^bytes=0-4 /)
          // Absolute-form: bypassed where the app routes on a path other than the target, or keyed on the path where
          // the framework hands the app that path (hono's URL); either way each request gets its own answer.
          const absolute = await a.raw('/doc', { target: `${a.server.url}/doc?x=1` })
          expect(absolute.text).not.toMatch(/^bytes/)
          expect((await a.raw('/doc?x=1', { headers: { range: 'bytes=0-9' } })).text).toMatch(/^bytes=0-9 /)
        },
      )

      trustProxyIt('behind a trusted proxy the key holds the host the app sees (X-Forwarded-Host)', async () => {
        const route = counted((n, req) => ({ body: `host ${req.host} ${n}` }))
        const a = await appWith({ trustProxy: true }, { path: '/t', cache: { ttl: '1m' }, handler: route.handler })
        const evil = await a.raw('/t', { headers: { host: 'a.example', 'x-forwarded-host': 'evil.example' } })
        expect(evil.text).toBe('host evil.example 1')
        const plain = await a.raw('/t', { headers: { host: 'a.example' } })
        expect(plain.text).toBe('host a.example 2')
        const hit = await a.raw('/t', { headers: { host: 'b.example', 'x-forwarded-host': 'a.example' } })
        expectHit(hit)
        expect(hit.text).toBe('host a.example 2')
        expectBypass(await a.raw('/t', { headers: { host: 'a.example', 'x-forwarded-host': 'a.example/t' } }), 'host')
        expect(route.calls).toBe(3)
      })

      httpIt('ignored query parameters are removed from what the handler sees, URL and parsed query', async () => {
        const route = counted((n, req) => ({ body: `${req.url} ${JSON.stringify(req.query ?? {})} ${n}` }))
        const a = await app({ path: '/r', cache: { ttl: '1m' }, handler: route.handler })
        const first = await a.get('/r?utm_source=%3Cscript%3Ealert(1)%3C%2Fscript%3E&a=1&fbclid=x&utm_medium=y')
        expect(first.text).toBe('/r?a=1 {"a":"1"} 1')
        const hit = await a.get('/r?a=1&gclid=z')
        expectHit(hit)
        expect(hit.text).toBe('/r?a=1 {"a":"1"} 1')
        expect((await a.get('/r?utm_source=only')).text).toBe('/r {} 2')
        expectHit(await a.get('/r'))
        expect(route.calls).toBe(2)
      })

      httpIt('repeated parameters keep their order in the key: ?a=1&a=2 and ?a=2&a=1 are two entries', async () => {
        const route = counted((n, req) => ({ body: `${new URL(req.url, 'http://x').searchParams.get('a')} ${n}` }))
        const a = await app({ path: '/p', cache: { ttl: '1m' }, handler: route.handler })
        expect((await a.get('/p?a=1&a=2')).text).toBe('1 1')
        expect((await a.get('/p?a=2&a=1')).text).toBe('2 2')
        const hit = await a.get('/p?a=1&b=0&a=2')
        expect(hit.text).toBe('1 3')
        expectHit(await a.get('/p?b=0&a=1&a=2'))
        expect(route.calls).toBe(3)
        // One name for the app, two spellings: still in the order sent.
        expect((await a.raw('/p?a=1&%61=2')).text).toBe('1 4')
        expect((await a.raw('/p?%61=2&a=1')).text).toBe('2 5')
        // qs reads '[a]' as 'a' too.
        await a.raw('/p?%5Ba%5D=1&a=2')
        expectNotHit(await a.raw('/p?a=2&%5Ba%5D=1'))
      })

      httpIt('a GET with a body bypasses the cache', async () => {
        const route = counted((n) => ({ body: `answer ${n}` }))
        const a = await app({ path: '/fat', cache: { ttl: '1m' }, handler: route.handler })
        const fat = await a.raw('/fat', { headers: { 'content-type': 'text/plain' }, body: 'q=secret' })
        expectBypass(fat, 'body')
        const plain = await a.get('/fat')
        expect(plain.text).toBe('answer 2')
        expectStored(plain)
        expect((await a.raw('/fat', { headers: { 'content-type': 'text/plain' }, body: 'x' })).text).toBe('answer 3')
      })

      httpIt('a 200 with WWW-Authenticate is not stored', async () => {
        const route = counted((n) => ({ headers: { 'www-authenticate': 'Basic realm="x"' }, body: `page ${n}` }))
        const a = await app({ path: '/challenge', cache: { ttl: '1m' }, handler: route.handler })
        expectNotStored(await a.get('/challenge'), 'www-authenticate')
        expect((await a.get('/challenge')).text).toBe('page 2')
      })

      httpIt(
        'without a ttl, a response that says nothing about caching is not stored (web cache deception)',
        async () => {
          const profile = counted((n, req) => ({ body: `profile of ${req.headers['x-user']} ${n}` }))
          const stated = counted((n) => ({ headers: { 'cache-control': 'max-age=600' }, body: `style ${n}` }))
          const a = await app(
            { path: '/account/profile.css', cache: {}, handler: profile.handler },
            { path: '/site.css', cache: {}, handler: stated.handler },
          )
          const alice = await a.get('/account/profile.css', { headers: { 'x-user': 'alice' } })
          expectNotStored(alice, 'no-freshness')
          expect((await a.get('/account/profile.css', { headers: { 'x-user': 'mallory' } })).text).toBe(
            'profile of mallory 2',
          )
          // What states its freshness is stored, capped at a minute.
          const ttl = expectStored(await a.get('/site.css'))
          expect(ttl).toBeLessThanOrEqual(60)
          expect(ttl).toBeGreaterThanOrEqual(57)
          expectHit(await a.get('/site.css'))
        },
      )

      httpIt('an unsafe request is answered only once its invalidation is done', async () => {
        let version = 1
        const reads = counted(() => ({ body: `v${version}` }))
        const a = await app({
          path: '/doc',
          methods: ['GET', 'POST'],
          cache: { ttl: '1m' },
          handler: (req) => {
            if (req.method !== 'POST') return reads.handler(req)
            version++
            return { body: 'ok' }
          },
        })
        expect((await a.get('/doc')).text).toBe('v1')
        expectHit(await a.get('/doc'))
        // A slow invalidation (a far Redis): the POST's answer must wait for it.
        const invalidate = a.cache.invalidateTags.bind(a.cache)
        a.cache.invalidateTags = async (tags) => {
          await sleep(150)
          return invalidate(tags)
        }
        for (let i = 0; i < 3; i++) {
          const post = await a.get('/doc', { method: 'POST' })
          expect(post.status).toBe(200)
          expect((await a.get('/doc')).text).toBe(`v${version}`)
        }
      })

      httpIt('variants are capped per URL (maxVariants): storing one more drops the oldest', async () => {
        const route = counted((n, req) => ({
          headers: { vary: 'Accept-Language' },
          body: `${req.headers['accept-language']} ${n}`,
        }))
        const a = await app(
          { path: '/v', cache: { ttl: '1m', maxVariants: 3 }, handler: route.handler },
          { path: '/elsewhere', methods: ['POST'], cache: {}, handler: () => ({ body: 'ok' }) },
        )
        const lang = (value: string) => ({ headers: { 'accept-language': value } })
        for (const l of ['l1', 'l2', 'l3', 'l4', 'l5']) {
          expectStored(await a.get('/v', lang(l)))
          // Invalidations of other URLs do not stop the count.
          expect((await a.get('/elsewhere', { method: 'POST' })).status).toBe(200)
        }
        for (const l of ['l3', 'l4', 'l5']) expectHit(await a.get('/v', lang(l)))
        expectNotHit(await a.get('/v', lang('l1')))
        expect(route.calls).toBe(6)
        // l1 came back and l3 (now the oldest) left: the marker is updated just after the answer went out, so a
        // request that comes first may still find l3 (a hit changes nothing; the first miss stores it again).
        expect(await eventually(async () => cacheStatus(await a.get('/v', lang('l3'))).hit === undefined)).toBe(true)
        expectHit(await a.get('/v', lang('l5')))
      })

      httpIt('by default a URL keeps 100 variants, and invalidating it drops every one', async () => {
        const route = counted((n, req) => ({
          headers: { vary: 'Accept-Language' },
          body: `${req.headers['accept-language']} ${n}`,
        }))
        const a = await app({ path: '/many', methods: ['GET', 'POST'], cache: { ttl: '1m' }, handler: route.handler })
        const lang = (i: number) => ({ headers: { 'accept-language': `x-${i}` } })
        for (let i = 0; i < 102; i++) await a.get('/many', lang(i))
        expect(await eventually(async () => cacheStatus(await a.get('/many', lang(0))).hit === undefined)).toBe(true)
        expectHit(await a.get('/many', lang(101)))
        expect((await a.get('/many', { method: 'POST' })).status).toBe(200)
        expectNotHit(await a.get('/many', lang(101)))
      })

      httpIt('stored bodies are counted in the memory tier: its bytes cover them exactly', async () => {
        const size = 64 * 1024
        const body = new Uint8Array(randomBytes(size))
        const a = await app({ path: '/b', cache: { ttl: '1m' }, handler: () => ({ body }) })
        for (let i = 0; i < 8; i++) expectStored(await a.get(`/b?i=${i}`))
        // With a remote tier, the last copy may reach the memory tier just after its answer went out.
        await eventually(() => a.cache.stats().tiers[0]!.bytes >= 8 * size)
        const memory = a.cache.stats().tiers[0]!
        expect(memory.bytes).toBeGreaterThanOrEqual(8 * size)
        // Headers and bookkeeping on top, never a shared buffer slab or a second copy of a body.
        expect(memory.bytes).toBeLessThan(8 * size + 8 * 4096)
      })

      httpIt('malformed Cache-Control never crashes and never stores what it should not', async () => {
        const cases: [string, boolean][] = [
          ['max-age=abc', false],
          ['max-age=-5', false],
          ['max-age=60, max-age=0', false],
          ['max-age=', false],
          ['"max-age=60"', false],
          ['private="set-cookie, x", max-age=60', false],
          ['no-store,,,,', false],
          [',,, max-age=60 ,;', false],
          ['MAX-AGE=60', true],
          ['max-age=99999999999999999999', true],
          ['max-age="60"', true],
        ]
        const route = counted((n, req) => ({
          headers: { 'cache-control': cases[Number(new URL(req.url, 'http://x').searchParams.get('c'))]![0] },
          body: `body ${n}`,
        }))
        const a = await app({ path: '/cc', cache: {}, handler: route.handler })
        for (const [i, [value, storable]] of cases.entries()) {
          const first = await a.get(`/cc?c=${i}`)
          expect(first.status, value).toBe(200)
          expect(first.text, value).toMatch(/^body \d+$/)
          const again = await a.get(`/cc?c=${i}`)
          if (storable) {
            expectHit(again)
            expect(again.text, value).toBe(first.text)
          } else {
            expectNotHit(again)
            expect(again.text, value).not.toBe(first.text)
          }
        }
      })

      httpIt('malformed Vary never crashes and is never stored', async () => {
        const values = ['Accept-Language, *', 'accept language', 'x-a@b', 'Accept-Language,"Cookie"']
        const route = counted((n, req) => ({
          headers: { vary: values[Number(new URL(req.url, 'http://x').searchParams.get('v'))]! },
          body: `body ${n}`,
        }))
        const a = await app({ path: '/vary', cache: { ttl: '1m' }, handler: route.handler })
        for (const [i, value] of values.entries()) {
          const first = await a.get(`/vary?v=${i}`)
          expect(first.status, value).toBe(200)
          expectNotStored(first, 'vary')
          expectNotHit(await a.get(`/vary?v=${i}`))
        }
      })

      httpIt('over-long request headers, URLs and response headers work and are keyed exactly', async () => {
        const big = 'x'.repeat(6000)
        const route = counted((n, req) => ({
          headers: { vary: 'Accept-Language', 'x-big': big },
          body: `${req.headers['accept-language']?.length} ${new URL(req.url, 'http://x').searchParams.get('q')?.length} ${n}`,
        }))
        const a = await app({ path: '/long', cache: { ttl: '1m' }, handler: route.handler })
        const language = (c: string) => ({ headers: { 'accept-language': c.repeat(4000) } })
        const first = await a.get(`/long?q=${big}`, language('a'))
        expect(first.text).toBe('4000 6000 1')
        const hit = await a.get(`/long?q=${big}`, language('a'))
        expectHit(hit)
        expect(hit.headers.get('x-big')).toBe(big)
        expect((await a.get(`/long?q=${big}`, language('b'))).text).toBe('4000 6000 2')
        expect((await a.get(`/long?q=${big}y`, language('a'))).text).toBe('4000 6001 3')
      })
    })
  })
}
