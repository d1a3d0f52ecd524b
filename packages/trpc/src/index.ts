/**
 * `@cache/trpc`: caches tRPC query procedures in a `@cache/core` cache, keyed by procedure path + input (+ an optional
 * per-user scope), and invalidates them from mutations with typed helpers.
 */
import {
  type Cache,
  CacheError,
  type Duration,
  escapeKeyPart,
  type GetOrSetOptions,
  isCacheError,
  type LockOptions,
  parseDuration,
  stableHash,
} from '@cache/core'
import type {
  AnyTRPCProcedure,
  AnyTRPCRouter,
  inferProcedureInput,
  TRPCMiddlewareFunction,
  TRPCRouterRecord,
} from '@trpc/server'

/** What `scope` and `tags` are told about the call. */
export interface CacheCall<TCtx> {
  readonly ctx: TCtx
  /** The procedure's path, such as `'todo.list'`. */
  readonly path: string
  /** The input as the client sent it (after the transformer, before any validator): what the key is made of. */
  readonly input: unknown
}

/** How a procedure caches; every field is optional. */
export interface TrpcCacheOptions<TCtx = unknown> {
  /** How long an output stays fresh. @default '1m' */
  ttl?: Duration | undefined
  /** How long an expired output is still returned at once while one background call refreshes it. @default 0 */
  staleWhileRevalidate?: Duration | undefined
  /**
   * How long an expired output is returned when refreshing it fails (the resolver throws). Without
   * `staleWhileRevalidate`, the caller waits for the refresh and gets the stale output only if it fails. @default 0
   */
  staleIfError?: Duration | undefined
  /**
   * Whose output it is: a string (a user or tenant id) becomes part of the key, so each scope gets its own copy;
   * `undefined` makes this call bypass the cache. Without `scope` an output is shared by every caller, whatever the
   * context: give one for anything per-user. @default undefined (shared)
   */
  scope?: ((call: CacheCall<TCtx>) => string | undefined) | undefined
  /** Tags of the cached output, for `cache.invalidateTags` / `invalidator.tags`. Taken verbatim. @default none */
  tags?: ((call: CacheCall<TCtx> & { readonly data: unknown }) => readonly string[]) | undefined
  /** Cross-process coalescing of misses (see `GetOrSetOptions.lock`). @default the cache's `lock` */
  lock?: boolean | LockOptions | undefined
  /** Prefix of every key and automatic tag; an invalidator must use the same. @default 'trpc:' */
  keyPrefix?: string | undefined
}

type Result = Awaited<ReturnType<TRPCMiddlewareFunction<object, unknown, object, object, unknown>>>
// tRPC brands results with this marker at the type level only; a result made here must carry it too.
const marker = 'middlewareMarker' as Result['marker']

/** The key of one output; exported for tools that want to read or write entries themselves. */
export function trpcCacheKey(path: string, input: unknown, scope?: string, keyPrefix = 'trpc:'): string {
  const base = `${keyPrefix}${escapeKeyPart(path)}:${stableHash(exact(input))}`
  return scope === undefined ? base : `${base}:${escapeKeyPart(scope)}`
}

/**
 * The input with what `stableHash` would fold together made distinct, as tRPC's transformers keep it apart: -0 from 0,
 * and a property set to undefined from a missing one. Plain objects and arrays are copied; anything else is kept.
 */
function exact(value: unknown): unknown {
  if (Object.is(value, -0)) return { '\u0000-0': true }
  if (Array.isArray(value)) return value.map(exact)
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {}
    for (const [name, item] of Object.entries(value))
      out[name] = item === undefined ? { '\u0000undefined': true } : exact(item)
    return out
  }
  return value
}

function pathTag(prefix: string, path: string, scope?: string): string {
  const tag = `${prefix}path:${escapeKeyPart(path)}`
  return scope === undefined ? tag : `${tag}:${escapeKeyPart(scope)}`
}

const scopeTag = (prefix: string, scope: string) => `${prefix}scope:${escapeKeyPart(scope)}`

