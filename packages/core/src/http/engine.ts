import { createHash } from 'node:crypto'
import CachePolicy from 'http-cache-semantics'
import type { Cache } from '../cache.js'
import { parseDuration } from '../duration.js'
import { CacheError, describe } from '../errors.js'
import type { EntryOptions, GetOrSetOptions, LoaderContext } from '../types.js'
import type { ForwardDecision, HeaderValue, HttpCacheOptions, HttpExchange, HttpHeaders, HttpRequest } from './types.js'

/** The policy engine for one route (or one app): serves requests from `cache` and fills it. */
export interface HttpCache<R = HttpRequest> {
  /**
   * Serves one request: from the cache when it may, else through the exchange's handler (storing what may be
   * stored); an unsafe method that succeeds invalidates the URL's stored responses. Never leaves the client without
   * an answer because of the cache: when the cache fails, the request goes to the handler.
   */
  handle(exchange: HttpExchange<R>): Promise<void>
  /** Drops every stored response (every variant, every user) for an absolute URL ('https://example.com/todos?x=1'). */
  invalidate(url: string | URL): Promise<void>
}

/** RFC 9110 §15.1: the status codes that are cacheable by default. */
const DEFAULT_STATUSES = [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501]
const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
/** Never stored: they describe one connection (hop-by-hop), one client (set-cookie), or are recomputed on each answer. */
const NOT_STORED = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'set-cookie',
  'age',
  'content-length',
  'cache-status',
])
/** The headers a 304 repeats (RFC 9110 §15.4.5). */
const NOT_MODIFIED_HEADERS = new Set([
  'cache-control',
  'content-location',
  'date',
  'etag',
  'expires',
  'vary',
  'last-modified',
])
const MAX_WAIT = 2_147_483_647
/** The longest a URL stays hit-for-pass without being judged again (bounded by the route's ttl). */
const PASS_MAX_MS = 10_000
/**
 * Uncacheable responses in a row after which a URL's requests skip the watching of their response (`pass`). Before
 * that, each response is still judged, so a URL that failed once (a 500) is stored as soon as it answers well.
 */
const PASS_FAST_AFTER = 3
const MAX_KEY = 512
/** The cap on what a response states about its freshness when the route gives no ttl. */
const DEFAULT_CAP = '1m'

/** A stored response. Short field names: it goes through the codec into Redis on every store. */
interface Stored {
  readonly k: 'r'
  readonly status: number
  readonly headers: readonly (readonly [string, string])[]
  readonly body: Uint8Array
  readonly etag: string
  /** ms since the epoch, from `Last-Modified`; -1 when absent. */
  readonly lastModified: number
  readonly storedAt: number
  /** The origin's own `Age`, in seconds. */
  readonly age: number
  readonly freshMs: number
  readonly swrMs: number
  readonly sieMs: number
  /** `no-cache`: every request goes to the handler; the copy serves stale-if-error only. */
  readonly noCache: boolean
  /** The request headers (lower case) this response varies on, as used in its key. */
  readonly vary: readonly string[]
}
/** Stored at a URL's key when its responses vary: the request headers that pick the variant. */
interface VaryMarker {
  readonly k: 'v'
  readonly vary: readonly string[]
  /** The ids of the URL's stored variants (see `variantId`), oldest first; at most `maxVariants`. */
  readonly variants?: readonly string[]
  /** ms since the epoch: until when the last of them may be served (stale included); the marker lives as long. */
  readonly until?: number
}
/** What a load hands its waiters when its response may not be shared: they ask the handler themselves. Never stored. */
interface Skip {
  readonly k: 'p'
  readonly reason: string
}
type Value = Stored | VaryMarker | Skip
/** A URL remembered as uncacheable: until when, after how many such responses in a row, and why. */
interface Pass {
  until: number
  count: number
  reason: string
}

interface Resolved<R> {
  /** Freshness of a response that states none; 0 (not stored) when the route gave no ttl. */
  ttl: number
  /** The cap on any freshness: the route's ttl, or `DEFAULT_CAP`. */
  cap: number
  maxVariants: number
  swr: number
  sie: number
  scope: 'public' | undefined
  key: ((req: R) => string | undefined) | undefined
  tags: ((req: R) => readonly string[]) | undefined
  invalidateTags: ((req: R) => readonly string[]) | undefined
  statuses: ReadonlySet<number>
  ignoreExact: ReadonlySet<string>
  ignorePrefixes: readonly string[]
  maxBody: number
  lock: GetOrSetOptions['lock']
  name: string | undefined
  prefix: string
}

/** One request's state: who answered the client, and how. */
interface Turn<R> {
  readonly ex: HttpExchange<R>
  readonly primary: string
  /** The URL as key parts (scheme, host, path, sorted query; see `field`): what the URL's tag is made of. */
  readonly url: string
  readonly shared: boolean
  /** The route's tags for this request (the URL's tag is added when storing). */
  readonly tags: readonly string[]
  /** A load of this request runs the handler on its own exchange (the client gets that response). */
  claimed: boolean
  /** Settles when that forward is over; `sent` says whether the client got the handler's response. */
  forwarded: Promise<void> | undefined
  sent: boolean
  /** The engine is answering the client itself: no load may claim the exchange any more. */
  answering: boolean
  /** The origin status that made a claimed forward discard its response (stale-if-error). */
  failedStatus: number
  /** This request's own load filled the entry through a detached GET (a HEAD miss): answered as a miss. */
  filled: boolean
  /** `epoch` when the request came in. */
  readonly epoch: number
}

/**
 * @example
 * const http = createHttpCache(cache, { ttl: '30s', staleWhileRevalidate: '1m' })
 * server.on('request', (req, res) => http.handle(nodeExchange(req, res, () => route(req, res), req)))
 */
export function createHttpCache<R = HttpRequest>(cache: Cache, options: HttpCacheOptions<R> = {}): HttpCache<R> {
  return new Engine(cache, resolve(options))
}

class Engine<R> implements HttpCache<R> {
  /**
   * Hit-for-pass: URLs whose last response could not be stored, with until when that is remembered. Their requests
   * go straight to the handler, with no lookup and no coalescing (waiters would only queue behind a response they
   * may not share). Their answers are still judged, and one that turns storable is stored at once and ends the
   * pass; after `PASS_FAST_AFTER` in a row, not even that until the pass expires (`HttpExchange.pass`).
   */
  private readonly passes = new Map<string, Pass>()
  /** Vary marker updates in flight, per URL key: each waits for the one before (see `trackVariant`). */
  private readonly tracking = new Map<string, Promise<void>>()

  constructor(
    private readonly cache: Cache,
    private readonly o: Resolved<R>,
  ) {}

