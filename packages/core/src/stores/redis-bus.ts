// redisBus: the Bus (see types.ts) over Redis pub/sub. Publishing goes through the user's ioredis client; receiving
// needs a connection in subscriber mode, which cannot run other commands, so the bus makes one of its own with
// `client.duplicate()` and owns it (reference-counted across `subscribe` calls).
//
// Wire format, version 1. Every message is self-contained (a large list is split into several messages, each
// applied on its own), so a receiver never reassembles anything:
//
//   offset  size  field
//   0       1     magic 0xC1: never the first byte of UTF-8 text and unused in MessagePack, so JSON, plain text or
//                 MessagePack that another application publishes on the channel can never look like ours
//   1       1     version (1)
//   2       16    the publishing bus's random instance id (a bus ignores its own messages)
//   18      1     kind: 1 keys, 2 tags, 3 clear
//   19      4     count of strings, u32 big-endian (clear: exactly 1, the prefix)
//   23      …     per string: byte length (u32 big-endian), then the string's bytes
//
// Strings are UTF-8; a lone surrogate (a JS string that is not well-formed Unicode) is written as the 3-byte form
// UTF-8 would give its code point (WTF-8) instead of U+FFFD, so every JS string arrives exactly as sent: keys
// 'a\uD800' and 'a\uDC00' stay distinct and the receiver drops the very key the sender meant. A message with the
// magic that does not decode exactly (wrong length, unknown version or kind, invalid bytes) may have carried an
// invalidation we cannot apply: the receivers get `gap()`.

import { isUtf8 } from 'node:buffer'
import { randomBytes } from 'node:crypto'
import type { Cluster, Redis } from 'ioredis'
import { type Duration, parseDuration } from '../duration.js'
import { CacheError, describe } from '../errors.js'
import type { Bus, BusHandlers, BusMessage } from '../types.js'
import { MAX_TIMER_MS, parseCommandTimeout, withDeadline } from './deadline.js'
import { connectionLost } from './redis-call.js'

export interface RedisBusOptions {
  /**
   * Your ioredis client (standalone, Sentinel or Cluster). The bus publishes with it and never closes it; it
   * subscribes on a `client.duplicate()` of its own, quit after the last unsubscribe.
   */
  client: Redis | Cluster
  /** The pub/sub channel. Every instance that should see each other's invalidations uses the same. Default '@cache/bus'. */
  channel?: string
  /** Deadline of `publish`; past it, `publish` rejects with `E_STORE_UNAVAILABLE`. Default '500ms'. */
  commandTimeout?: Duration
  /**
   * How long `subscribe` waits for the subscription to be confirmed (connecting a Cluster client takes several round
   * trips, more than one command's deadline). Past it, it rejects with `E_STORE_UNAVAILABLE`. Default '5s'.
   */
  subscribeTimeout?: Duration
  /**
   * How often the bus PINGs its subscriber connection. A link that died without a socket event (a half-open TCP
   * connection after a partition or a NAT timeout) would otherwise lose every message silently for as long as TCP
   * keepalive takes (hours by default): a PING unanswered by the next one drops the connection, which is a gap, and
   * reconnects. Default '5s'.
   */
  heartbeat?: Duration
  /** Name in stats, events and errors. Default 'redis-bus'. */
  name?: string
}

const MAGIC = 0xc1
const VERSION = 1
const ID_BYTES = 16
const HEADER = 2 + ID_BYTES + 1 + 4
/** A message is split so that none exceeds this, unless a single string is larger on its own. */
export const MAX_MESSAGE_BYTES = 64 * 1024
const KINDS = { keys: 1, tags: 2, clear: 3 } as const
const DEFAULT_CHANNEL = '@cache/bus'
/** Reconnect delay of the subscriber connection: it must never give up, or the L1 caches would stay deaf for good. */
const retryDelay = (attempt: number) => Math.min(50 * attempt, 2000)