function checkPrefix(prefix: unknown): string {
  if (prefix === undefined) return 'trpc:'
  if (typeof prefix === 'string' && prefix.length > 0) return prefix
  throw new CacheError('E_INVALID_OPTION', 'keyPrefix must be a non-empty string')
}

function checkFunction(name: string, fn: unknown): void {
  if (fn !== undefined && typeof fn !== 'function')
    throw new CacheError('E_INVALID_OPTION', `${name} must be a function`)
}

/** An async iterable or an observable: outputs that can be consumed once. */
function isStream(data: unknown): boolean {
  if (typeof data !== 'object' || data === null) return false
  const candidate = data as { [Symbol.asyncIterator]?: unknown; subscribe?: unknown }
  return typeof candidate[Symbol.asyncIterator] === 'function' || typeof candidate.subscribe === 'function'
}

/**
 * A middleware that caches a query procedure's output in `cache`: key = `keyPrefix` + path + the stable hash of the
 * input (+ `scope`). Concurrent identical calls run the resolver once; errors are never cached and reach the caller
 * as the resolver threw them. Mutations and subscriptions pass straight through. Throws `E_INVALID_OPTION` for bad
 * options.
 *
 * @example
 * const cached = t.procedure.use(cacheMiddleware(cache, { ttl: '30s', scope: ({ ctx }) => ctx.user?.id }))
 * const router = t.router({ todos: cached.input(z.object({ page: z.number() })).query(({ input }) => db.todos(input)) })
 */
export function cacheMiddleware<TCtx = unknown>(
  cache: Cache,
  options: TrpcCacheOptions<TCtx> = {},
): TRPCMiddlewareFunction<TCtx, unknown, object, object, unknown> {
  const prefix = checkPrefix(options.keyPrefix)
  checkFunction('scope', options.scope)
  checkFunction('tags', options.tags)
  const { scope: scopeOf, tags: tagsOf } = options
  const swr = parseDuration(options.staleWhileRevalidate ?? 0, 'staleWhileRevalidate')
  const sie = parseDuration(options.staleIfError ?? 0, 'staleIfError')
  const ttl = options.ttl ?? '1m'
  parseDuration(ttl, 'ttl')
  const plan: GetOrSetOptions = {
    ttl,
    grace: Math.max(swr, sie),
    // Past the stale-while-revalidate window only stale-if-error is left: wait for the resolver, stale on failure.
    timeout: swr > 0 || sie === 0 ? 0 : 2 ** 31 - 1,
    ...(options.lock === undefined ? {} : { lock: options.lock }),
  }

  return async (opts) => {
    if (opts.type !== 'query') return opts.next()
    const call = { ctx: opts.ctx as TCtx, path: opts.path, input: await opts.getRawInput() }
    const scope = scopeOf?.(call)
    if (scopeOf !== undefined && scope === undefined) return opts.next()
    let key: string
    try {
      key = trpcCacheKey(call.path, call.input, scope, prefix)
    } catch {
      return opts.next() // an input stableHash cannot hash (a Map, a class instance): served uncached
    }
    let ran = false
    try {
      const data = await cache.getOrSet(
        key,
        async (load) => {
          ran = true
          const result = await opts.next()
          if (!result.ok) throw result.error
          // A streamed output can be read once: never cached, never shared.
          if (isStream(result.data)) load.skip()
          else {
            load.tags.push(pathTag(prefix, call.path))
            if (scope !== undefined) load.tags.push(pathTag(prefix, call.path, scope), scopeTag(prefix, scope))
            if (tagsOf !== undefined) load.tags.push(...tagsOf({ ...call, data: result.data }))
          }
          return result.data
        },
        plan,
      )
      if (!ran && isStream(data)) return opts.next()
      return { ok: true, data, marker }
    } catch (err) {
      // The resolver's own error (a TRPCError, code and all), not the cache's wrapper.
      if (isCacheError(err, 'E_LOADER_ERROR')) throw err.cause
      // The cache failed before the resolver ran: answer without it.
      if (!ran && isCacheError(err) && !isCacheError(err, 'E_LOADER_TIMEOUT')) return opts.next()
      throw err
    }
  }
}

