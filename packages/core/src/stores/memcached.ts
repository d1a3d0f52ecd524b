// memcachedStore: a Store over memjs (binary protocol). Memcached cannot scan or list, so `clear(prefix)` and tags
// work by versioning: generation numbers kept in memcached itself are part of every stored key (namespaces) or of
// every stored entry (tags); bumping a generation makes what was written under the old one unreachable, and
// memcached's LRU reclaims it.

import { Buffer } from 'node:buffer'
import { createHash, randomBytes } from 'node:crypto'
import type { Client, ClientOptions, ServerOptions } from 'memjs'
import * as memjs from 'memjs'
import { type Codec, defaultCodec } from '../codec.js'
import { type Duration, parseDuration } from '../duration.js'
import { CacheError, describe, isCacheError } from '../errors.js'
import type { Store, StoredEntry } from '../types.js'
import { parseCommandTimeout, withDeadline } from './deadline.js'

/** A memjs client as `memjs.Client.create()` returns it (values in as string/Buffer, out as Buffer). */
export type MemcachedClient = Client<string | Buffer, Buffer | null>

interface MemcachedStoreCommonOptions {
  /** Turns entries into bytes and back. Default `defaultCodec` (MessagePack). */
  codec?: Codec
  /**
   * Deadline of every store call (a `get` is one call, even though it sends several commands). Past it the call
   * rejects with `E_STORE_UNAVAILABLE`. Default `'500ms'`.
   */
  commandTimeout?: Duration
  /**
   * Largest encoded entry accepted, in bytes; a bigger one is refused with `E_VALUE_TOO_LARGE` without a round trip.
   * Default 1 MiB minus 1 KiB (memcached's default item size `-I 1m` counts the key and item header too). A server
   * with a lower `-I` refuses bigger items itself; that refusal is reported as `E_VALUE_TOO_LARGE` as well.
   */
  maxValueBytes?: number
  /**
   * How long generation numbers (namespace and tag versions) read from memcached are reused in this process.
   * Default 0: read afresh by every call (a call reads each one once). With a positive value, a `clear()` or
   * `deleteTagged()` made by another process is seen here only after up to this long (this process' own are seen
   * at once).
   */
  generationCacheTime?: Duration
}

export interface MemcachedStoreClientOptions extends MemcachedStoreCommonOptions {
  /** Your memjs client. The store never closes it. */
  client: MemcachedClient
  servers?: never
  options?: never
}

export interface MemcachedStoreServersOptions extends MemcachedStoreCommonOptions {
  /** `'host:port'`, a comma-separated list, or an array; the store creates the client and `close()` closes it. */
  servers: string | readonly string[]
  /** memjs options for the client the store creates. Default: no retries, a silent logger, `timeout` = deadline. */
  options?: ClientOptions & ServerOptions
  client?: never
}

export type MemcachedStoreOptions = MemcachedStoreClientOptions | MemcachedStoreServersOptions

/** Memcached's longest key, in bytes. */
export const MEMCACHED_MAX_KEY_BYTES = 250
/** Relative expiries above this many seconds are read by memcached as unix timestamps. */
const MAX_RELATIVE_SECONDS = 2_592_000
/** The largest expiry memcached's 32-bit field holds (a unix time in 2106). */
const MAX_EXPIRY = 0xffff_ffff

/** A generation: 64 random bits, base64url (no ':', '.', '#' or '|', which the key layout uses). */
function newGeneration(): string {
  return randomBytes(8).toString('base64url')
}
const DEFAULT_MAX_VALUE_BYTES = 1024 * 1024 - 1024
const HASH_PREFIX = 'h:'

// Reserved keys: none of them can equal a data key, which starts with the global generation (digits).
const GLOBAL_GEN = '@g'
const childrenGen = (path: string): string => `@c:${path}`
const ownGen = (path: string): string => `@o:${path}`
const tagGen = (tag: string): string => `@t:${tag}`

// Spaces, C0/C1 control characters and DEL: memcached's text protocol cannot carry them in a key.
// biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
const UNSAFE_KEY = /[\u0000-\u0020\u007f-\u009f]/
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
const UTF16_HASH_PREFIX = 'u:'

/**
 * The key memcached sees for `key`: itself when it is at most 250 bytes of UTF-8 without spaces or control
 * characters, else `'h:'` + the SHA-256 of the whole key (base64url, 45 bytes in all).
 */