/**
 * A bus over Redis pub/sub that tells every other instance's in-process tier (L1) to drop keys, tags or a whole
 * prefix when this instance writes or invalidates. When the subscription drops, subscribers get `gap()` (their L1
 * may have missed invalidations), and `gap()` again once it is back.
 *
 * @example
 * import Redis from 'ioredis'
 * import { createCache, memoryStore } from '@cache/core'
 * import { redisBus, redisStore } from '@cache/core/redis'
 *
 * const client = new Redis(process.env.REDIS_URL)
 * const cache = createCache({
 *   tiers: [memoryStore(), redisStore({ client })],
 *   bus: redisBus({ client }),
 * })
 */
export function redisBus(options: RedisBusOptions): RedisBus {
  return new RedisBus(options)
}

/** One caller of `subscribe` (an object of its own, so the same handlers subscribed twice count twice). */
interface Subscription {
  readonly handlers: BusHandlers
}

/** The parts of an ioredis connection the subscriber uses: a Redis, a Cluster, or a Cluster's inner subscriber. */
type Connection = Redis | Cluster

/** ioredis' ClusterSubscriber (private): it picks the node the Cluster's subscriptions live on. */
interface ClusterSubscriberInternals {
  selectSubscriber(): void
  getInstance(): Redis | null
}

/** The bus's own subscriber connection and what it knows about the subscription on it. */
class Subscriber {
  /** 'down': not (or no longer) confirmed subscribed; 'live': confirmed; 'closed': quit by the bus. */
  state: 'down' | 'live' | 'closed' = 'down'
  /** Whether the subscription was ever live: only then is its loss, and its return, a gap. */
  private wasLive = false
  /** The connection whose SUBSCRIBE was confirmed last (on a Cluster, the inner node connection). */
  private liveOn: Connection | undefined
  private waiters: (() => void)[] = []
  private readonly watched = new WeakSet<object>()
  /** The connection whose PING is still unanswered. */
  private pinging: Connection | undefined
  private readonly heartbeat: NodeJS.Timeout

  constructor(
    readonly connection: Redis | Cluster,
    private readonly channel: string,
    heartbeatMs: number,
    private readonly onGap: () => void,
    onMessage: (message: Buffer) => void,
  ) {
    this.heartbeat = setInterval(() => this.beat(), heartbeatMs)
    this.heartbeat.unref()
    // Errors surface as gaps and as a subscribe that does not confirm; without a listener ioredis logs each one.
    connection.on('error', () => {})
    connection.on('messageBuffer', (ch: Buffer, message: Buffer) => {
      if (this.state !== 'closed' && ch.toString() === channel) onMessage(message)
    })
    const inner = connection.isCluster ? clusterSubscriberOf(connection as Cluster) : undefined
    if (inner) {
      // A Cluster subscribes on one node it picks (ClusterSubscriber): that inner connection never reconnects; when
      // it ends, another node is picked and the channels are subscribed there, and the Cluster itself emits nothing.
      // Hooking the pick is the only way to see that the subscription moved (and what was published meanwhile is
      // lost). The Cluster is the bus's own duplicate, so patching it touches nobody else.
      const select = inner.selectSubscriber.bind(inner)
      inner.selectSubscriber = () => {
        select()
        const node = inner.getInstance()
        if (node && this.state !== 'closed') this.watch(node)
      }
    } else {
      this.watch(connection)
    }
    connection.connect().catch(() => {})
  }

  /** Follows one connection: its loss is a gap; each time it is ready, subscribe (again) and confirm. */
  private watch(conn: Connection): void {
    if (this.watched.has(conn)) return
    this.watched.add(conn)
    conn.on('error', () => {})
    // 'close' is emitted on every lost socket, before 'reconnecting' or 'end', and also when a connection attempt
    // fails; 'end' and 'reconnecting' never come without it, so it alone marks the loss.
    conn.on('close', () => this.lost(conn))
    // ioredis would resubscribe by itself (a Redis with autoResubscribe, which the bus turns off on its duplicate; a
    // Cluster's picked node), but never says when the server confirmed it. Our own SUBSCRIBE (a no-op for the server
    // when already subscribed) does: only then is the subscription known to be back, and the gap over.
    conn.on('ready', () => this.resubscribe(conn))
    // The Cluster's inner connection is lazy: nothing connects it until a command is sent.
    if (conn.status === 'wait') conn.connect().catch(() => {})
    else if (conn.status === 'ready') this.resubscribe(conn)
  }