  async invalidate(url: string | URL): Promise<void> {
    const u = typeof url === 'string' ? new URL(url) : url
    // Keys hold the request-target as sent: a string is taken as written ('/items?q=\'x\'', 'Host:80'), and as a
    // URL would normalise it ('%27', no default port), so that both spellings are dropped.
    const parts = [[u.protocol.slice(0, -1), u.host, u.pathname + u.search]]
    const raw = typeof url === 'string' ? ABSOLUTE.exec(url) : null
    if (raw !== null) parts.push([raw[1]!.toLowerCase(), raw[2]!, (raw[3] || '/') + (raw[4] ?? '')])
    epoch++
    // Each with and without the ignored parameters: adapters that remove them from what the app sees key without
    // them, adapters that cannot key with them.
    const tags = new Set<string>()
    for (const [scheme, host, target] of parts) {
      tags.add(this.urlTag(scheme!, host!, target!, true))
      tags.add(this.urlTag(scheme!, host!, target!, false))
    }
    await this.cache.invalidateTags([...tags])
  }

  async handle(ex: HttpExchange<R>): Promise<void> {
    const method = ex.request.method.toUpperCase()
    if (UNSAFE.has(method)) return this.unsafe(ex)
    if (method !== 'GET' && method !== 'HEAD') {
      await ex.forward(() => ({ action: 'send', headers: [], capture: 0 }))
      return
    }
    const o = this.o
    const h = ex.request.headers
    const { url } = ex.request
    // Only origin-form ('/path?query'): an absolute-form or '*' target is routed on a path that is not this string.
    if (url.charCodeAt(0) !== 47) return this.bypass(ex, 'target')
    // A GET with a body: its answer may depend on bytes that are not in the key.
    if (hasBody(h)) return this.bypass(ex, 'body')
    const at = url.indexOf('?')
    const path = at < 0 ? url : url.slice(0, at)
    let query = ''
    if (at >= 0) {
      const raw = url.slice(at + 1)
      const q = this.query(raw, ex.rewriteUrl !== undefined)
      query = q.key
      // Ignored parameters leave the URL the handler sees too: what is not keyed can never shape a stored answer.
      if (q.seen !== undefined) {
        const seen = q.seen === '' ? path : `${path}?${q.seen}`
        try {
          ex.rewriteUrl!(seen)
          ex = { ...ex, request: { ...ex.request, url: seen } }
        } catch {
          // The app still sees them: they are keyed.
          query = this.query(raw, false).key
        }
      }
    }
    const host = validHost(ex.request.host ?? h.host)
    if (host === undefined) return this.bypass(ex, 'host')
    let part: string | undefined
    if (o.key !== undefined) {
      part = o.key(ex.source)
      if (part === undefined) return this.bypass(ex, 'key')
    } else if (o.scope !== 'public') {
      if (present(h.authorization)) return this.bypass(ex, 'authorization')
      if (present(h.cookie)) return this.bypass(ex, 'cookie')
    }
    const range = h.range
    if (Array.isArray(range) && range.length > 1) return this.bypass(ex, 'range')
    const protocol = ex.request.protocol
    const base = field('s', protocol) + field('h', host) + field('p', path) + field('q', query)
    let primary = base
    if (part !== undefined) primary += field('k', part)
    if (range !== undefined) primary += field('r', String(first(range)))
    const turn: Turn<R> = {
      ex,
      primary: this.key(primary),
      url: base,
      // Asked before anything runs, so a throwing callback fails the request instead of silently storing nothing.
      tags: o.tags === undefined ? NO_TAGS : o.tags(ex.source),
      shared: o.scope === 'public' || o.key !== undefined,
      claimed: false,
      forwarded: undefined,
      sent: false,
      answering: false,
      failedStatus: 0,
      filled: false,
      epoch,
    }
    try {
      await this.serve(turn)
    } catch (err) {
      if (turn.claimed) {
        await turn.forwarded
        if (turn.sent) return
        // The handler's own forward failed (an adapter error): never run the handler twice.
        if (turn.failedStatus === 0) throw err
        // Its failure was held back for a stale copy that could not be read after all: answer the failure.
        return ex.send({
          status: turn.failedStatus,
          headers: {
            'content-length': '0',
            ...Object.fromEntries(this.statusHeader(`fwd=miss; fwd-status=${turn.failedStatus}`)),
          },
          body: EMPTY,
        })
      }
      if (turn.answering) throw err
      // The cache failed (not the handler): the client is answered by the handler, uncached.
      await this.forwardOnly(ex, 'fwd=miss; detail=error')
    }
  }

  private async serve(turn: Turn<R>): Promise<void> {
    const pass = this.passes.get(turn.primary)
    if (pass !== undefined) {
      if (Date.now() < pass.until) {
        // Uncacheable again and again: straight to the handler, nothing watched (re-judged when the pass expires).
        if (pass.count >= PASS_FAST_AFTER && turn.ex.pass !== undefined) {
          turn.claimed = true
          turn.sent = true
          return turn.ex.pass(this.statusHeader(`fwd=miss; detail=${pass.reason}`))
        }
        return this.passThrough(turn)
      }
      this.passes.delete(turn.primary)
    }
    let key = turn.primary
    let variantOf: readonly string[] | undefined
    let value = await this.cache.getOrSet<Value>(key, this.loader(turn, undefined), this.getOptions(0))
    if (value.k === 'v') {
      const vary = value.vary
      if (turn.claimed) {
        await turn.forwarded
        if (turn.sent) return
      }
      key = this.variant(turn.primary, vary, turn.ex.request.headers)
      variantOf = vary
      value = await this.cache.getOrSet<Value>(key, this.loader(turn, vary), this.getOptions(0))
    }
    if (turn.claimed) {
      await turn.forwarded
      if (turn.sent) return
    }
    if (value.k !== 'r') return this.forwardOnly(turn.ex, `fwd=miss; detail=${value.k === 'p' ? value.reason : 'vary'}`)
    const now = Date.now()
    const freshUntil = value.storedAt + value.freshMs
    if (now >= freshUntil && turn.failedStatus === 0) {
      const swr = !value.noCache && turn.ex.detached !== undefined && now < freshUntil + value.swrMs
      if (!swr) {
        // Past stale-while-revalidate: wait for the refresh the read started (or joined); stale only if it fails.
        const fresh = await this.cache.getOrSet<Value>(key, this.loader(turn, variantOf), this.getOptions(MAX_WAIT))
        if (turn.claimed) {
          await turn.forwarded
          if (turn.sent) return
        }
        if (fresh.k !== 'r') return this.forwardOnly(turn.ex, 'fwd=stale')
        if (fresh.storedAt !== value.storedAt) return this.answer(turn, fresh, 'fwd=stale; fwd-status=200')
        return this.answer(turn, value, 'fwd=stale; detail=stale-if-error')
      }
    }
    if (turn.failedStatus !== 0) {
      return this.answer(turn, value, `fwd=stale; fwd-status=${turn.failedStatus}; detail=stale-if-error`)
    }
    return this.answer(turn, value, turn.filled ? 'fwd=miss; stored' : 'hit')
  }

