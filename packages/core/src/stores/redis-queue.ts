// redisQueue: a durable WriteQueue on a Redis Stream with a consumer group.
//
//   push   XADD <stream> * v <bytes>           one MULTI per push: all the items are queued, or none
//   take   XAUTOCLAIM (entries idle > claimAfter: their consumer died) then XREADGROUP '>' (never delivered)
//   touch  XCLAIM … 0 … JUSTID                 resets the idle time of the entries this consumer holds
//   ack    XACK + XDEL                          one MULTI: an acknowledged entry leaves the stream, so XLEN = size
//   retry  XADD (attempts + 1, notBefore) + XACK + XDEL, one MULTI: the retry and the ack happen together or not
//   dead   XADD <stream>:dead MAXLEN ~ n, then ack; a crash in between leaves a duplicate dead letter, never a loss
//
// Every command touches one key, so the queue works on a Redis Cluster (the dead-letter stream is another key, used
// by separate commands). Each entry is one field `v`: the codec's bytes of [1, namespace, key, value, attempts,
// queuedAt, notBefore] (the leading 1 is this layout's version). An entry that does not decode is handed to the
// consumer with an `error`, which dead-letters it: it never comes back to crash a consumer again.

import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { Cluster, Redis } from 'ioredis'
import { type Codec, defaultCodec } from '../codec.js'
import { type Duration, parseDuration } from '../duration.js'
import { CacheError, describe } from '../errors.js'
import type { DeadLetter, TakenWrite, WriteBehindItem, WriteQueue } from '../types.js'
import { MAX_TIMER_MS, parseCommandTimeout } from './deadline.js'
import { redisDeadline } from './redis-call.js'

export interface RedisQueueOptions {
  /** The ioredis client (standalone, Sentinel or Cluster). Yours: the queue never closes it. */
  client: Redis | Cluster
  /** The stream's key. Dead letters go to `<stream>:dead`. */
  stream: string
  /** Consumer group; every process flushing this stream uses the same one. Default 'write-behind'. */
  group?: string
  /** This consumer's name, unique per process. Default `<hostname>:<pid>:<random>`. */
  consumer?: string
  /**
   * Items another consumer took and left unacknowledged (and not renewed) this long are taken over by `take`, when
   * its caller gives no claim time. Use the same value in every process. Default '30s'.
   */
  claimAfter?: Duration
  /** Deadline of every round trip; past it the call rejects with `E_STORE_UNAVAILABLE`. Default '1s'. */
  commandTimeout?: Duration
  /** Turns items into bytes and back. Default `defaultCodec` (MessagePack: Dates, Maps, Buffers… survive). */
  codec?: Codec
  /** Dead letters kept in `<stream>:dead` (approximately: MAXLEN ~). Default 10 000. */
  maxDeadLetters?: number
}

/** The layout version of an entry's tuple. */
const LAYOUT = 1
/** [LAYOUT, namespace, key, value, attempts, queuedAt, notBefore] */
type EntryTuple = [number, string, string, unknown, number, number, number]
/** [LAYOUT, namespace, key, value, attempts, queuedAt, error, diedAt] */
type DeadTuple = [number, string, string, unknown, number, number, string, number]
/** Ids per XACK / XDEL / XCLAIM, so a huge call never builds a huge argument list. */
const CHUNK = 1000

type RawEntry = [Buffer, Buffer[] | null]

/**
 * A durable write-behind queue on a Redis Stream. Writes survive the death of the process that queued them: another
 * process (same stream and group) takes them over after `claimAfter` and flushes them. Delivery is at-least-once.
 *
 * @example
 * import { Redis } from 'ioredis'
 * import { createCache } from '@cache/core'
 * import { redisQueue } from '@cache/core/redis'
 * const client = new Redis(process.env.REDIS_URL)
 * const cache = createCache({
 *   writeBehind: { flush: (batch) => db.bulkUpsert(batch), queue: redisQueue({ client, stream: 'app:writes' }) },
 * })
 */
export function redisQueue(options: RedisQueueOptions): RedisQueue {
  return new RedisQueue(options)
}