  private lost(conn: Connection): void {
    if (this.state !== 'live' || conn !== this.liveOn) return
    this.state = 'down'
    this.liveOn = undefined
    this.onGap()
  }

  private resubscribe(conn: Connection): void {
    if (this.state !== 'down') return
    conn.subscribe(this.channel).then(
      () => {
        // A 'close' may already be on its way (status changes before the event is emitted): wait for the next ready.
        if (this.state !== 'down' || conn.status !== 'ready') return
        this.state = 'live'
        this.liveOn = conn
        if (this.wasLive) this.onGap()
        this.wasLive = true
        for (const resolve of this.waiters.splice(0)) resolve()
      },
      () => {}, // the connection dropped: 'close' and the next 'ready' take over
    )
  }

  private beat(): void {
    const conn = this.liveOn
    // Only a node connection: a Cluster would send the PING to any node, which says nothing about the subscription.
    if (this.state !== 'live' || conn === undefined || conn.isCluster) {
      this.pinging = undefined
      return
    }
    if (this.pinging === conn) {
      // No answer for a whole interval: the link is dead though no socket event said so. Dropping it makes it a
      // gap now ('close') and reconnects (a Cluster's inner connection ends instead, and the Cluster picks a node).
      this.pinging = undefined
      conn.disconnect(true)
      return
    }
    this.pinging = conn
    ;(conn as Redis).ping().then(
      () => {
        if (this.pinging === conn) this.pinging = undefined
      },
      () => {}, // the connection dropped: 'close' took over
    )
  }

  /** Resolves once the subscription is live (now or later); never rejects (the caller has the deadline). */
  whenLive(): Promise<void> {
    if (this.state === 'live') return Promise.resolve()
    return new Promise((resolve) => this.waiters.push(resolve))
  }

  /** QUIT, or a disconnect when the server does not answer within `timeoutMs`; resolves once the connection ended. */
  async close(timeoutMs: number): Promise<void> {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.waiters = []
    clearInterval(this.heartbeat)
    const conn = this.connection
    if (conn.status === 'end') return
    const ended = new Promise<void>((resolve) => conn.once('end', () => resolve()))
    conn.quit().catch(() => {})
    const timer = setTimeout(() => conn.disconnect(), timeoutMs)
    let fallback: NodeJS.Timeout | undefined
    await Promise.race([ended, new Promise<void>((resolve) => (fallback = setTimeout(resolve, 2 * timeoutMs)))])
    clearTimeout(timer)
    clearTimeout(fallback)
  }
}

function clusterSubscriberOf(cluster: Cluster): ClusterSubscriberInternals | undefined {
  const inner = (cluster as unknown as { subscriber?: Partial<ClusterSubscriberInternals> }).subscriber
  return typeof inner?.selectSubscriber === 'function' && typeof inner.getInstance === 'function'
    ? (inner as ClusterSubscriberInternals)
    : undefined
}

export class RedisBus implements Bus {
  readonly name: string
  readonly channel: string
  /** The client the bus publishes with (yours; never closed by the bus). */
  readonly client: Redis | Cluster
  /** This bus's random id, sent with every message so it can skip its own. */
  private readonly id: Buffer
  private readonly timeout: number
  /** Why the publishing client is not connected (after it was once), or undefined. */
  private readonly lost: () => string | undefined
  private readonly subscribeTimeout: number
  private readonly heartbeat: number
  private readonly subscriptions = new Set<Subscription>()
  private subscriber: Subscriber | undefined