  private remember(turn: Turn<R>, reason: string): void {
    const h = turn.ex.request.headers
    // A handler answering a revalidation (304) says nothing about the URL's other answers.
    if (present(h['if-none-match']) || present(h['if-modified-since'])) return
    const primary = turn.primary
    const until = Date.now() + Math.min(this.o.cap, PASS_MAX_MS)
    const pass = this.passes.get(primary)
    if (pass !== undefined) {
      pass.until = until
      pass.count++
      pass.reason = reason
      return
    }
    if (this.passes.size >= MAX_PASSES) this.passes.delete(this.passes.keys().next().value as string)
    this.passes.set(primary, { until, count: 1, reason })
  }

  /** A request of a hit-for-pass URL: to the handler; its response is stored if it turned storable. */
  private async passThrough(turn: Turn<R>): Promise<void> {
    const { ex } = turn
    let verdict: Verdict | undefined
    let status = 0
    let headers: HttpHeaders = {}
    let outer: HttpHeaders | undefined
    turn.claimed = true
    // A HEAD's answer has no body to keep; the URL is stored by a GET.
    const head = ex.request.method.toUpperCase() === 'HEAD'
    const at = epoch
    const body = await ex.forward((s, hs, before): ForwardDecision => {
      const seen = lowerCase(hs)
      let now = head ? NOT_STORED_VERDICT : this.judgeSized(s, seen, ex.request, turn.shared)
      // The answer that went out is not the one first judged (a later hook replaced it with an error).
      if (verdict !== undefined && s !== status) now = { ...now, reason: 'status' }
      // A second call only vetoes (see HttpExchange.forward): what is stored is the first answer.
      if (verdict === undefined || now.reason !== undefined) {
        if (verdict === undefined) {
          status = s
          headers = seen
          outer = before === undefined ? undefined : lowerCase(before)
        }
        verdict = now
      }
      return this.sendDecision(now, 'fwd=miss', s, seen)
    })
    turn.sent = true
    if (verdict === undefined || verdict.reason !== undefined) {
      if (verdict !== undefined && STICKY.has(verdict.reason!)) this.remember(turn, verdict.reason!)
      return
    }
    // An unsafe request invalidated meanwhile: this answer may predate it.
    if (body === undefined || epoch !== at) return
    const stored = this.record(status, headers, outer, body, verdict)
    const grace = stored.noCache ? stored.sieMs : Math.max(stored.swrMs, stored.sieMs)
    if (stored.noCache && grace === 0) return
    this.passes.delete(turn.primary)
    await this.storeAt(turn, stored, { ttl: stored.freshMs, grace, tags: [this.key(`url:${turn.url}`), ...turn.tags] })
  }

  /** Stores a response outside of a load: at the URL's key, or at its variant's key with the URL's Vary marker. */
  private async storeAt(turn: Turn<R>, stored: Stored, options: EntryOptions & { ttl: number; grace: number }) {
    try {
      if (stored.vary.length === 0) return await this.cache.set(turn.primary, stored, options)
      const id = variantId(stored.vary, turn.ex.request.headers)
      await this.cache.set(turn.primary + field('v', id), stored, options)
      await this.trackVariant(turn, stored.vary, id, Date.now() + options.ttl + options.grace, options.tags ?? NO_TAGS)
    } catch {
      // Reported by the cache (`error` event); the client has its answer.
    }
  }

  /**
   * Records in the URL's Vary marker that variant `id` is stored until `until` (ms since the epoch). The marker lists
   * the variants, oldest first, and lives as long as the last of them; past `maxVariants` the oldest are deleted, and
   * when the URL's Vary headers changed, every variant of the old ones (no request can pick them any more). One
   * update at a time per URL in this process; across instances two concurrent updates may drop one id from the list,
   * and that variant then leaves by its own ttl.
   */
  private trackVariant(
    turn: Turn<R>,
    vary: readonly string[],
    id: string,
    until: number,
    tags: readonly string[],
  ): Promise<void> {
    const primary = turn.primary
    // No epoch check: a marker written just after an invalidation of its URL only lists ids whose copies are gone
    // (their lookups miss); what matters, that no copy older than the invalidation is stored, is the callers' check.
    const run = async () => {
      const current = await this.cache.get<Value>(primary)
      const marker = current?.k === 'v' ? current : undefined
      const same = marker !== undefined && sameList(marker.vary, vary)
      const drop: string[] = []
      let variants: string[] = [id]
      if (same) variants = [...(marker.variants ?? []).filter((v) => v !== id), id]
      else if (marker !== undefined) drop.push(...(marker.variants ?? []))
      while (variants.length > this.o.maxVariants) drop.push(variants.shift()!)
      const last = Math.max(until, same ? (marker.until ?? 0) : 0)
      const next: VaryMarker = { k: 'v', vary, variants, until: last }
      await this.cache.set(primary, next, { ttl: Math.max(1, last - Date.now()), grace: 0, tags })
      if (drop.length > 0) await this.cache.deleteMany(drop.map((v) => primary + field('v', v)))
    }
    const previous = this.tracking.get(primary)
    const done = (previous === undefined ? run() : previous.then(run)).catch(() => {
      // Reported by the cache (`error` event); the variant stays until its ttl.
    })
    this.tracking.set(primary, done)
    void done.then(() => {
      if (this.tracking.get(primary) === done) this.tracking.delete(primary)
    })
    return done
  }

  private getOptions(timeout: number): GetOrSetOptions {
    return this.o.lock === undefined ? { timeout } : { timeout, lock: this.o.lock }
  }