type IsAny<T> = 0 extends 1 & T ? true : false
type RecordOf<T> = T extends AnyTRPCRouter ? T['_def']['record'] : T

/** Every query procedure of a router record as `{ path, input }`, paths dotted like tRPC's. */
type QueryEntries<TRecord, TPrefix extends string = ''> = {
  [K in keyof TRecord & string]: TRecord[K] extends AnyTRPCProcedure
    ? TRecord[K]['_def']['type'] extends 'query'
      ? { path: `${TPrefix}${K}`; input: inferProcedureInput<TRecord[K]> }
      : never
    : RecordOf<TRecord[K]> extends TRPCRouterRecord
      ? QueryEntries<RecordOf<TRecord[K]>, `${TPrefix}${K}.`>
      : never
}[keyof TRecord & string]

type Entries<TRouter extends AnyTRPCRouter> =
  IsAny<TRouter['_def']['record']> extends true
    ? { path: string; input: unknown }
    : QueryEntries<TRouter['_def']['record']>

/** The dotted paths of a router's query procedures (`string` for `AnyTRPCRouter`). */
export type QueryPath<TRouter extends AnyTRPCRouter> =
  Entries<TRouter> extends infer E ? (E extends { path: infer P extends string } ? P : never) : never
/** The input a query procedure takes, as the client sends it. */
export type QueryInput<TRouter extends AnyTRPCRouter, TPath extends string> =
  Entries<TRouter> extends infer E ? (E extends { path: TPath; input: infer I } ? I : never) : never

/** Which copy: the `scope` the middleware gave the entries (a user id, …). */
export interface InvalidateScope {
  /** @default undefined (the entries cached without a scope) for `query`; every scope for `path` */
  scope?: string | undefined
}

/** Invalidates what `cacheMiddleware` cached; every method resolves once every tier (and the bus) has been told. */
export interface CacheInvalidator<TRouter extends AnyTRPCRouter> {
  /** Drops one procedure's output for one input; resolves to whether it was cached. */
  query<P extends QueryPath<TRouter>>(
    path: P,
    input: QueryInput<TRouter, P>,
    options?: InvalidateScope,
  ): Promise<boolean>
  /** Drops a procedure's outputs for every input (of one scope when given); resolves to how many. */
  path(path: QueryPath<TRouter>, options?: InvalidateScope): Promise<number>
  /** Drops every output cached under `scope`, whatever the procedure. */
  scope(scope: string): Promise<number>
  /** Drops every output carrying one of `tags` (given by the middleware's `tags`). */
  tags(tags: readonly string[]): Promise<number>
}

/**
 * Typed invalidation of `cacheMiddleware`'s entries, for mutation resolvers or any other code: paths and inputs are
 * checked against the router (only query paths are accepted). It does not need the request's context. Give the
 * same `keyPrefix` as the middleware. Throws `E_INVALID_OPTION` for a bad prefix.
 *
 * @example
 * const invalidate = cacheInvalidator<AppRouter>(cache)
 * // in a mutation resolver:
 * await invalidate.query('todo.byId', { id: input.id })
 * await invalidate.path('todo.list', { scope: ctx.user.id })
 */
export function cacheInvalidator<TRouter extends AnyTRPCRouter = AnyTRPCRouter>(
  cache: Cache,
  options: { keyPrefix?: string | undefined } = {},
): CacheInvalidator<TRouter> {
  const prefix = checkPrefix(options.keyPrefix)
  return {
    query: (path, input, opts) => cache.delete(trpcCacheKey(path as string, input, opts?.scope, prefix)),
    path: (path, opts) => cache.invalidateTags([pathTag(prefix, path as string, opts?.scope)]),
    scope: (scope) => cache.invalidateTags([scopeTag(prefix, scope)]),
    tags: (tags) => cache.invalidateTags(tags),
  }
}