  constructor(options: RedisBusOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new CacheError('E_INVALID_OPTION', `redisBus: options must be an object (got ${describe(options)})`)
    }
    const client = options.client as Partial<Redis> | undefined
    if (typeof client?.publish !== 'function' || typeof client.duplicate !== 'function') {
      throw new CacheError(
        'E_INVALID_OPTION',
        `redisBus: client must be an ioredis Redis or Cluster (got ${describe(options.client)}); pass { client: new Redis(url) }`,
      )
    }
    this.client = options.client
    this.lost = connectionLost(this.client)
    this.channel = options.channel ?? DEFAULT_CHANNEL
    if (typeof this.channel !== 'string' || this.channel === '') {
      throw new CacheError(
        'E_INVALID_OPTION',
        `redisBus: channel must be a non-empty string (got ${describe(options.channel)}); omit it for '${DEFAULT_CHANNEL}'`,
      )
    }
    this.name = options.name ?? 'redis-bus'
    if (typeof this.name !== 'string' || this.name === '') {
      throw new CacheError(
        'E_INVALID_OPTION',
        `redisBus: name must be a non-empty string (got ${describe(options.name)})`,
      )
    }
    this.timeout = parseCommandTimeout(options.commandTimeout, 'redisBus', '500ms')
    this.subscribeTimeout = timerDuration(options.subscribeTimeout, 'subscribeTimeout', '5s')
    this.heartbeat = timerDuration(options.heartbeat, 'heartbeat', '5s')
    this.id = randomBytes(ID_BYTES)
  }

  async publish(message: BusMessage): Promise<void> {
    const parts = encodeMessage(this.id, message)
    if (parts.length === 0) return
    const client = this.client
    // Not queued for a reconnect: a message sent late could drop copies newer than what it announces.
    const lost = this.lost()
    if (lost !== undefined) {
      const detail = `redisBus '${this.name}': not connected (${lost}); nothing was sent`
      throw new CacheError('E_STORE_UNAVAILABLE', detail, { cause: new Error(`ioredis client status: ${lost}`) })
    }
    await withDeadline(
      Promise.all(parts.map((part) => client.publish(this.channel, part))),
      this.timeout,
      () =>
        new CacheError('E_STORE_UNAVAILABLE', `redisBus '${this.name}': PUBLISH timed out after ${this.timeout} ms`),
      (err) =>
        new CacheError('E_STORE_UNAVAILABLE', `redisBus '${this.name}': PUBLISH failed: ${errorText(err)}`, {
          cause: err,
        }),
    )
  }

  async subscribe(handlers: BusHandlers): Promise<() => Promise<void>> {
    if (typeof handlers?.message !== 'function' || typeof handlers.gap !== 'function') {
      throw new CacheError(
        'E_INVALID_OPTION',
        `redisBus '${this.name}': subscribe needs { message(m), gap() } functions`,
      )
    }
    const subscription: Subscription = { handlers }
    this.subscriptions.add(subscription)
    this.subscriber ??= this.open()
    const subscriber = this.subscriber
    let unsubscribed = false
    const unsubscribe = async (): Promise<void> => {
      if (unsubscribed) return
      unsubscribed = true
      await this.release(subscription)
    }
    try {
      await withDeadline(
        subscriber.whenLive(),
        this.subscribeTimeout,
        () =>
          new CacheError(
            'E_STORE_UNAVAILABLE',
            `redisBus '${this.name}': SUBSCRIBE not confirmed within ${this.subscribeTimeout} ms (is Redis reachable?)`,
          ),
        (err) => new CacheError('E_STORE_UNAVAILABLE', `redisBus '${this.name}': SUBSCRIBE failed`, { cause: err }),
      )
    } catch (err) {
      await unsubscribe()
      throw err
    }
    return unsubscribe
  }

  /** How many `subscribe` calls are active (for tests and diagnostics). */
  get subscriberCount(): number {
    return this.subscriptions.size
  }

  /** The bus's own subscriber connection while it has one (for tests and diagnostics). */
  get subscriberConnection(): Redis | Cluster | undefined {
    return this.subscriber?.connection
  }

  // -------------------------------------------------------------------------------------------------------------

  private open(): Subscriber {
    const client = this.client
    const connection = client.isCluster
      ? (client as Cluster).duplicate([], { lazyConnect: true, clusterRetryStrategy: retryDelay })
      : (client as Redis).duplicate({
          lazyConnect: true,
          // The bus resubscribes itself on every 'ready' to learn when it is confirmed (see Subscriber.watch).
          autoResubscribe: false,
          enableOfflineQueue: true,
          retryStrategy: retryDelay,
          reconnectOnError: null,
        })
    return new Subscriber(
      connection,
      this.channel,
      this.heartbeat,
      () => this.each((h) => h.gap()),
      (bytes) => this.receive(bytes),
    )
  }

  private async release(subscription: Subscription): Promise<void> {
    if (!this.subscriptions.delete(subscription) || this.subscriptions.size > 0) return
    const subscriber = this.subscriber
    this.subscriber = undefined
    await subscriber?.close(this.timeout)
  }

  private receive(bytes: Buffer): void {
    let decoded: Decoded | undefined
    try {
      decoded = decodeMessage(bytes)
    } catch {
      // Ours (the magic says so) but unreadable: it may have been an invalidation this instance now misses.
      this.each((h) => h.gap())
      return
    }
    if (decoded === undefined || decoded.id.equals(this.id)) return
    const message = decoded.message
    this.each((h) => h.message(message))
  }

  /** Calls every subscriber; one that throws must not keep the others from hearing, nor break the connection. */
  private each(call: (handlers: BusHandlers) => void): void {
    for (const { handlers } of [...this.subscriptions]) {
      try {
        call(handlers)
      } catch {
        // A handler's own bug; the bus has nobody to report it to without risking an unhandled error.
      }
    }
  }
}