  /**
   * The load started by this request. It runs the handler on the request's own exchange when the client is
   * waiting for it anyway (a miss, a refresh past stale-while-revalidate), else a detached copy (a background
   * refresh, a HEAD). `vary` is set when it loads a variant of the URL (the key of a Vary marker).
   */
  private loader(turn: Turn<R>, vary: readonly string[] | undefined) {
    return async (ctx: LoaderContext<Value>): Promise<Value> => {
      const o = this.o
      const ex = turn.ex
      const stale = ctx.stale?.k === 'r' ? ctx.stale : undefined
      const now = Date.now()
      const swr =
        stale !== undefined &&
        !stale.noCache &&
        ex.detached !== undefined &&
        now < stale.storedAt + stale.freshMs + stale.swrMs
      const head = ex.request.method.toUpperCase() === 'HEAD'
      let status: number
      let headers: HttpHeaders
      let outer: HttpHeaders | undefined
      let body: Uint8Array | undefined
      let verdict: Verdict | undefined
      if (swr || head || turn.claimed || turn.answering) {
        if (ex.detached === undefined) {
          ctx.skip()
          return { k: 'p', reason: 'method' }
        }
        const res = await ex.detached(detachedRequest(ex.request))
        status = res.status
        headers = lowerCase(res.headers)
        outer = res.outer === undefined ? undefined : lowerCase(res.outer)
        body = res.body
        // A failed refresh keeps the stale copy (stale-if-error, by the core's grace).
        if (status >= 500 && stale !== undefined) throw new Error(`the refresh answered ${status}`)
        verdict = this.judge(status, headers, ex.request, turn.shared)
        if (verdict.reason === undefined && body.length > o.maxBody) verdict = { ...verdict, reason: 'size' }
      } else {
        turn.claimed = true
        const sieUntil = stale === undefined ? 0 : stale.storedAt + stale.freshMs + stale.sieMs
        let discarded = false
        status = 0
        headers = {}
        let refuse!: () => void
        const refused = new Promise<undefined>((resolve) => {
          refuse = () => resolve(undefined)
        })
        const forwarded = ex.forward((s, hs, before): ForwardDecision => {
          const seen = lowerCase(hs)
          if (verdict === undefined) {
            status = s
            headers = seen
            outer = before === undefined ? undefined : lowerCase(before)
            if (s >= 500 && Date.now() < sieUntil) {
              discarded = true
              turn.failedStatus = s
              return { action: 'discard' }
            }
          }
          let now = this.judgeSized(s, seen, ex.request, turn.shared)
          // The answer that went out is not the one first judged (a later hook replaced it with an error).
          if (verdict !== undefined && s !== status) now = { ...now, reason: 'status' }
          // A second call (the adapter judging the headers as they finally went out, or with a length it learnt)
          // can only veto: what is stored stays the answer as the first call saw it.
          if (verdict === undefined || now.reason !== undefined) verdict = now
          // Not storable: the waiters go on now instead of queueing behind this body (a slow reader, an endless
          // stream).
          if (now.reason !== undefined) refuse()
          return this.sendDecision(now, stale === undefined ? 'fwd=miss' : `fwd=stale; fwd-status=${s}`, s, seen)
        })
        turn.forwarded = forwarded.then(
          () => {
            turn.sent = !discarded
          },
          () => {},
        )
        body = await Promise.race([forwarded, refused])
        if (verdict === undefined || verdict.reason === undefined) {
          turn.sent = !discarded
          if (discarded) throw new Error(`the handler answered ${status}`)
          if (verdict !== undefined && body === undefined) verdict = { ...verdict, reason: 'stream' }
        }
      }
      if (verdict === undefined || verdict.reason !== undefined || body === undefined) {
        ctx.skip()
        const reason = verdict?.reason ?? 'stream'
        if (vary === undefined && STICKY.has(reason)) this.remember(turn, reason)
        return { k: 'p', reason }
      }
      const stored = this.record(status, headers, outer, body, verdict)
      if (!swr && !turn.claimed) turn.filled = true
      const grace = stored.noCache ? stored.sieMs : Math.max(stored.swrMs, stored.sieMs)
      if (stored.noCache && grace === 0) {
        ctx.skip()
        if (vary === undefined) this.remember(turn, 'no-cache')
        return { k: 'p', reason: 'no-cache' }
      }
      const tags = [this.key(`url:${turn.url}`), ...turn.tags]
      ctx.ttl = stored.freshMs
      ctx.grace = grace
      ctx.tags = tags
      if (vary === undefined) {
        if (stored.vary.length === 0) return stored
        // The URL's key keeps which headers pick the variant; the response goes under the variant's key.
        const id = variantId(stored.vary, ex.request.headers)
        try {
          await this.cache.set(turn.primary + field('v', id), stored, { ttl: stored.freshMs, grace, tags })
        } catch {
          // Reported by the cache (`error` event); waiters ask the handler themselves.
          ctx.skip()
          return { k: 'p', reason: 'error' }
        }
        // The marker stays fresh as long as the variant may be served, stale copies included.
        ctx.ttl = stored.freshMs + grace
        ctx.grace = 0
        return { k: 'v', vary: stored.vary, variants: [id], until: Date.now() + stored.freshMs + grace }
      }
      if (!sameList(vary, stored.vary)) {
        // The URL now varies on other headers (or none): store the response where its own Vary puts it.
        ctx.skip()
        if (epoch === turn.epoch) await this.storeAt(turn, stored, { ttl: stored.freshMs, grace, tags })
        // Waiters agree on the old Vary headers only: they may share it only if it varies on nothing.
        return stored.vary.length === 0 ? stored : { k: 'p', reason: 'vary' }
      }
      // A variant of a URL that has a marker: listed there (the oldest beyond maxVariants leave).
      await this.trackVariant(
        turn,
        vary,
        variantId(vary, ex.request.headers),
        Date.now() + stored.freshMs + grace,
        tags,
      )
      return stored
    }
  }

  /** `judge`, and a declared `content-length` over the cap makes it 'size'. */
  private judgeSized(status: number, headers: HttpHeaders, request: HttpRequest, shared: boolean): Verdict {
    const verdict = this.judge(status, headers, request, shared)
    const length = Number(first(headers['content-length']) ?? -1)
    return verdict.reason === undefined && length > this.o.maxBody ? { ...verdict, reason: 'size' } : verdict
  }

  /**
   * A forwarded answer goes out with its Cache-Status (`fwd` first); its body is collected only if storable. `stored`
   * is said only when the body's length is known to fit: a streamed body of unknown length may still outgrow
   * `maxBodySize` after the header has left, so it says `detail=streamed` (and is stored if it fits).
   */
  private sendDecision(verdict: Verdict, fwd: string, status: number, headers: HttpHeaders): ForwardDecision {
    const stored = verdict.reason === undefined
    const sized = status === 204 || status === 304 || first(headers['content-length']) !== undefined
    // Whole seconds, rounded up as on hits: a copy just stored is never announced with ttl=0.
    const member = !stored
      ? `${fwd}; detail=${verdict.reason}`
      : sized
        ? `${fwd}; stored; ttl=${Math.ceil(verdict.freshMs / 1000)}`
        : `${fwd}; detail=streamed`
    return { action: 'send', headers: this.statusHeader(member), capture: stored ? this.o.maxBody : 0 }
  }

