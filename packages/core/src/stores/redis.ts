// redisStore: a Store over ioredis, for a standalone server, Sentinel (through ioredis' sentinel options) or a
// Cluster. Every entry is one Redis string: the codec's bytes of [createdAt, freshUntil, staleUntil, cost, tags,
// value], written with SET … PX so Redis expires it at staleUntil. Tags are Redis sets of keys (see deleteTagged).

import { createHash, randomBytes } from 'node:crypto'
import { Cluster, type ClusterNode, type ClusterOptions, Redis, type RedisOptions } from 'ioredis'
import { type Codec, defaultCodec } from '../codec.js'
import type { Duration } from '../duration.js'
import { CacheError, describe } from '../errors.js'
import type { Store, StoredEntry, StoreLock, WriteQueue } from '../types.js'
import { parseCommandTimeout } from './deadline.js'
import { connectionLost, redisDeadline } from './redis-call.js'
import { redisQueue } from './redis-queue.js'

/** Where the store gets its ioredis client: yours (never closed by the store) or one it makes (and closes). */
export type RedisStoreConnection =
  | { client: Redis | Cluster; redis?: never; cluster?: never }
  | { redis: RedisOptions | string; client?: never; cluster?: never }
  | { cluster: { nodes: ClusterNode[]; options?: ClusterOptions }; client?: never; redis?: never }

export type RedisStoreOptions = RedisStoreConnection & {
  /** Turns entries into bytes and back. Default `defaultCodec` (MessagePack, no compression). */
  codec?: Codec
  /**
   * Deadline of every store call (of every round trip for `clear` and `deleteTagged`, which take several). When it
   * passes, the call rejects with `E_STORE_UNAVAILABLE`; the command itself is abandoned. Default '500ms'.
   */
  commandTimeout?: Duration
  /**
   * Prefix of the Redis sets that index tags (`<tagPrefix><tag>`). The default, '%tag:', cannot start a key the
   * Cache writes (its namespaces escape '%' as '%25'). Change it if you use the store directly with such keys.
   */
  tagPrefix?: string
  /** Prefix of the keys `lock()` takes (getOrSet's `lock`). Default '%lock:', for the same reason as `tagPrefix`. */
  lockPrefix?: string
  /** Name in stats and events. Default 'redis'. */
  name?: string
}

const DEFAULT_TIMEOUT = 500
const SCAN_COUNT = 1000
const MAX_TAG_RETRIES = 5
/** Past this many ms (about 31 700 years) an entry is stored without a TTL: Redis refuses expiries that overflow. */
const MAX_TTL_MS = 1e15
/** Keys per UNLINK / SREM: a spread of 100 000+ arguments would overflow the stack. */
const CHUNK = 1000

// SADD the key to a tag set and make the set live at least as long as the entry (PEXPIRE … GT needs Redis 7; this
// works on every version). KEYS[1] tag set, ARGV[1] ttl ms (-1: the entry never expires), ARGV[2] member.
// A set without a TTL stays without one: an entry that never expires is in it.
const TAG_SCRIPT = `local existed = redis.call('EXISTS', KEYS[1])
redis.call('SADD', KEYS[1], ARGV[2])
local want = tonumber(ARGV[1])
if want < 0 then
  redis.call('PERSIST', KEYS[1])
elseif existed == 0 then
  redis.call('PEXPIRE', KEYS[1], want)
else
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl >= 0 and ttl < want then redis.call('PEXPIRE', KEYS[1], want) end
end
return 1`

// Deletes KEYS[1] only while its bytes are still those we read (their SHA-1 in ARGV[1]): 1 deleted, 0 gone, -1
// rewritten since (the caller reads it again).
const DELETE_IF_SAME = `local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if redis.sha1hex(v) ~= ARGV[1] then return -1 end
return redis.call('UNLINK', KEYS[1])`

// Deletes the lock KEYS[1] only while it still holds our token ARGV[1].
const RELEASE_LOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

/** The tuple the codec stores: [createdAt, freshUntil, staleUntil, cost, tags, value]. */
type Stored = [number, number, number, number | null, string[] | null, unknown]

/**
 * A store over Redis (standalone, Sentinel or Cluster) through ioredis.
 *
 * @example
 * import Redis from 'ioredis'
 * import { redisStore } from '@cache/core/redis'
 * const cache = createCache({ store: redisStore({ client: new Redis(process.env.REDIS_URL) }) })
 */