/** A duration a timer can wait for: > 0 and at most MAX_TIMER_MS. */
function timerDuration(input: Duration | undefined, option: string, fallback: Duration): number {
  const ms = parseDuration(input ?? fallback, `redisBus: ${option}`)
  if (!(ms > 0) || ms > MAX_TIMER_MS) {
    throw new CacheError(
      'E_INVALID_OPTION',
      `redisBus: ${option} must be > 0 and at most ${MAX_TIMER_MS} ms (got ${describe(ms)}); omit it for ${fallback}`,
    )
  }
  return ms
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding

const SURROGATE = /[\uD800-\uDFFF]/

/** UTF-8 of a JS string, lone surrogates included (WTF-8): exact for every string, and plain UTF-8 when well-formed. */
export function encodeString(s: string): Buffer {
  if (!SURROGATE.test(s)) return Buffer.from(s, 'utf8')
  const out = Buffer.allocUnsafe(s.length * 3)
  let p = 0
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00)
        i++
      }
    }
    if (c < 0x80) {
      out[p++] = c
    } else if (c < 0x800) {
      out[p++] = 0xc0 | (c >> 6)
      out[p++] = 0x80 | (c & 0x3f)
    } else if (c < 0x10000) {
      out[p++] = 0xe0 | (c >> 12)
      out[p++] = 0x80 | ((c >> 6) & 0x3f)
      out[p++] = 0x80 | (c & 0x3f)
    } else {
      out[p++] = 0xf0 | (c >> 18)
      out[p++] = 0x80 | ((c >> 12) & 0x3f)
      out[p++] = 0x80 | ((c >> 6) & 0x3f)
      out[p++] = 0x80 | (c & 0x3f)
    }
  }
  return out.subarray(0, p)
}

/** The inverse of `encodeString`; throws on bytes it never writes (invalid UTF-8, a surrogate pair split in two). */
export function decodeString(bytes: Buffer): string {
  if (isUtf8(bytes)) return bytes.toString('utf8')
  let s = ''
  let i = 0
  let loneLead = false
  while (i < bytes.length) {
    const b = bytes[i]!
    let c: number
    let n: number
    if (b < 0x80) {
      c = b
      n = 1
    } else if (b >= 0xc2 && b <= 0xdf) {
      c = b & 0x1f
      n = 2
    } else if (b >= 0xe0 && b <= 0xef) {
      c = b & 0x0f
      n = 3
    } else if (b >= 0xf0 && b <= 0xf4) {
      c = b & 0x07
      n = 4
    } else {
      throw new Error('invalid lead byte')
    }
    if (i + n > bytes.length) throw new Error('truncated sequence')
    for (let k = 1; k < n; k++) {
      const cont = bytes[i + k]!
      if ((cont & 0xc0) !== 0x80) throw new Error('invalid continuation byte')
      c = (c << 6) | (cont & 0x3f)
    }
    if ((n === 3 && c < 0x800) || (n === 4 && (c < 0x10000 || c > 0x10ffff))) throw new Error('overlong sequence')
    const isTrail = c >= 0xdc00 && c <= 0xdfff
    // A lead then a trail surrogate, each on its own, would read back as the pair: the encoder writes a pair as 4 bytes.
    if (loneLead && isTrail) throw new Error('split surrogate pair')
    loneLead = c >= 0xd800 && c <= 0xdbff
    s += String.fromCodePoint(c)
    i += n
  }
  return s
}