  /** Whether a response may be stored, and for how long. `reason` is set when it may not. */
  private judge(status: number, headers: HttpHeaders, request: HttpRequest, shared: boolean): Verdict {
    const o = this.o
    const no = (reason: string): Verdict => ({ reason, freshMs: 0, swrMs: 0, sieMs: 0, noCache: false, vary: [] })
    if (!o.statuses.has(status) || (status === 206 && !present(request.headers.range))) return no('status')
    const cc = cacheControl(headers['cache-control'])
    if (cc.has('no-store')) return no('no-store')
    if (cc.has(MALFORMED)) return no('cache-control')
    if (cc.has('private')) return no('private')
    if (present(headers['set-cookie']) && !shared) return no('set-cookie')
    // A challenge: the answer depends on credentials that are not in the key.
    if (present(headers['www-authenticate']) && !shared) return no('www-authenticate')
    const vary = varyList(headers.vary)
    if (vary === undefined) return no('vary')
    const encoding = first(headers['content-encoding'])?.trim().toLowerCase()
    if (encoding !== undefined && encoding !== '' && encoding !== 'identity' && !vary.includes('accept-encoding')) {
      vary.push('accept-encoding')
      vary.sort()
    }
    // The RFC arithmetic (s-maxage > max-age > Expires, Age and Date) is http-cache-semantics'. It judges the headers
    // only: the status list and the credentials rules are ours, decided above.
    const requestHeaders: Record<string, string> = {}
    for (const [name, value] of Object.entries(request.headers)) {
      if (name !== 'authorization' && name !== 'cookie' && value !== undefined) requestHeaders[name] = join(value)
    }
    const noCache = cc.has('no-cache') || (!present(headers['cache-control']) && /no-cache/i.test(join(headers.pragma)))
    const explicit = cc.has('s-maxage') || cc.has('max-age') || present(headers.expires)
    // A response that says nothing about its freshness is stored only where the route gave a ttl for such answers.
    if (!explicit && !noCache && o.ttl === 0) return no('no-freshness')
    const responseHeaders: Record<string, string> = {}
    for (const [name, value] of Object.entries(headers)) {
      if (name !== 'set-cookie' && value !== undefined) responseHeaders[name] = join(value)
    }
    // http-cache-semantics reads directives as sent (case and all): it gets ours, checked and in lower case.
    responseHeaders['cache-control'] = directives(cc)
    const policy = new CachePolicy(
      { method: 'GET', url: request.url, headers: requestHeaders },
      { status: 200, headers: responseHeaders },
      { shared: true },
    )
    if (!policy.storable()) return no('no-store')
    const stated = (policy.maxAge() - policy.age()) * 1000
    let freshMs = explicit ? Math.max(0, Math.min(o.cap, Number.isFinite(stated) ? stated : 0)) : o.ttl
    if (noCache) freshMs = 0
    const strict = cc.has('must-revalidate') || cc.has('proxy-revalidate')
    const swrMs = strict ? 0 : seconds(cc.get('stale-while-revalidate'), o.swr)
    const sieMs = strict ? 0 : seconds(cc.get('stale-if-error'), o.sie)
    // A no-cache copy serves only stale-if-error: without it there is nothing to keep.
    if (noCache && sieMs === 0) return no('no-cache')
    if (freshMs === 0 && !noCache && swrMs === 0 && sieMs === 0) return no('expired')
    return { reason: undefined, freshMs, swrMs, sieMs, noCache, vary }
  }