export function redisStore(options: RedisStoreOptions): RedisStore {
  return new RedisStore(options)
}

export class RedisStore implements Store {
  readonly name: string
  /** The ioredis client in use (yours, or the one the store made). */
  readonly client: Redis | Cluster
  private readonly owned: boolean
  private readonly codec: Codec
  private readonly timeout: number
  private readonly tagPrefix: string
  private readonly lockPrefix: string
  private readonly cluster: boolean
  private closed = false
  private readonly connection: () => string | undefined

  constructor(options: RedisStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new CacheError('E_INVALID_OPTION', `redisStore: options must be an object (got ${describe(options)})`)
    }
    const given = [options.client, options.redis, options.cluster].filter((x) => x !== undefined).length
    if (given !== 1) {
      throw new CacheError('E_INVALID_OPTION', 'redisStore: pass exactly one of `client`, `redis` or `cluster`')
    }
    this.name = options.name ?? 'redis'
    this.codec = options.codec ?? defaultCodec
    if (typeof this.codec?.encode !== 'function' || typeof this.codec.decode !== 'function') {
      throw new CacheError('E_INVALID_OPTION', 'redisStore: codec must have encode() and decode()')
    }
    this.timeout = parseCommandTimeout(options.commandTimeout, 'redisStore', DEFAULT_TIMEOUT)
    this.tagPrefix = options.tagPrefix ?? '%tag:'
    this.lockPrefix = options.lockPrefix ?? '%lock:'
    for (const [option, value] of [
      ['tagPrefix', this.tagPrefix],
      ['lockPrefix', this.lockPrefix],
    ] as const) {
      if (typeof value !== 'string' || value.length === 0) {
        throw new CacheError(
          'E_INVALID_OPTION',
          `redisStore: ${option} must be a non-empty string (got ${describe(value)})`,
        )
      }
    }
    if (options.client !== undefined) {
      if (typeof options.client?.getBuffer !== 'function') {
        throw new CacheError('E_INVALID_OPTION', 'redisStore: client must be an ioredis Redis or Cluster')
      }
      this.client = options.client
      this.owned = false
    } else {
      this.client = options.redis !== undefined ? createRedis(options.redis) : createCluster(options.cluster!)
      this.owned = true
      // Errors reach the callers as E_STORE_UNAVAILABLE; without a listener ioredis would log every reconnect failure.
      this.client.on('error', () => {})
    }
    this.cluster = this.client.isCluster
    this.connection = connectionLost(this.client)
  }

  async get(key: string): Promise<StoredEntry | undefined> {
    this.checkOpen()
    const bytes = await this.deadline('GET', this.client.getBuffer(key))
    return bytes === null ? undefined : this.read(key, bytes)
  }

  async set(key: string, entry: StoredEntry): Promise<void> {
    const ops = this.writeOps(key, entry)
    await this.deadline('SET', Promise.all(ops.map((op) => op())))
  }

  async delete(key: string): Promise<boolean> {
    this.checkOpen()
    this.checkConnected()
    return (await this.deadline('UNLINK', this.client.unlink(key))) > 0
  }

  async getMany(keys: readonly string[]): Promise<(StoredEntry | undefined)[]> {
    this.checkOpen()
    if (keys.length === 0) return []
    const found: (Buffer | null)[] = new Array(keys.length).fill(null)
    const groups = this.bySlot(keys)
    await this.deadline(
      'MGET',
      Promise.all(
        groups.map(async (indexes) => {
          const got = await this.client.mgetBuffer(indexes.map((i) => keys[i]!))
          for (const [j, i] of indexes.entries()) found[i] = got[j] ?? null
        }),
      ),
    )
    const out: (StoredEntry | undefined)[] = []
    let failure: unknown
    for (const [i, bytes] of found.entries()) {
      try {
        out.push(bytes === null ? undefined : await this.read(keys[i]!, bytes))
      } catch (err) {
        // read() deleted the undecodable key; go on so every bad key of the batch is deleted, then report it.
        failure ??= err
        out.push(undefined)
      }
    }
    // Never garbage, never a silent loss: the cache reports E_DESERIALIZE and treats this batch as misses.
    if (failure !== undefined) throw failure
    return out
  }

  async setMany(entries: readonly (readonly [string, StoredEntry])[]): Promise<void> {
    this.checkOpen()
    this.checkConnected()
    if (entries.length === 0) return
    if (this.cluster) {
      const ops = entries.flatMap(([key, entry]) => this.writeOps(key, entry))
      // Each command goes to its own slot's node (pipelined there when auto-pipelining is on): never CROSSSLOT.
      await this.deadline('SET', Promise.all(ops.map((op) => op())))
      return
    }
    await this.deadline('SET', this.pipelined(entries))
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    this.checkOpen()
    this.checkConnected()
    if (keys.length === 0) return 0
    const groups = this.bySlot(keys).flatMap((indexes) => chunks(indexes.map((i) => keys[i]!)))
    const counts = await this.deadline('UNLINK', Promise.all(groups.map((group) => this.client.unlink(group))))
    return counts.reduce((a, b) => a + b, 0)
  }

  /**
   * Drops every key starting with `prefix` (every key of the database without one: the whole keyspace the client
   * sees, not only this store's entries, but never FLUSHDB). SCAN MATCH with the prefix escaped, COUNT 1000, and
   * UNLINK per batch; on a Cluster, on every master. The deadline applies to each round trip.
   */
  async clear(prefix?: string): Promise<void> {
    this.checkOpen()
    this.checkConnected()
    const pattern = prefix === undefined || prefix === '' ? '*' : `${escapeGlob(prefix)}*`
    const nodes = await this.masters()
    await Promise.all(nodes.map((node) => this.clearNode(node, pattern)))
  }

  /**
   * Drops every entry carrying one of the tags. Each tag is a Redis set of the keys written with it; a member is
   * deleted only after its current bytes are read and found to carry the tag, and only if they are still those
   * bytes at the moment of deletion (a compare-and-delete script), so an entry rewritten without the tag survives.
   * Members processed are removed from the set; members added meanwhile stay. Resolves to the entries deleted.
   */
  async deleteTagged(tags: readonly string[]): Promise<number> {
    this.checkOpen()
    this.checkConnected()
    const wanted = new Set(tags)
    if (wanted.size === 0) return 0
    const tagList = [...wanted]
    const membersOf = await this.deadline(
      'SMEMBERS',
      Promise.all(tagList.map((tag) => this.client.smembers(this.tagPrefix + tag))),
    )
    let pending = [...new Set(membersOf.flat())]
    let deleted = 0
    for (let attempt = 0; attempt < MAX_TAG_RETRIES && pending.length > 0; attempt++) {
      const bytes: (Buffer | null)[] = new Array(pending.length).fill(null)
      const current = pending
      await this.deadline(
        'MGET',
        Promise.all(
          this.bySlot(current).map(async (indexes) => {
            const got = await this.client.mgetBuffer(indexes.map((i) => current[i]!))
            for (const [j, i] of indexes.entries()) bytes[i] = got[j] ?? null
          }),
        ),
      )
      const doomed: { key: string; sha: string; counted: boolean }[] = []
      for (const [i, key] of current.entries()) {
        const b = bytes[i]
        if (b === null || b === undefined) continue
        const stored = this.decodeOrUndefined(b)
        // Bytes that do not decode would be deleted by the next read anyway: drop them now, without counting.
        if (stored === undefined) doomed.push({ key, sha: sha1(b), counted: false })
        else if (stored[4]?.some((t) => wanted.has(t))) doomed.push({ key, sha: sha1(b), counted: true })
      }
      const results = await this.deadline(
        'EVAL',
        Promise.all(doomed.map((d) => this.client.eval(DELETE_IF_SAME, 1, d.key, d.sha) as Promise<number>)),
      )
      pending = []
      for (const [i, d] of doomed.entries()) {
        if (results[i] === 1 && d.counted) deleted++
        else if (results[i] === -1) pending.push(d.key)
      }
    }
    // Forget the members handled (all but those still changing under us); members added since stay in the sets.
    const unsettled = new Set(pending)
    const handled = new Set(membersOf.flat().filter((k) => !unsettled.has(k)))
    await this.deadline(
      'SREM',
      Promise.all(
        tagList.map((tag, i) => {
          const members = membersOf[i]!.filter((k) => handled.has(k))
          return Promise.all(chunks(members).map((part) => this.client.srem(this.tagPrefix + tag, part)))
        }),
      ),
    )
    return deleted
  }

  /**
   * Takes the lock `key` for `ttlMs` if nobody holds it (SET NX PX with a random token); release deletes it only
   * while the token is still ours, so a holder whose lock expired cannot free the next holder's.
   */
  async lock(key: string, ttlMs: number): Promise<StoreLock | undefined> {
    this.checkOpen()
    this.checkConnected()
    const name = this.lockPrefix + key
    const token = randomBytes(16).toString('base64url')
    const ok = await this.deadline('SET', this.client.set(name, token, 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX'))
    if (ok !== 'OK') return undefined
    return {
      release: async () => {
        if (this.closed) return
        try {
          await this.deadline('EVAL', this.client.eval(RELEASE_LOCK, 1, name, token) as Promise<number>)
        } catch {
          // Never thrown: an unreleased lock expires by itself after its TTL.
        }
      },
    }
  }

  /** A durable write-behind queue on a Redis Stream named `name` (see `redisQueue`), sharing this store's client. */
  writeQueue(name: string): WriteQueue {
    return redisQueue({ client: this.client, stream: name, commandTimeout: this.timeout })
  }

  /** Quits the client if the store made it; a client you passed stays open. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (!this.owned) return
    const client = this.client
    const ended = new Promise<void>((resolve) => {
      if (client.status === 'end') resolve()
      else client.once('end', () => resolve())
    })
    const quit = client.quit()
    quit.catch(() => {})
    const timer = setTimeout(() => client.disconnect(), this.timeout)
    // QUIT answered and the connection closed, or (down, unresponsive) dropped after the deadline.
    let fallback: NodeJS.Timeout | undefined
    await Promise.race([ended, new Promise<void>((resolve) => (fallback = setTimeout(resolve, 2 * this.timeout)))])
    clearTimeout(timer)
    clearTimeout(fallback)
  }

  // -------------------------------------------------------------------------------------------------------------

  /**
   * Writes are not handed to a client that lost its connection: ioredis would queue them and send them on
   * reconnect, long after their deadline, where they could land over newer writes of other instances.
   */
  private checkConnected(): void {
    const lost = this.connection()
    if (lost !== undefined) {
      throw new CacheError(
        'E_STORE_UNAVAILABLE',
        `redisStore '${this.name}': not connected (${lost}); nothing was sent`,
        { cause: new Error(`ioredis client status: ${lost}`) },
      )
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new CacheError('E_CLOSED', `redisStore '${this.name}' is closed`)
  }

  /**
   * Races `work` against the deadline. The abandoned command still settles later: its rejection is caught here, so
   * it is never unhandled. Errors other than CacheErrors become `E_STORE_UNAVAILABLE` with the original as `cause`.
   */
  private deadline<T>(command: string, work: Promise<T>): Promise<T> {
    if (this.closed) {
      work.catch(() => {})
      return Promise.reject(new CacheError('E_CLOSED', `redisStore '${this.name}' is closed`))
    }
    return redisDeadline('redis', command, work, this.timeout, this.client)
  }

  /** The commands that write one entry (SET or DEL, plus the tag sets), each as a thunk. */
  private writeOps(key: string, entry: StoredEntry): (() => Promise<unknown>)[] {
    this.checkOpen()
    this.checkConnected()
    const bytes = this.encode(entry)
    const ttl = ttlOf(entry)
    if (ttl !== undefined && !(ttl > 0)) return [() => this.client.unlink(key)]
    const ops: (() => Promise<unknown>)[] = [
      ttl === undefined ? () => this.client.set(key, bytes) : () => this.client.set(key, bytes, 'PX', ttl),
    ]
    for (const tag of new Set(entry.tags ?? [])) {
      // A tag set outlives its entries; without a TTL on the entry, the set gets none either.
      ops.push(() => this.client.eval(TAG_SCRIPT, 1, this.tagPrefix + tag, ttl ?? -1, key))
    }
    return ops
  }

  /** setMany on a standalone server: one pipeline, one round trip. */
  private async pipelined(entries: readonly (readonly [string, StoredEntry])[]): Promise<void> {
    const pipeline = (this.client as Redis).pipeline()
    for (const [key, entry] of entries) {
      const bytes = this.encode(entry)
      const ttl = ttlOf(entry)
      if (ttl !== undefined && !(ttl > 0)) {
        pipeline.unlink(key)
        continue
      }
      if (ttl === undefined) pipeline.set(key, bytes)
      else pipeline.set(key, bytes, 'PX', ttl)
      for (const tag of new Set(entry.tags ?? [])) pipeline.eval(TAG_SCRIPT, 1, this.tagPrefix + tag, ttl ?? -1, key)
    }
    const results = (await pipeline.exec()) ?? []
    for (const [err] of results) if (err) throw err
  }

  private encode(entry: StoredEntry): Buffer {
    const tuple: Stored = [
      entry.createdAt,
      entry.freshUntil,
      entry.staleUntil,
      entry.cost ?? null,
      entry.tags === undefined ? null : [...entry.tags],
      entry.value,
    ]
    const bytes = this.codec.encode(tuple)
    // ioredis sends Buffers as they are; a plain Uint8Array is wrapped (no copy).
    return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  private decodeOrUndefined(bytes: Uint8Array): Stored | undefined {
    let decoded: unknown
    try {
      decoded = this.codec.decode(bytes)
    } catch {
      return undefined
    }
    return isStored(decoded) ? decoded : undefined
  }

  /**
   * The entry in `bytes`, or: delete the key (only while it still holds these bytes; best effort) and throw
   * `E_DESERIALIZE`, which the cache reports and treats as a miss. Never a half-read entry.
   */
  private async read(key: string, bytes: Buffer): Promise<StoredEntry> {
    let decoded: unknown
    let cause: unknown
    try {
      decoded = this.codec.decode(bytes)
    } catch (err) {
      cause = err
    }
    if (cause === undefined && isStored(decoded)) {
      const [createdAt, freshUntil, staleUntil, cost, tags, value] = decoded
      const entry: { -readonly [K in keyof StoredEntry]: StoredEntry[K] } = { value, createdAt, freshUntil, staleUntil }
      if (tags !== null) entry.tags = tags
      if (cost !== null) entry.cost = cost
      return entry
    }
    try {
      await this.deadline('EVAL', this.client.eval(DELETE_IF_SAME, 1, key, sha1(bytes)) as Promise<number>)
    } catch {
      // Best effort: the next read tries again.
    }
    throw new CacheError(
      'E_DESERIALIZE',
      cause === undefined
        ? `redis: the value of ${describe(key)} is not an entry this store wrote; it was deleted`
        : `redis: the value of ${describe(key)} does not decode; it was deleted`,
      { cause },
    )
  }

  /** Indexes of `keys` grouped so that each group is one slot (one group for a standalone server). */
  private bySlot(keys: readonly string[]): number[][] {
    if (!this.cluster) return [keys.map((_, i) => i)]
    const groups = new Map<number, number[]>()
    for (const [i, key] of keys.entries()) {
      const slot = keySlot(key)
      const group = groups.get(slot)
      if (group === undefined) groups.set(slot, [i])
      else group.push(i)
    }
    return [...groups.values()]
  }

  /** The connections to scan: the client itself, or every master of the cluster (once it knows its topology). */
  private async masters(): Promise<Redis[]> {
    if (!this.cluster) return [this.client as Redis]
    const cluster = this.client as Cluster
    if (cluster.status !== 'ready') {
      await this.deadline(
        'CLUSTER',
        new Promise<void>((resolve, reject) => {
          if (cluster.status === 'end') reject(new Error('the cluster client has ended'))
          else cluster.once('ready', () => resolve())
        }),
      )
    }
    const nodes = cluster.nodes('master')
    if (nodes.length === 0) throw new CacheError('E_STORE_UNAVAILABLE', 'redis: the cluster has no known master')
    return nodes
  }

  private async clearNode(node: Redis, pattern: string): Promise<void> {
    let cursor = '0'
    do {
      const [next, keys] = await this.deadline(
        'SCAN',
        node.scanBuffer(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT) as Promise<[Buffer, Buffer[]]>,
      )
      cursor = next.toString()
      if (keys.length === 0) continue
      // Straight to this node (it holds these keys), one UNLINK per slot: never CROSSSLOT.
      const groups = new Map<number, Buffer[]>()
      for (const key of keys) {
        const slot = this.cluster ? keySlot(key) : 0
        const group = groups.get(slot)
        if (group === undefined) groups.set(slot, [key])
        else group.push(key)
      }
      await this.deadline('UNLINK', Promise.all([...groups.values()].map((group) => node.unlink(group))))
    } while (cursor !== '0')
  }
}

/**
 * Milliseconds the entry has left, rounded up (never a PX 0 for a live entry); `undefined` for no TTL at all: an
 * entry that never expires, or one so far away that Redis would refuse the expiry. NaN and the past give <= 0 or NaN,
 * which the callers treat as "delete".
 */
function ttlOf(entry: StoredEntry): number | undefined {
  if (entry.staleUntil === Number.POSITIVE_INFINITY) return undefined
  const ttl = Math.ceil(entry.staleUntil - Date.now())
  return ttl > MAX_TTL_MS ? undefined : ttl
}

function chunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = []
  for (let i = 0; i < items.length; i += CHUNK) out.push(items.slice(i, i + CHUNK))
  return out
}

function isStored(value: unknown): value is Stored {
  if (!Array.isArray(value) || value.length !== 6) return false
  const [createdAt, freshUntil, staleUntil, cost, tags] = value as unknown[]
  return (
    typeof createdAt === 'number' &&
    typeof freshUntil === 'number' &&
    typeof staleUntil === 'number' &&
    !Number.isNaN(createdAt) &&
    !Number.isNaN(freshUntil) &&
    !Number.isNaN(staleUntil) &&
    (cost === null || typeof cost === 'number') &&
    (tags === null || (Array.isArray(tags) && tags.every((t) => typeof t === 'string')))
  )
}

function sha1(bytes: Uint8Array): string {
  return createHash('sha1').update(bytes).digest('hex')
}

/** The prefix as a SCAN MATCH pattern that matches it literally. */
export function escapeGlob(prefix: string): string {
  return prefix.replace(/[*?[\]\\]/g, '\\$&')
}

// Defaults for the clients the store makes. Offline queue on (commands sent before the first connect wait for it),
// but at most one retry of a command whose connection dropped, so a dead server does not collect a growing queue;
// reconnect attempts every 50 ms rising to 500 ms, so the store is back within about half a second of the server.
const REDIS_DEFAULTS: RedisOptions = {
  maxRetriesPerRequest: 1,
  retryStrategy: (times) => Math.min(times * 50, 500),
  connectTimeout: 2000,
  enableAutoPipelining: true,
}

function createRedis(options: RedisOptions | string): Redis {
  if (typeof options === 'string') return new Redis(options, REDIS_DEFAULTS)
  return new Redis({ ...REDIS_DEFAULTS, ...options })
}

function createCluster(options: { nodes: ClusterNode[]; options?: ClusterOptions }): Cluster {
  if (!Array.isArray(options?.nodes) || options.nodes.length === 0) {
    throw new CacheError('E_INVALID_OPTION', 'redisStore: cluster.nodes must be a non-empty array')
  }
  const given = options.options ?? {}
  return new Cluster(options.nodes, {
    clusterRetryStrategy: (times) => Math.min(times * 50, 500),
    enableAutoPipelining: true,
    ...given,
    redisOptions: {
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      ...given.redisOptions,
    },
  })
}

// ---------------------------------------------------------------------------------------------------------------
// Cluster hash slots: CRC16/XMODEM (poly 0x1021, init 0) of the key, or of its hash tag, modulo 16384.

let crc16Table: Uint16Array | undefined

function crc16(bytes: Uint8Array, start: number, end: number): number {
  if (crc16Table === undefined) {
    crc16Table = new Uint16Array(256)
    for (let n = 0; n < 256; n++) {
      let c = n << 8
      for (let k = 0; k < 8; k++) c = c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1
      crc16Table[n] = c & 0xffff
    }
  }
  let crc = 0
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ crc16Table[((crc >>> 8) ^ bytes[i]!) & 0xff]!
  return crc
}

/**
 * The Redis Cluster hash slot of a key (0-16383): of the part between the first '{' and the next '}' when that part
 * is not empty (a hash tag), else of the whole key; over the key's UTF-8 bytes.
 */
export function keySlot(key: string | Uint8Array): number {
  const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key
  const open = bytes.indexOf(0x7b)
  if (open !== -1) {
    const close = bytes.indexOf(0x7d, open + 1)
    if (close > open + 1) return crc16(bytes, open + 1, close) & 0x3fff
  }
  return crc16(bytes, 0, bytes.length) & 0x3fff
}