export function memcachedKey(key: string): string {
  // UTF-8 turns every lone surrogate into U+FFFD, so such keys would collide: hash their UTF-16 code units instead.
  if (LONE_SURROGATE.test(key)) {
    return UTF16_HASH_PREFIX + createHash('sha256').update(Buffer.from(key, 'utf16le')).digest('base64url')
  }
  if (key.length <= MEMCACHED_MAX_KEY_BYTES / 3 || Buffer.byteLength(key) <= MEMCACHED_MAX_KEY_BYTES) {
    if (!UNSAFE_KEY.test(key)) return key
  }
  return HASH_PREFIX + createHash('sha256').update(key).digest('base64url')
}

/** Where a store key lives: the generations it depends on and how its memcached key is built from them. */
interface Layout {
  /** Reserved keys of the generations, in chain order (global first). */
  gens: string[]
  /** The namespace levels (empty for a key without ':'). */
  levels: string[]
  /** The key after the namespace (the whole key when there is no ':'). */
  rest: string
}

function layoutOf(key: string): Layout {
  const colon = key.indexOf(':')
  if (colon < 0) return { gens: [GLOBAL_GEN], levels: [], rest: key }
  const levels = key.slice(0, colon).split('.')
  const gens = [GLOBAL_GEN]
  let path = ''
  for (let i = 0; i < levels.length; i++) {
    path = i === 0 ? levels[0]! : `${path}.${levels[i]}`
    gens.push(i === levels.length - 1 ? ownGen(path) : childrenGen(path))
  }
  return { gens, levels, rest: key.slice(colon + 1) }
}