/** The bytes of `message`, split into messages of at most MAX_MESSAGE_BYTES (a single larger string goes alone). */
export function encodeMessage(id: Buffer, message: BusMessage): Buffer[] {
  const kind = (message as { kind?: unknown })?.kind
  let strings: readonly unknown[]
  if (kind === 'keys' || kind === 'tags') {
    const list = kind === 'keys' ? (message as { keys?: unknown }).keys : (message as { tags?: unknown }).tags
    if (!Array.isArray(list)) {
      throw new CacheError('E_INVALID_VALUE', `redisBus: a '${kind}' message needs ${kind} as an array of strings`)
    }
    strings = list
  } else if (kind === 'clear') {
    strings = [(message as { prefix?: unknown }).prefix]
  } else {
    throw new CacheError(
      'E_INVALID_VALUE',
      `redisBus: message.kind must be 'keys', 'tags' or 'clear' (got ${describe(kind)})`,
    )
  }
  const code = KINDS[kind]
  const parts: Buffer[] = []
  let batch: Buffer[] = []
  let size = HEADER
  const flush = () => {
    const out = Buffer.allocUnsafe(size)
    out[0] = MAGIC
    out[1] = VERSION
    id.copy(out, 2)
    out[2 + ID_BYTES] = code
    out.writeUInt32BE(batch.length, 3 + ID_BYTES)
    let p = HEADER
    for (const bytes of batch) {
      out.writeUInt32BE(bytes.length, p)
      bytes.copy(out, p + 4)
      p += 4 + bytes.length
    }
    parts.push(out)
    batch = []
    size = HEADER
  }
  for (const s of strings) {
    if (typeof s !== 'string') {
      throw new CacheError('E_INVALID_VALUE', `redisBus: ${kind} must be strings (got ${describe(s)})`)
    }
    const bytes = encodeString(s)
    if (batch.length > 0 && size + 4 + bytes.length > MAX_MESSAGE_BYTES) flush()
    batch.push(bytes)
    size += 4 + bytes.length
  }
  if (batch.length > 0) flush()
  return parts
}

export interface Decoded {
  readonly id: Buffer
  readonly message: BusMessage
}

/** The message in `bytes`; undefined when it is not ours (no magic); throws when it is ours but does not decode. */
export function decodeMessage(bytes: Buffer): Decoded | undefined {
  if (bytes.length === 0 || bytes[0] !== MAGIC) return undefined
  if (bytes.length < HEADER) throw new Error('truncated header')
  if (bytes[1] !== VERSION) throw new Error(`unknown version ${bytes[1]}`)
  const id = bytes.subarray(2, 2 + ID_BYTES)
  const code = bytes[2 + ID_BYTES]
  const count = bytes.readUInt32BE(3 + ID_BYTES)
  // Each string takes at least its 4-byte length: a count beyond that is corrupt (and must not size an array).
  if (count > (bytes.length - HEADER) / 4) throw new Error('count exceeds the message')
  const strings = new Array<string>(count)
  let p = HEADER
  for (let i = 0; i < count; i++) {
    if (p + 4 > bytes.length) throw new Error('truncated length')
    const length = bytes.readUInt32BE(p)
    p += 4
    if (p + length > bytes.length) throw new Error('truncated string')
    strings[i] = decodeString(bytes.subarray(p, p + length))
    p += length
  }
  if (p !== bytes.length) throw new Error('trailing bytes')
  if (code === KINDS.keys) return { id, message: { kind: 'keys', keys: strings } }
  if (code === KINDS.tags) return { id, message: { kind: 'tags', tags: strings } }
  if (code === KINDS.clear && count === 1) return { id, message: { kind: 'clear', prefix: strings[0]! } }
  throw new Error(`unknown kind ${code} with ${count} strings`)
}