  /**
   * The copy to store: the final headers less those that describe one connection or one client, and less `outer`'s
   * (what middleware before the cache set: it sets them again on every request). The body is copied into a buffer
   * of its own exact size, so the store counts (and keeps alive) exactly its bytes, not a shared slab.
   */
  private record(
    status: number,
    headers: HttpHeaders,
    outer: HttpHeaders | undefined,
    body: Uint8Array,
    v: Verdict,
  ): Stored {
    const kept: [string, string][] = []
    const listed = new Set(
      join(headers.connection)
        .toLowerCase()
        .split(',')
        .map((s) => s.trim()),
    )
    let etag: string | undefined
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined || NOT_STORED.has(name) || name.startsWith('proxy-') || listed.has(name)) continue
      if (outer !== undefined && sameValue(value, outer[name])) continue
      if (name === 'etag') etag = join(value)
      if (Array.isArray(value)) for (const item of value) kept.push([name, String(item)])
      else kept.push([name, String(value)])
    }
    if (etag === undefined) {
      etag = `W/"${createHash('sha1').update(body).digest('base64url')}"`
      kept.push(['etag', etag])
    }
    const modified = Date.parse(join(headers['last-modified']))
    return {
      k: 'r',
      status,
      headers: kept,
      body: exact(body),
      etag,
      lastModified: Number.isNaN(modified) ? -1 : modified,
      storedAt: Date.now(),
      age: Math.max(0, Number.parseInt(join(headers.age), 10) || 0),
      freshMs: v.freshMs,
      swrMs: v.swrMs,
      sieMs: v.sieMs,
      noCache: v.noCache,
      vary: v.vary,
    }
  }

  /** Answers the client from a stored response: a 304 when its validators match, no body for HEAD. */
  private async answer(turn: Turn<R>, value: Stored, member: string): Promise<void> {
    turn.answering = true
    const { ex } = turn
    const now = Date.now()
    const age = Math.max(0, Math.floor((now - value.storedAt) / 1000)) + value.age
    const left = (value.storedAt + value.freshMs - now) / 1000
    // Whole seconds: up for a fresh copy (never 0 while fresh), down for a stale one (negative as soon as stale).
    const ttl = left > 0 ? Math.ceil(left) : Math.floor(left)
    const status = member === 'hit' ? `hit; ttl=${ttl}` : `${member}; ttl=${ttl}`
    // Misses carry no Age: the copy was made for this very request.
    const extra: [string, string][] = turn.filled
      ? this.statusHeader(status)
      : [['age', String(age)], ...this.statusHeader(status)]
    const h = ex.request.headers
    if (notModified(value, h)) {
      const headers = this.toHeaders(
        value.headers.filter(([name]) => NOT_MODIFIED_HEADERS.has(name)),
        extra,
      )
      return ex.send({ status: 304, headers, body: EMPTY })
    }
    // The stored headers as an object, built once per stored copy; each answer adds its own Age and Cache-Status.
    let base = built.get(value)
    if (base === undefined) {
      base = this.toHeaders(value.headers, [])
      if (value.status !== 204 && value.status !== 304) base['content-length'] = String(value.body.byteLength)
      built.set(value, base)
    }
    const headers: Record<string, string | string[]> = {}
    for (const name in base) headers[name] = base[name]!
    for (let i = 0; i < extra.length; i++) headers[extra[i]![0]] = extra[i]![1]
    const head = ex.request.method === 'HEAD' || ex.request.method.toUpperCase() === 'HEAD'
    return ex.send({ status: value.status, headers, body: head ? EMPTY : value.body })
  }

  private toHeaders(list: readonly (readonly [string, string])[], extra: readonly (readonly [string, string])[]) {
    const out: Record<string, string | string[]> = {}
    for (const [name, value] of [...list, ...extra]) {
      const had = out[name]
      if (had === undefined) out[name] = value
      else if (Array.isArray(had)) had.push(value)
      else out[name] = [had, value]
    }
    return out
  }

  private statusHeader(member: string): [string, string][] {
    return this.o.name === undefined ? [] : [['cache-status', `${this.o.name}; ${member}`]]
  }

  private async bypass(ex: HttpExchange<R>, why: string): Promise<void> {
    await this.forwardOnly(ex, `fwd=bypass; detail=${why}`)
  }

  private async forwardOnly(ex: HttpExchange<R>, member: string): Promise<void> {
    await ex.forward(() => ({ action: 'send', headers: this.statusHeader(member), capture: 0 }))
  }

  /** RFC 9111 §4.4: a successful unsafe request invalidates the URL's stored responses (and Location's). */
  private async unsafe(ex: HttpExchange<R>): Promise<void> {
    // Asked before the handler runs, so a throwing callback fails the request rather than the invalidation.
    const routeTags = this.o.invalidateTags === undefined ? NO_TAGS : this.o.invalidateTags(ex.source)
    let invalidation: Promise<void> | undefined
    await ex.forward((status, headers) => {
      if (status >= 200 && status < 400) invalidation = this.invalidateAfter(ex, lowerCase(headers), routeTags)
      return { action: 'send', headers: this.statusHeader('fwd=method'), capture: 0, hold: invalidation }
    })
    await invalidation
  }

  private async invalidateAfter(
    ex: HttpExchange<R>,
    headers: HttpHeaders,
    routeTags: readonly string[],
  ): Promise<void> {
    epoch++
    const { protocol, url } = ex.request
    const ignoring = ex.rewriteUrl !== undefined
    const host = validHost(ex.request.host ?? ex.request.headers.host)
    const tags = [...routeTags]
    // A request with an invalid Host has no stored answers: none was ever keyed on it.
    if (host !== undefined) {
      tags.push(this.urlTag(protocol, host, url, ignoring))
      for (const name of ['location', 'content-location']) {
        const target = first(headers[name])
        if (target === undefined) continue
        // A path on this host, as written: the spelling its GETs are keyed with.
        if (target.startsWith('/') && !target.startsWith('//')) {
          const end = target.indexOf('#')
          tags.push(this.urlTag(protocol, host, end < 0 ? target : target.slice(0, end), ignoring))
          continue
        }
        try {
          const base = new URL(`${protocol}://${host}/`)
          const u: URL = new URL(target, base)
          // The same origin, however its host is spelt ('example.com:80' is 'example.com').
          if (u.origin !== base.origin) continue
          tags.push(this.urlTag(u.protocol.slice(0, -1), host, u.pathname + u.search, ignoring))
          if (u.host !== host) tags.push(this.urlTag(u.protocol.slice(0, -1), u.host, u.pathname + u.search, ignoring))
        } catch {
          // Not a URL: nothing to invalidate.
        }
      }
    }
    if (tags.length === 0) return
    try {
      await this.cache.invalidateTags(tags)
    } catch {
      // The cache reported it (its `error` event); the client's answer stands.
    }
  }

  /**
   * The query as keyed, and as the handler must see it. `key`: the parameters sorted by name (a stable sort: the
   * values of one name keep their order, which apps read), less the ignored ones. `seen`: the query without the
   * ignored parameters, in the order sent ('' when none is left), or undefined when nothing was ignored. `ignoring`
   * false keys every parameter (the adapter cannot hide the ignored ones from the app).
   */
  private query(raw: string, ignoring: boolean): { key: string; seen: string | undefined } {
    if (raw === '') return { key: '', seen: undefined }
    const o = this.o
    const kept: [string, string][] = []
    let dropped = false
    for (const pair of raw.split('&')) {
      if (pair === '') continue
      const eq = pair.indexOf('=')
      const name = eq < 0 ? pair : pair.slice(0, eq)
      if (ignoring && (o.ignoreExact.has(name) || o.ignorePrefixes.some((p) => name.startsWith(p)))) {
        dropped = true
        continue
      }
      kept.push([name, pair])
    }
    const seen = dropped ? kept.map((p) => p[1]).join('&') : undefined
    if (kept.length === 0) return { key: '', seen }
    if (kept.length > 1) {
      // Sorted by the name as a query parser reads it ('%61' and 'a' are one name, and so are 'a[]' and 'a' for qs):
      // parameters an app sees under one name keep their order, whatever their spelling.
      for (const pair of kept) pair[0] = parsedName(pair[0])
      kept.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    }
    return { key: kept.map((p) => p[1]).join('&'), seen }
  }

  /** The tag of every stored answer for a URL (all variants, all users). */
  private urlTag(protocol: string, host: string, pathAndQuery: string, ignoring: boolean): string {
    const at = pathAndQuery.indexOf('?')
    const query = at < 0 ? '' : this.query(pathAndQuery.slice(at + 1), ignoring).key
    const path = at < 0 ? pathAndQuery : pathAndQuery.slice(0, at)
    return this.key(
      `url:${field('s', protocol)}${field('h', host.toLowerCase())}${field('p', path)}${field('q', query)}`,
    )
  }

  /** The cache key (or tag) for `text`: readable when short, a hash when it would exceed the cache's key limit. */
  private key(text: string): string {
    const key = this.o.prefix + text
    return key.length <= MAX_KEY ? key : `${this.o.prefix}#${createHash('sha256').update(text).digest('base64url')}`
  }

  /** A variant's key: the URL's key plus a hash of the request's values of the varying headers. */
  private variant(primary: string, vary: readonly string[], headers: HttpHeaders): string {
    return primary + field('v', variantId(vary, headers))
  }
}

interface Verdict {
  reason: string | undefined
  freshMs: number
  swrMs: number
  sieMs: number
  noCache: boolean
  vary: string[]
}

const EMPTY = new Uint8Array(0)
const NOT_STORED_VERDICT: Verdict = { reason: 'method', freshMs: 0, swrMs: 0, sieMs: 0, noCache: false, vary: [] }
/**
 * Bumped by every invalidation this module makes (unsafe requests, `invalidate`): an answer that is stored outside of
 * a `getOrSet` load (which the cache itself guards) is dropped when an invalidation happened while it was produced.
 */