function physicalOf(layout: Layout, gens: ReadonlyMap<string, string>): string {
  const g = gens.get(GLOBAL_GEN)!
  if (layout.levels.length === 0) return memcachedKey(`${g}|${layout.rest}`)
  let chain = ''
  for (let i = 0; i < layout.levels.length; i++) {
    chain += `${i === 0 ? '' : '.'}${layout.levels[i]}#${gens.get(layout.gens[i + 1]!)!}`
  }
  return memcachedKey(`${g}|${chain}:${layout.rest}`)
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

function unavailable(op: string, err: unknown): CacheError {
  if (isCacheError(err)) return err
  const message = err instanceof Error ? err.message : String(err)
  return new CacheError('E_STORE_UNAVAILABLE', `memcachedStore.${op}: ${message}`, { cause: err })
}

const TOO_LARGE = /value too large/i

/** The encoded tuple: [createdAt, freshUntil, staleUntil, cost | null, [tag, generation][] | null, value]. */
type Tuple = [number, number, number, number | null, [string, string][] | null, unknown]

function isTuple(x: unknown): x is Tuple {
  if (!Array.isArray(x) || x.length !== 6) return false
  const [c, f, s, cost, tags] = x as unknown[]
  if (typeof c !== 'number' || typeof f !== 'number' || typeof s !== 'number') return false
  if (cost !== null && typeof cost !== 'number') return false
  if (tags === null) return true
  return (
    Array.isArray(tags) &&
    tags.every((t) => Array.isArray(t) && t.length === 2 && typeof t[0] === 'string' && typeof t[1] === 'string')
  )
}

/**
 * A `Store` over memcached (memjs). Several servers are allowed (memjs spreads keys over them).
 *
 * - Keys over 250 bytes of UTF-8, or with spaces or control characters, are stored under `'h:'` + their SHA-256.
 * - TTLs are whole seconds, rounded up plus one second (memcached's clock ticks in seconds, so an item may otherwise
 *   expire up to a second early); over 30 days they are sent as unix times. Reads never return an entry past its
 *   `staleUntil`, whatever memcached still holds.
 * - `clear(prefix)` works on namespace boundaries only (`'ns:'`, `'ns.'`, or none): see `clear`.
 * - `deleteTagged` invalidates through tag generations and resolves to 0 (memcached cannot count the entries).
 *
 * @example
 * const store = memcachedStore({ servers: 'localhost:11211' })
 * const cache = createCache({ store, namespace: 'app' })
 */
export function memcachedStore(options: MemcachedStoreOptions): MemcachedStore {
  return new MemcachedStore(options)
}

export class MemcachedStore implements Store {
  readonly name = 'memcached'
  /** The memjs client in use (yours, or the one the store created). */
  readonly client: MemcachedClient
  private readonly owned: boolean
  private readonly codec: Codec
  private readonly timeoutMs: number
  private readonly maxValueBytes: number
  private readonly genCacheMs: number
  private readonly genCache = new Map<string, { value: string; until: number }>()
  private closed = false

  constructor(options: MemcachedStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new CacheError('E_INVALID_OPTION', `memcachedStore: options must be an object (got ${describe(options)})`)
    }
    this.timeoutMs = parseCommandTimeout(options.commandTimeout, 'memcachedStore', '500ms')
    this.genCacheMs = parseDuration(options.generationCacheTime ?? 0, 'memcachedStore: generationCacheTime')
    const max = options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES
    if (!Number.isSafeInteger(max) || max <= 0) {
      throw new CacheError(
        'E_INVALID_OPTION',
        `memcachedStore: maxValueBytes must be a positive integer (got ${describe(max)})`,
      )
    }
    this.maxValueBytes = max
    this.codec = options.codec ?? defaultCodec
    if (options.client !== undefined) {
      if (typeof options.client?.get !== 'function') {
        throw new CacheError('E_INVALID_OPTION', 'memcachedStore: client must be a memjs Client')
      }
      this.client = options.client
      this.owned = false
    } else if (options.servers !== undefined) {
      const servers = typeof options.servers === 'string' ? options.servers : options.servers.join(',')
      if (servers.trim() === '') throw new CacheError('E_INVALID_OPTION', 'memcachedStore: servers is empty')
      this.client = memjs.Client.create(servers, {
        retries: 1, // memjs counts attempts: one, the deadline is ours
        timeout: this.timeoutMs / 1000,
        logger: { log: () => {} },
        ...options.options,
      }) as MemcachedClient
      this.owned = true
    } else {
      throw new CacheError('E_INVALID_OPTION', 'memcachedStore: pass { client } or { servers }')
    }
  }

  async get(key: string): Promise<StoredEntry | undefined> {
    return this.run('get', () => this.readMany([key]).then((r) => r[0]))
  }

  async getMany(keys: readonly string[]): Promise<(StoredEntry | undefined)[]> {
    if (keys.length === 0) return []
    return this.run('getMany', () => this.readMany(keys))
  }

  async set(key: string, entry: StoredEntry): Promise<void> {
    return this.run('set', () => this.writeMany([[key, entry]]))
  }

  async setMany(entries: readonly (readonly [string, StoredEntry])[]): Promise<void> {
    if (entries.length === 0) return
    return this.run('setMany', () => this.writeMany(entries))
  }

  async delete(key: string): Promise<boolean> {
    return this.run('delete', async () => (await this.removeMany([key])) > 0)
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return 0
    return this.run('deleteMany', () => this.removeMany(keys))
  }

  /**
   * Invalidates every entry carrying one of the tags, in every process sharing the servers, by bumping each tag's
   * generation; entries written before are misses from then on (and deleted when next read). Memcached cannot list
   * them, so the count is unknown: resolves to 0.
   */
  async deleteTagged(tags: readonly string[]): Promise<number> {
    if (tags.length === 0) return 0
    return this.run('deleteTagged', async () => {
      await Promise.all([...new Set(tags)].map((t) => this.bump(tagGen(t))))
      return 0
    })
  }

  /**
   * Memcached cannot scan, so clearing bumps a generation instead of deleting keys (the old ones become unreachable
   * and age out). Supported prefixes are whole namespace boundaries, where a key's namespace is its part before the
   * first ':' and '.' separates nested levels:
   * - none (or `''`): everything this store wrote, in every namespace;
   * - `'a.b:'`: the keys of namespace `a.b` (not those of its children);
   * - `'a.b.'`: the keys of every child namespace of `a.b` (`a.b.c:…`, `a.b.c.d:…`), not `a.b`'s own.
   * Any other prefix (`'ap'`, `'a:users:'`) rejects with `E_UNSUPPORTED`. Keys without ':' are cleared only by
   * `clear()` without a prefix.
   */
  async clear(prefix?: string): Promise<void> {
    let gen: string
    if (prefix === undefined || prefix === '') gen = GLOBAL_GEN
    else if (typeof prefix !== 'string') {
      throw new CacheError('E_INVALID_VALUE', `memcachedStore.clear: prefix must be a string (got ${describe(prefix)})`)
    } else if (prefix.endsWith(':') && prefix.indexOf(':') === prefix.length - 1) gen = ownGen(prefix.slice(0, -1))
    else if (prefix.endsWith('.') && !prefix.includes(':')) gen = childrenGen(prefix.slice(0, -1))
    else {
      throw new CacheError(
        'E_UNSUPPORTED',
        `memcachedStore.clear: memcached cannot scan keys; only a whole namespace ('ns:'), its children ('ns.') or everything can be cleared (got ${describe(prefix)})`,
      )
    }
    return this.run('clear', () => this.bump(gen))
  }

  /** Closes the client when the store created it; a client you passed in stays open. Later calls get `E_CLOSED`. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.genCache.clear()
    if (this.owned) this.client.close()
  }

  /** The memcached key `key` is stored under right now (it changes when its namespace is cleared). @internal */
  async physicalKey(key: string): Promise<string> {
    return this.run('physicalKey', async () => {
      const layout = layoutOf(key)
      return physicalOf(layout, await this.generations(layout.gens))
    })
  }

  // ---- internals ----

  /** Runs one store call under the deadline; every failure becomes a CacheError. */
  private run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new CacheError('E_CLOSED', `memcachedStore.${op}: the store is closed`))
    let work: Promise<T>
    try {
      work = fn()
    } catch (err) {
      work = Promise.reject(err)
    }
    return withDeadline(
      work,
      this.timeoutMs,
      () =>
        new CacheError(
          'E_STORE_UNAVAILABLE',
          `memcachedStore.${op}: no answer from memcached within ${this.timeoutMs} ms`,
          {
            cause: new Error('command timeout'),
          },
        ),
      (err) => unavailable(op, err),
    )
  }

  /** Current values of the generation keys (each read once; missing ones are created). */
  private async generations(keys: readonly string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>()
    const now = this.genCacheMs > 0 ? Date.now() : 0
    const wanted: string[] = []
    for (const k of keys) {
      if (out.has(k) || wanted.includes(k)) continue
      const cached = this.genCacheMs > 0 ? this.genCache.get(k) : undefined
      if (cached !== undefined && cached.until > now) out.set(k, cached.value)
      else wanted.push(k)
    }
    if (wanted.length === 0) return out
    const values = await Promise.all(wanted.map((k) => this.readGen(k)))
    for (const [i, k] of wanted.entries()) {
      out.set(k, values[i]!)
      if (this.genCacheMs > 0) this.genCache.set(k, { value: values[i]!, until: now + this.genCacheMs })
    }
    return out
  }

  private async readGen(key: string): Promise<string> {
    const wire = memcachedKey(key)
    for (let attempt = 0; attempt < 3; attempt++) {
      const { value } = await this.client.get(wire)
      if (value !== null) return value.toString('latin1').trim()
      // First use (or evicted): a fresh random token, never one it held before (only equality is ever compared).
      // `add` loses to a concurrent creator; then read theirs.
      const initial = newGeneration()
      if (await this.client.add(wire, initial, { expires: 0 })) return initial
    }
    throw new CacheError('E_STORE_UNAVAILABLE', `memcachedStore: could not read generation ${describe(key)}`)
  }

  /**
   * Moves a generation on, across every process sharing the server: a fresh random token replaces it. Two bumps at
   * once both leave a token neither reader saw before, and an evicted generation comes back as yet another token,
   * so old entries can never become reachable again (counters could: an eviction restarts them).
   */
  private async bump(key: string): Promise<void> {
    this.genCache.delete(key)
    await this.client.set(memcachedKey(key), newGeneration(), { expires: 0 })
    this.genCache.delete(key)
  }

  private async readMany(keys: readonly string[]): Promise<(StoredEntry | undefined)[]> {
    const layouts = keys.map(layoutOf)
    const gens = await this.generations(layouts.flatMap((l) => l.gens))
    const wires = layouts.map((l) => physicalOf(l, gens))
    const unique = [...new Set(wires)]
    const raw = await Promise.all(unique.map((w) => this.client.get(w)))
    const now = Date.now()
    const decoded = new Map<string, Tuple | undefined>()
    let failure: CacheError | undefined
    for (const [i, w] of unique.entries()) {
      const value = raw[i]!.value
      if (value === null) {
        decoded.set(w, undefined)
        continue
      }
      let tuple: unknown
      try {
        tuple = this.codec.decode(value)
        if (!isTuple(tuple)) {
          throw new CacheError('E_DESERIALIZE', 'the bytes decode to something that is not a memcachedStore entry')
        }
      } catch (err) {
        this.client.delete(w).catch(() => {})
        decoded.set(w, undefined)
        failure ??= new CacheError(
          'E_DESERIALIZE',
          `memcachedStore: the entry under memcached key ${describe(w)} is not readable (deleted): ${(err as Error)?.message ?? err}`,
          { cause: err },
        )
        continue
      }
      decoded.set(w, tuple[2] <= now ? undefined : tuple)
    }
    if (failure !== undefined) throw failure
    // Tags: an entry is valid only while every tag still has the generation it was written under.
    const tagKeys: string[] = []
    for (const t of decoded.values()) if (t?.[4]) for (const [tag] of t[4]) tagKeys.push(tagGen(tag))
    if (tagKeys.length > 0) {
      const current = await this.generations(tagKeys)
      for (const [w, t] of decoded) {
        if (t?.[4]?.some(([tag, gen]) => current.get(tagGen(tag)) !== gen)) {
          decoded.set(w, undefined)
          this.client.delete(w).catch(() => {})
        }
      }
    }
    return wires.map((w) => {
      const t = decoded.get(w)
      if (t === undefined) return undefined
      const entry: { -readonly [K in keyof StoredEntry]: StoredEntry[K] } = {
        value: t[5],
        createdAt: t[0],
        freshUntil: t[1],
        staleUntil: t[2],
      }
      if (t[3] !== null) entry.cost = t[3]
      if (t[4] !== null) entry.tags = t[4].map(([tag]) => tag)
      return entry
    })
  }

  private async writeMany(entries: readonly (readonly [string, StoredEntry])[]): Promise<void> {
    const layouts = entries.map(([key]) => layoutOf(key))
    const genKeys = layouts.flatMap((l) => l.gens)
    for (const [, e] of entries) if (e.tags) for (const tag of e.tags) genKeys.push(tagGen(tag))
    const gens = await this.generations(genKeys)
    const now = Date.now()
    let failure: unknown
    await Promise.all(
      entries.map(async ([key, e], i) => {
        const wire = physicalOf(layouts[i]!, gens)
        try {
          await this.writeOne(key, wire, e, gens, now)
        } catch (err) {
          failure ??= err
        }
      }),
    )
    if (failure !== undefined) throw failure
  }

  private async writeOne(
    key: string,
    wire: string,
    e: StoredEntry,
    gens: ReadonlyMap<string, string>,
    now: number,
  ): Promise<void> {
    const ms = e.staleUntil - now
    if (!(ms > 0)) {
      // Already gone: never send an expiry of 0 (memcached's "forever"); drop any older entry instead.
      await this.client.delete(wire)
      return
    }
    const tags = e.tags && e.tags.length > 0 ? e.tags.map((t): [string, string] => [t, gens.get(tagGen(t))!]) : null
    const tuple: Tuple = [e.createdAt, e.freshUntil, e.staleUntil, e.cost ?? null, tags, e.value]
    const bytes = this.codec.encode(tuple)
    if (bytes.byteLength > this.maxValueBytes) {
      await this.client.delete(wire).catch(() => {})
      throw new CacheError(
        'E_VALUE_TOO_LARGE',
        `memcachedStore: value for key ${describe(key)} is ${bytes.byteLength} bytes encoded, over maxValueBytes (${this.maxValueBytes})`,
      )
    }
    const seconds = Math.ceil(ms / 1000) + 1
    let expires = seconds > MAX_RELATIVE_SECONDS ? Math.ceil(e.staleUntil / 1000) + 1 : seconds
    // Beyond what memcached's 32-bit expiry can say (never, or after 2106): no expiry; reads still stop at staleUntil.
    if (!Number.isFinite(expires) || expires > MAX_EXPIRY) expires = 0
    try {
      await this.client.set(wire, toBuffer(bytes), { expires })
    } catch (err) {
      if (err instanceof Error && TOO_LARGE.test(err.message)) {
        await this.client.delete(wire).catch(() => {})
        throw new CacheError(
          'E_VALUE_TOO_LARGE',
          `memcachedStore: memcached refused the value for key ${describe(key)} (${bytes.byteLength} bytes encoded) as too large (its -I item size)`,
          { cause: err },
        )
      }
      throw err
    }
  }

  private async removeMany(keys: readonly string[]): Promise<number> {
    const layouts = keys.map(layoutOf)
    const gens = await this.generations(layouts.flatMap((l) => l.gens))
    const wires = [...new Set(layouts.map((l) => physicalOf(l, gens)))]
    const done = await Promise.all(wires.map((w) => this.client.delete(w)))
    return done.filter(Boolean).length
  }
}