export class RedisQueue implements WriteQueue {
  readonly name: string
  readonly stream: string
  readonly deadStream: string
  readonly group: string
  readonly consumer: string
  private readonly client: Redis | Cluster
  private readonly codec: Codec
  private readonly timeout: number
  private readonly claimAfter: number
  private readonly maxDead: number
  /** Where XAUTOCLAIM resumes its scan of the pending entries. */
  private cursor = '0-0'
  private groupReady: Promise<void> | undefined
  private closed = false

  constructor(options: RedisQueueOptions) {
    if (typeof options !== 'object' || options === null) {
      throw invalid(`options must be an object with client and stream (got ${describe(options)})`)
    }
    const { client, stream } = options
    if (typeof client !== 'object' || client === null || typeof (client as Redis).callBuffer !== 'function') {
      throw invalid(`client must be an ioredis Redis or Cluster (got ${describe(client)})`)
    }
    if (typeof stream !== 'string' || stream === '') throw invalid(`stream must be a non-empty string`)
    const group = options.group ?? 'write-behind'
    if (typeof group !== 'string' || group === '') throw invalid(`group must be a non-empty string`)
    const consumer = options.consumer ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`
    if (typeof consumer !== 'string' || consumer === '') throw invalid(`consumer must be a non-empty string`)
    const maxDead = options.maxDeadLetters ?? 10_000
    if (!Number.isSafeInteger(maxDead) || maxDead < 1) {
      throw invalid(`maxDeadLetters must be an integer >= 1 (got ${describe(maxDead)})`)
    }
    this.claimAfter = parseClaim(options.claimAfter ?? '30s', 'claimAfter')
    this.timeout = parseCommandTimeout(options.commandTimeout, 'redisQueue', '1s')
    this.client = client
    this.stream = stream
    this.deadStream = `${stream}:dead`
    this.name = `redis:${stream}`
    this.group = group
    this.consumer = consumer
    this.codec = options.codec ?? defaultCodec
    this.maxDead = maxDead
  }

  async push(items: readonly WriteBehindItem[]): Promise<void> {
    this.checkOpen()
    if (items.length === 0) return
    // Encode everything first: a value the codec refuses (E_SERIALIZE) fails the push before anything is sent.
    const payloads = items.map((item) => this.encodeEntry(item, 0))
    if (payloads.length === 1) {
      await this.run('XADD', this.redis.xadd(this.stream, '*', 'v', payloads[0]!))
      return
    }
    const multi = this.redis.multi()
    for (const bytes of payloads) multi.xadd(this.stream, '*', 'v', bytes)
    await this.run('MULTI XADD', exec(multi.exec()))
  }

  async take(max: number, claimAfterMs: number = this.claimAfter): Promise<TakenWrite[]> {
    this.checkOpen()
    if (!Number.isSafeInteger(max) || max < 1) return []
    const claimAfter = parseClaim(claimAfterMs, 'take: claimAfterMs')
    try {
      return await this.takeOnce(max, claimAfter)
    } catch (err) {
      // The stream was deleted (or the group destroyed) since the group was made: make it again, once.
      if (!/NOGROUP/.test(messageOf(err))) throw err
      this.groupReady = undefined
      return this.takeOnce(max, claimAfter)
    }
  }

  async touch(ids: readonly string[]): Promise<void> {
    this.checkOpen()
    for (const part of chunks(ids)) {
      await this.run('XCLAIM', this.redis.call('XCLAIM', this.stream, this.group, this.consumer, 0, ...part, 'JUSTID'))
    }
  }

  async ack(ids: readonly string[]): Promise<void> {
    this.checkOpen()
    for (const part of chunks(ids)) {
      const multi = this.redis.multi()
      multi.xack(this.stream, this.group, ...part)
      multi.xdel(this.stream, ...part)
      await this.run('XACK', exec(multi.exec()))
    }
  }

  async retry(id: string, item: WriteBehindItem, notBefore: number): Promise<void> {
    this.checkOpen()
    const bytes = this.encodeEntry(item, notBefore)
    const multi = this.redis.multi()
    multi.xadd(this.stream, '*', 'v', bytes)
    multi.xack(this.stream, this.group, id)
    multi.xdel(this.stream, id)
    await this.run('XADD (retry)', exec(multi.exec()))
  }

  async dead(id: string, item: WriteBehindItem, error: string): Promise<void> {
    this.checkOpen()
    const tuple: DeadTuple = [
      LAYOUT,
      item.namespace,
      item.key,
      item.value,
      item.attempts,
      item.queuedAt,
      error,
      Date.now(),
    ]
    await this.run(
      'XADD (dead letter)',
      this.redis.xadd(this.deadStream, 'MAXLEN', '~', this.maxDead, '*', 'v', this.encode(tuple)),
    )
    await this.ack([id])
  }

  async deadLetters(): Promise<DeadLetter[]> {
    this.checkOpen()
    const entries = (await this.run(
      'XRANGE',
      this.redis.callBuffer('XRANGE', this.deadStream, '-', '+', 'COUNT', this.maxDead),
    )) as RawEntry[]
    return entries.map(([rawId, fields]) => {
      const id = rawId.toString()
      const raw = field(fields, 'v')
      try {
        const t = this.codec.decode(raw ?? Buffer.alloc(0)) as DeadTuple
        if (!Array.isArray(t) || t[0] !== LAYOUT || t.length !== 8) throw new Error('not a dead letter of this queue')
        return {
          item: { namespace: t[1], key: t[2], value: t[3], attempts: t[4], queuedAt: t[5] },
          error: t[6],
          diedAt: t[7],
        }
      } catch (err) {
        const at = idTime(id)
        return {
          item: { namespace: '', key: '', value: raw, attempts: 0, queuedAt: at },
          error: `dead letter ${id} cannot be read: ${messageOf(err)}`,
          diedAt: at,
        }
      }
    })
  }

  async size(): Promise<number> {
    this.checkOpen()
    return Number(await this.run('XLEN', this.redis.xlen(this.stream)))
  }

  /**
   * Stops the queue (later calls: `E_CLOSED`). When this consumer holds nothing, it leaves the group, so consumer
   * names of past processes do not pile up; the client stays open.
   */
  async close(): Promise<void> {
    if (this.closed) return
    try {
      const mine = (await this.run(
        'XPENDING',
        this.redis.call('XPENDING', this.stream, this.group, '-', '+', 1, this.consumer),
      )) as unknown[]
      if (mine.length === 0) {
        await this.run('XGROUP', this.redis.call('XGROUP', 'DELCONSUMER', this.stream, this.group, this.consumer))
      }
    } catch {
      // Best effort: a consumer left behind costs a few bytes and holds nothing.
    }
    this.closed = true
  }

  // -------------------------------------------------------------------------------------------------------------

  /** Both client kinds have the commands used here; the union's overloads are not callable as one. */
  private get redis(): Redis {
    return this.client as Redis
  }

  private async takeOnce(max: number, claimAfter: number): Promise<TakenWrite[]> {
    await this.ensureGroup()
    const out: TakenWrite[] = []
    const gone: string[] = []
    const claimed = (await this.run(
      'XAUTOCLAIM',
      this.redis.callBuffer(
        'XAUTOCLAIM',
        this.stream,
        this.group,
        this.consumer,
        Math.round(claimAfter),
        this.cursor,
        'COUNT',
        max,
      ),
    )) as [Buffer, RawEntry[], Buffer[]?]
    this.cursor = claimed[0].toString()
    for (const entry of claimed[1]) {
      // Redis 6.2 returns entries deleted while pending with nil fields (7.0 drops them from the PEL itself).
      if (entry === null || entry[1] === null) {
        if (entry !== null) gone.push(entry[0].toString())
      } else out.push(this.read(entry))
    }
    if (gone.length > 0) await this.run('XACK', this.redis.xack(this.stream, this.group, ...gone))
    if (out.length < max) {
      const fresh = (await this.run(
        'XREADGROUP',
        this.redis.callBuffer(
          'XREADGROUP',
          'GROUP',
          this.group,
          this.consumer,
          'COUNT',
          max - out.length,
          'STREAMS',
          this.stream,
          '>',
        ),
      )) as [Buffer, RawEntry[]][] | null
      for (const entry of fresh?.[0]?.[1] ?? []) out.push(this.read(entry))
    }
    return out
  }

  private ensureGroup(): Promise<void> {
    this.groupReady ??= this.run(
      'XGROUP CREATE',
      // From id 0: entries pushed before any consumer existed are delivered too.
      this.redis.call('XGROUP', 'CREATE', this.stream, this.group, '0', 'MKSTREAM').catch((err: unknown) => {
        if (!/BUSYGROUP/.test(messageOf(err))) throw err
      }),
    ).then(
      () => {},
      (err: unknown) => {
        this.groupReady = undefined
        throw err
      },
    )
    return this.groupReady
  }

  /** One stream entry as a TakenWrite; bytes that do not read back come with an `error` instead of throwing. */
  private read([rawId, fields]: RawEntry): TakenWrite {
    const id = rawId.toString()
    const raw = field(fields, 'v')
    try {
      if (raw === undefined) throw new Error('it has no field "v"')
      const t = this.codec.decode(raw) as EntryTuple
      if (
        !Array.isArray(t) ||
        t.length !== 7 ||
        t[0] !== LAYOUT ||
        typeof t[1] !== 'string' ||
        typeof t[2] !== 'string' ||
        typeof t[4] !== 'number' ||
        typeof t[5] !== 'number' ||
        typeof t[6] !== 'number'
      ) {
        throw new Error('it decodes, but not to a write-behind item of this layout')
      }
      return { id, item: { namespace: t[1], key: t[2], value: t[3], attempts: t[4], queuedAt: t[5] }, notBefore: t[6] }
    } catch (err) {
      return {
        id,
        item: { namespace: '', key: '', value: raw ?? null, attempts: 0, queuedAt: idTime(id) },
        notBefore: 0,
        error: new CacheError(
          'E_DESERIALIZE',
          `redisQueue '${this.stream}': entry ${id} cannot be read: ${messageOf(err)}`,
          {
            cause: err,
          },
        ),
      }
    }
  }

  private encodeEntry(item: WriteBehindItem, notBefore: number): Buffer {
    const tuple: EntryTuple = [LAYOUT, item.namespace, item.key, item.value, item.attempts, item.queuedAt, notBefore]
    return this.encode(tuple)
  }

  private encode(value: unknown): Buffer {
    const bytes = this.codec.encode(value)
    // The codec may return a view into a larger buffer: hand ioredis exactly these bytes, as a Buffer.
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  private checkOpen(): void {
    if (this.closed) throw new CacheError('E_CLOSED', `redisQueue '${this.stream}' is closed`)
  }

  /** Races one round trip against the deadline; any failure but a CacheError becomes `E_STORE_UNAVAILABLE`. */
  private run<T>(command: string, work: Promise<T>): Promise<T> {
    return redisDeadline('redisQueue', command, work, this.timeout, this.client)
  }
}

function invalid(message: string): CacheError {
  return new CacheError('E_INVALID_OPTION', `redisQueue: ${message}`)
}

function parseClaim(input: Duration, option: string): number {
  const ms = parseDuration(input, `redisQueue: ${option}`)
  if (!(ms > 0) || ms > MAX_TIMER_MS) throw invalid(`${option} must be > 0 and at most ${MAX_TIMER_MS} ms (got ${ms})`)
  return ms
}

/** A MULTI's replies, rejecting with the first command's error (ioredis resolves with [err, reply] pairs). */
async function exec(result: Promise<[Error | null, unknown][] | null>): Promise<unknown[]> {
  const replies = await result
  if (replies === null) throw new Error('the transaction was aborted')
  for (const [err] of replies) if (err) throw err
  return replies.map(([, reply]) => reply)
}

function field(fields: Buffer[] | null, name: string): Buffer | undefined {
  if (!Array.isArray(fields)) return undefined
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i]!.toString() === name) return fields[i + 1]
  return undefined
}

function* chunks(ids: readonly string[]): Generator<string[]> {
  for (let i = 0; i < ids.length; i += CHUNK) yield ids.slice(i, i + CHUNK)
}

/** The ms timestamp of a stream entry id ('1700000000000-0'). */
function idTime(id: string): number {
  const ms = Number(id.split('-')[0])
  return Number.isFinite(ms) ? ms : 0
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