let epoch = 0
/** Stored copies' headers as objects (a stored copy is immutable, and an in-process tier hands out the same one). */
const built = new WeakMap<Stored, Record<string, string | string[]>>()
/** How many URLs a route remembers as uncacheable (hit-for-pass) at most; the oldest is forgotten first. */
const MAX_PASSES = 10_000
/** Reasons that say the URL's responses are not shareable in general (not just this once). */
const STICKY = new Set([
  'no-store',
  'private',
  'status',
  'set-cookie',
  'vary',
  'no-cache',
  'expired',
  'no-freshness',
  'www-authenticate',
  'cache-control',
])
const NO_TAGS: readonly string[] = []
const CONDITIONAL = new Set(['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range'])

/** The GET a background refresh sends: the client's request without its validators (the handler must answer in full). */
function detachedRequest(request: HttpRequest): HttpRequest {
  const headers: Record<string, HeaderValue> = {}
  for (const [name, value] of Object.entries(request.headers)) if (!CONDITIONAL.has(name)) headers[name] = value
  return { ...request, method: 'GET', headers }
}

const KNOWN = new Set([
  'ttl',
  'staleWhileRevalidate',
  'staleIfError',
  'scope',
  'key',
  'tags',
  'invalidateTags',
  'statuses',
  'ignoreQuery',
  'maxBodySize',
  'lock',
  'cacheStatus',
  'keyPrefix',
  'maxVariants',
])

function resolve<R>(options: HttpCacheOptions<R>): Resolved<R> {
  if (options === null || typeof options !== 'object') {
    throw new CacheError('E_INVALID_OPTION', `HTTP cache options must be an object (got ${describe(options)})`)
  }
  for (const name of Object.keys(options)) {
    if (!KNOWN.has(name)) {
      const known = [...KNOWN].join(', ')
      throw new CacheError('E_INVALID_OPTION', `unknown HTTP cache option ${describe(name)} (known: ${known})`)
    }
  }
  const lock = options.lock
  if (lock !== undefined && typeof lock !== 'boolean' && (lock === null || typeof lock !== 'object')) {
    throw new CacheError('E_INVALID_OPTION', `lock must be true, false or { ttl, wait } (got ${describe(lock)})`)
  }
  const fn = <F>(value: F | undefined, name: string): F | undefined => {
    if (value !== undefined && typeof value !== 'function') {
      throw new CacheError('E_INVALID_OPTION', `${name} must be a function (got ${describe(value)})`)
    }
    return value
  }
  if (options.scope !== undefined && options.scope !== 'public') {
    throw new CacheError('E_INVALID_OPTION', `scope must be 'public' or left out (got ${describe(options.scope)})`)
  }
  const statuses = options.statuses ?? DEFAULT_STATUSES
  if (!Array.isArray(statuses) || statuses.some((s) => !Number.isInteger(s) || s < 100 || s > 599)) {
    throw new CacheError('E_INVALID_OPTION', `statuses must be a list of HTTP status codes (got ${describe(statuses)})`)
  }
  const ignore = options.ignoreQuery ?? ['utm_*', 'fbclid', 'gclid']
  if (!Array.isArray(ignore) || ignore.some((p) => typeof p !== 'string' || p === '' || p === '*')) {
    throw new CacheError('E_INVALID_OPTION', `ignoreQuery must be a list of parameter names (got ${describe(ignore)})`)
  }
  const maxBody = options.maxBodySize ?? 1_048_576
  if (!Number.isInteger(maxBody) || maxBody < 0) {
    throw new CacheError('E_INVALID_OPTION', `maxBodySize must be a whole number of bytes (got ${describe(maxBody)})`)
  }
  const name = options.cacheStatus === undefined ? 'cache' : options.cacheStatus
  if (name !== false && (typeof name !== 'string' || !/^[A-Za-z*][\w!#$%&'*+.^`|~:/-]*$/.test(name))) {
    throw new CacheError(
      'E_INVALID_OPTION',
      `cacheStatus must be a token such as 'cache', or false (got ${describe(name)})`,
    )
  }
  const prefix = options.keyPrefix ?? 'http:'
  const maxVariants = options.maxVariants ?? 100
  if (!Number.isInteger(maxVariants) || maxVariants < 1) {
    throw new CacheError('E_INVALID_OPTION', `maxVariants must be a whole number ≥ 1 (got ${describe(maxVariants)})`)
  }
  if (typeof prefix !== 'string') {
    throw new CacheError('E_INVALID_OPTION', `keyPrefix must be a string (got ${describe(prefix)})`)
  }
  return {
    ttl: options.ttl === undefined ? 0 : parseDuration(options.ttl, 'ttl'),
    cap: parseDuration(options.ttl ?? DEFAULT_CAP, 'ttl'),
    maxVariants,
    swr: parseDuration(options.staleWhileRevalidate ?? 0, 'staleWhileRevalidate'),
    sie: parseDuration(options.staleIfError ?? 0, 'staleIfError'),
    scope: options.scope,
    key: fn(options.key, 'key'),
    tags: fn(options.tags, 'tags'),
    invalidateTags: fn(options.invalidateTags, 'invalidateTags'),
    statuses: new Set(statuses),
    ignoreExact: new Set(ignore.filter((p) => !p.endsWith('*'))),
    ignorePrefixes: ignore.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1)),
    maxBody,
    lock: options.lock,
    name: name === false ? undefined : name,
    prefix,
  }
}

/**
 * One part of a key: `name=value|`, with '%' and '|' in the value percent-encoded, so that no value can end its
 * part early or forge the next one (a path holding '|r=' is not a Range part). Each part's name says what it is.
 */
function field(name: string, value: string): string {
  if (value.indexOf('|') < 0 && value.indexOf('%') < 0) return `${name}=${value}|`
  return `${name}=${value.replaceAll('%', '%25').replaceAll('|', '%7C')}|`
}

/** `body` in an ArrayBuffer of its own exact size (a view of a bigger buffer is copied out of it). */
function exact(body: Uint8Array): Uint8Array {
  if (body.byteOffset !== 0 || body.buffer.byteLength !== body.byteLength) return new Uint8Array(body)
  // A Buffer that owns its memory: the same bytes as a plain Uint8Array (what the codec stores type-faithfully).
  return Buffer.isBuffer(body) ? new Uint8Array(body.buffer, 0, body.byteLength) : body
}

/** Two header values are the same: equal strings or numbers, or lists of equal members. */
function sameValue(a: HeaderValue, b: HeaderValue): boolean {
  if (a === undefined || b === undefined) return false
  if (Array.isArray(a) || Array.isArray(b)) {
    const x = Array.isArray(a) ? a : [String(a)]
    const y = Array.isArray(b) ? b : [String(b)]
    return x.length === y.length && x.every((item, i) => String(item) === String(y[i]))
  }
  return String(a) === String(b)
}

