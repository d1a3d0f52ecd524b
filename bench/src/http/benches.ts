/**
 * P1–P5: the HTTP adapters under load (issue 5). Each contender is one route of one app; the apps are in app.ts,
 * the runner in load.ts.
 */
import type { ThroughputResult } from '../harness.js'
import { type Expect, type HttpContender, type HttpOptions, runHttp } from './load.js'
import type { AppName, Route } from './protocol.js'

const HIT: Expect = { cacheStatus: 'hit', servedBy: 'cache' }
const PLAIN: Expect = { cacheStatus: 'none', servedBy: 'handler' }
const MISS: Expect = { cacheStatus: 'miss', servedBy: 'handler' }

function contender(name: string, app: AppName, route: Route, expect: Expect): HttpContender {
  return { name, kind: expect === PLAIN ? 'anchor' : 'ours', app, path: `/${route}`, route, expect }
}

const FRAMEWORKS = ['express', 'fastify', 'hono'] as const
const TTL_NOTE = 'cached routes: a memory-only createCache(), ttl 1h, so nothing expires during the run'

/** P1: a cached hit against the same framework's plain hello-world route, for express, fastify and hono. */
export function p1(opts: HttpOptions): Promise<ThroughputResult> {
  return runHttp(
    {
      id: 'P1',
      title: 'cached-route hit vs the same framework\'s plain hello-world route (GET /hello, {"hello":"world"})',
      contenders: FRAMEWORKS.flatMap((f) => [
        contender(`${f} cached hit`, `${f}-cache`, 'hello', HIT),
        contender(`${f} plain`, f, 'hello', PLAIN),
      ]),
      pairs: FRAMEWORKS.map((f) => ({ ours: `${f} cached hit`, anchor: `${f} plain`, target: 0.9 })),
      notes: [
        'cached: express `app.get(path, cacheResponse(cache, { ttl }), handler)`, fastify `register(fastifyCache, ' +
          '{ cache, ttl })` + route `config: { cache: true }`, hono `app.get(path, cacheResponse(cache, { ttl }), ' +
          'handler)`; plain: the same app without the middleware or the plugin, in a process of its own',
        TTL_NOTE,
      ],
    },
    opts,
  )
}

/** P2: a cached hit on a ~50 KB JSON route against the same route uncached, and against plain hello-world. */
export function p2(opts: HttpOptions): Promise<ThroughputResult> {
  return runHttp(
    {
      id: 'P2',
      title: 'express: cached hit on a ~50 KB JSON route vs the same route uncached, and vs plain hello-world',
      contenders: [
        contender('express /big cached hit', 'express-cache', 'big', HIT),
        contender('express /big uncached', 'express', 'big', PLAIN),
        contender('express /hello plain', 'express', 'hello', PLAIN),
      ],
      pairs: [
        { ours: 'express /big cached hit', anchor: 'express /big uncached' },
        { ours: 'express /big cached hit', anchor: 'express /hello plain', target: 0.8 },
      ],
      notes: [
        '/big: 280 records serialised by `res.json` on every uncached call; a hit sends the stored bytes',
        'express only, to keep the whole HTTP set within ~3 minutes',
        TTL_NOTE,
      ],
    },
    opts,
  )
}

/** P3: @cache/express hit against apicache hit, same route, same TTL. */
export function p3(opts: HttpOptions): Promise<ThroughputResult> {
  return runHttp(
    {
      id: 'P3',
      title: 'express: @cache/express hit vs apicache hit (GET /hello, ttl 1 h both)',
      contenders: [
        contender('@cache/express hit', 'express-cache', 'hello', HIT),
        // apicache sends no Cache-Status; its hits show as handler calls that did not happen.
        {
          ...contender('apicache hit', 'express-apicache', 'hello', HIT),
          kind: 'anchor',
          expect: { cacheStatus: 'none', servedBy: 'cache' },
        },
      ],
      pairs: [{ ours: '@cache/express hit', anchor: 'apicache hit', target: 1.5 }],
      notes: [
        "apicache 1.6 `app.get(path, apicache.middleware('1 hour'), handler)` with its default memory store; " +
          "ours `cacheResponse(createCache(), { ttl: '1h' })`",
      ],
    },
    opts,
  )
}

/** P4: the miss path (middleware present, the route answers `no-store`) against no middleware. */
export function p4(opts: HttpOptions): Promise<ThroughputResult> {
  return runHttp(
    {
      id: 'P4',
      title: 'miss path: middleware present, route answers Cache-Control: no-store, vs no middleware (GET /nostore)',
      contenders: FRAMEWORKS.flatMap((f) => [
        contender(`${f} + cache, no-store`, `${f}-cache`, 'nostore', MISS),
        contender(`${f} no middleware`, f, 'nostore', PLAIN),
      ]),
      pairs: FRAMEWORKS.map((f) => ({ ours: `${f} + cache, no-store`, anchor: `${f} no middleware`, target: 0.95 })),
      notes: [
        'every request goes through the engine and to the handler; after three answers that cannot be stored the ' +
          'URL is hit-for-pass (no lookup, no coalescing, the answer not watched) and is judged again every ' +
          'min(ttl, 10 s); nothing is stored, every answer carries `Cache-Status: cache; fwd=miss; …` (checked)',
      ],
    },
    opts,
  )
}

/** P5: a cached tRPC query against the plain procedure, standalone adapter. */
export function p5(opts: HttpOptions): Promise<ThroughputResult> {
  const path = `/hello?input=${encodeURIComponent(JSON.stringify({ id: 1 }))}`
  const expect = (servedBy: Expect['servedBy']): Expect => ({ cacheStatus: 'none', servedBy })
  return runHttp(
    {
      id: 'P5',
      title: 'tRPC standalone: cached query vs plain procedure (GET /hello?input={"id":1})',
      contenders: [
        { name: 'trpc cached query', kind: 'ours', app: 'trpc-cache', path, route: 'hello', expect: expect('cache') },
        { name: 'trpc plain query', kind: 'anchor', app: 'trpc', path, route: 'hello', expect: expect('handler') },
      ],
      pairs: [{ ours: 'trpc cached query', anchor: 'trpc plain query' }],
      notes: [
        "cached: `t.procedure.use(cacheMiddleware(cache, { ttl: '1h' })).input(…).query(…)`; the resolver is trivial, " +
          'so this is the cost of the middleware (key hash of path + input, getOrSet hit) against calling it',
        'tRPC answers carry no Cache-Status: a hit is checked as a resolver that did not run',
      ],
    },
    opts,
  )
}