/** An absolute URL as written: scheme, authority, path, query (the fragment left out). */
const ABSOLUTE = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(\?[^#]*)?/i

/** RFC 3986 reg-name (unreserved, sub-delims, pct-encoded), IP-literal, then an optional port. */
const HOST =
  /^(?:\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[\w\-.~!$&'()*+,;=:]+)\]|(?:[\w\-.~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)(?::[0-9]{0,5})?$/

/**
 * The request's host in lower case when it is a valid RFC 9110 `uri-host [":" port]` (one value, at most 261
 * characters), else undefined: such a request bypasses the cache (`Host: victim.example/item` would otherwise key a
 * path that is not the one the app served).
 */
function validHost(value: HeaderValue): string | undefined {
  let host: string
  if (typeof value === 'string') host = value
  else if (Array.isArray(value) && value.length === 1) host = value[0]!
  else return undefined
  if (host.length === 0 || host.length > 261 || !HOST.test(host)) return undefined
  return host.toLowerCase()
}

/** A query parameter's name as parsers read it: decoded ('+' is a space), up to a first '[' (qs's a[]=, a[b]=). */
function parsedName(raw: string): string {
  let name = raw
  if (name.indexOf('%') >= 0 || name.indexOf('+') >= 0) {
    try {
      name = decodeURIComponent(name.replaceAll('+', ' '))
    } catch {
      // Not valid percent-encoding: parsers keep such a name as sent.
    }
  }
  // qs reads '[a]' as 'a' too.
  if (name.startsWith('[')) name = name.slice(1)
  const bracket = name.search(/[[\]]/)
  return bracket >= 0 ? name.slice(0, bracket) : name
}

/** Whether a request carries a body: a `Transfer-Encoding`, or a `Content-Length` other than 0. */
function hasBody(h: HttpHeaders): boolean {
  if (present(h['transfer-encoding'])) return true
  const length = h['content-length']
  if (length === undefined) return false
  return Array.isArray(length) ? length.some((l) => l.trim() !== '0') : String(length).trim() !== '0'
}

/** Which variant a request picks: a hash of its values of the headers a response varies on. */
function variantId(vary: readonly string[], headers: HttpHeaders): string {
  const hash = createHash('sha256')
  for (const name of vary) hash.update(`${name}\u0000${normalise(headers[name])}\u0000`)
  return hash.digest('base64url')
}

function present(value: HeaderValue): boolean {
  return value !== undefined && (Array.isArray(value) ? value.length > 0 : String(value) !== '')
}

function first(value: HeaderValue): string | undefined {
  if (value === undefined) return undefined
  if (Array.isArray(value)) return value[0]
  return String(value)
}

function join(value: HeaderValue): string {
  if (value === undefined) return ''
  return Array.isArray(value) ? value.join(', ') : String(value)
}

/** A header's value as compared for Vary: field lines joined, spaces around commas dropped. */
function normalise(value: HeaderValue): string {
  return join(value)
    .trim()
    .replace(/\s*,\s*/g, ',')
}

function lowerCase(headers: HttpHeaders): HttpHeaders {
  let lower = true
  for (const name in headers) {
    if (name !== name.toLowerCase()) {
      lower = false
      break
    }
  }
  if (lower) return headers
  const out: Record<string, HeaderValue> = {}
  for (const [name, value] of Object.entries(headers)) out[name.toLowerCase()] = value
  return out
}

/**
 * Cache-Control directives, names in lower case. A directive given twice with different values, or a delta-seconds
 * directive whose value is not digits, is invalid: RFC 9111 §4.2.1 lets a cache treat the response as stale, and it
 * does (`directives` writes it as 0).
 */
function cacheControl(value: HeaderValue): Map<string, string> {
  const out = new Map<string, string>()
  for (const part of join(value).split(',')) {
    const eq = part.indexOf('=')
    const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase()
    if (name === '') continue
    // Not a directive name ('no-store;', '"max-age'): what the sender meant cannot be known.
    if (!TOKEN.test(name)) out.set(MALFORMED, '')
    let v = eq < 0 ? '' : part.slice(eq + 1).trim()
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1)
    if (DELTA_SECONDS.has(name) && !/^[0-9]+$/.test(v)) v = INVALID
    const had = out.get(name)
    out.set(name, had === undefined || had === v ? v : INVALID)
  }
  return out
}

/** Directives whose value is a number of seconds. */
const DELTA_SECONDS = new Set(['max-age', 's-maxage', 'stale-while-revalidate', 'stale-if-error'])
const INVALID = '\u0000invalid'
/** Set in a parsed Cache-Control when one of its directives is not a token: such a response is never stored. */
const MALFORMED = '\u0000malformed'

/** `cc` as a Cache-Control value; an invalid number of seconds is written as 0 (stale). */
function directives(cc: Map<string, string>): string {
  const parts: string[] = []
  for (const [name, value] of cc) {
    if (name === MALFORMED) continue
    if (DELTA_SECONDS.has(name)) parts.push(`${name}=${value === INVALID ? '0' : value}`)
    else if (value === '' || value === INVALID) parts.push(name)
    else parts.push(`${name}="${value.replace(/["\\]/g, '')}"`)
  }
  return parts.join(', ')
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/

/** The Vary list in lower case, or `undefined` for `Vary: *` or a member that is not a field name (never stored). */
function varyList(value: HeaderValue): string[] | undefined {
  const out: string[] = []
  for (const part of join(value).split(',')) {
    const name = part.trim().toLowerCase()
    if (name === '*') return undefined
    if (name === '') continue
    // Not a field name: what it means cannot be known, so nothing varying on it may be shared.
    if (!TOKEN.test(name)) return undefined
    if (!out.includes(name)) out.push(name)
  }
  return out.sort()
}

function seconds(directive: string | undefined, fallback: number): number {
  if (directive === undefined) return fallback
  if (directive === INVALID) return 0
  // A stale window longer than a year is a year: a mistyped value must not pin a copy for ever.
  return Math.min(Number.parseInt(directive, 10) * 1000, MAX_STALE_MS)
}

const MAX_STALE_MS = 365 * 86_400_000

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/** RFC 9110 §13.1.2 (weak comparison) and §13.1.3. */
function notModified(value: Stored, h: HttpHeaders): boolean {
  // RFC 9110 §13.2.1: preconditions apply to 2xx answers only.
  if (value.status < 200 || value.status >= 300) return false
  const inm = h['if-none-match']
  if (present(inm)) {
    const tags = join(inm)
      .split(',')
      .map((t) => t.trim())
    if (tags.includes('*')) return true
    const mine = weak(value.etag)
    return tags.some((t) => weak(t) === mine)
  }
  const ims = first(h['if-modified-since'])
  if (ims === undefined || value.lastModified < 0) return false
  const since = Date.parse(ims)
  return !Number.isNaN(since) && value.lastModified <= since
}

function weak(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag
}
