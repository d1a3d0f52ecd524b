import { IncomingMessage, Server, ServerResponse, STATUS_CODES } from 'node:http'
import { Socket } from 'node:net'
import type { ForwardDecision, HttpExchange, HttpHeaders, HttpRequest, HttpResponse } from './types.js'

/** Global (Symbol.for) so two copies of this module (ESM and CJS) agree. */
export const DETACHED = Symbol.for('@cache/core/http.detached')
/** A detached run that never ends is given up after this long. */
const DETACHED_LIMIT_MS = 60_000

type Write = ServerResponse['write']
type End = ServerResponse['end']
type WriteHead = ServerResponse['writeHead']
type Callback = (error?: Error | null) => void

/**
 * An exchange over Node's own request and response: plain `node:http`, express, anything built on them. `run`
 * starts the route's handler, which answers through `res` as usual; the engine sees its status and headers at
 * `writeHead` (or the first write) and collects the body from `write`/`end` while it goes to the client. `url`
 * defaults to `req.url` (pass express's `req.originalUrl`). When `req.socket.server` is a Node server, `detached`
 * runs copies of the request through it (see `runDetached`).
 *
 * @example
 * const http = createHttpCache(cache, { ttl: '30s' })
 * createServer((req, res) => {
 *   if (isDetached(req)) return route(req, res)
 *   http.handle(nodeExchange(req, res, () => route(req, res), req)).catch(() => res.destroy())
 * })
 */
export function nodeExchange<R>(
  req: IncomingMessage,
  res: ServerResponse,
  run: () => void,
  source: R,
  url?: string,
): HttpExchange<R> {
  const socket = req.socket as (Socket & { encrypted?: boolean; server?: unknown }) | undefined
  const request: HttpRequest = {
    method: req.method ?? 'GET',
    protocol: socket?.encrypted === true ? 'https' : 'http',
    url: url ?? req.url ?? '/',
    headers: req.headers,
  }
  const server = socket?.server
  // The response's own methods, saved when forward() wraps them: what send() uses after a discarded answer.
  const original = {
    writeHead: res.writeHead as (...args: unknown[]) => ServerResponse,
    end: res.end as (...args: unknown[]) => ServerResponse,
  }
  return {
    request,
    source,
    forward: (head) => forward(res, run, head),
    // The handler reads `req.url` (and express its query from it): the query part is replaced, the path is kept.
    rewriteUrl: (to) => {
      const at = to.indexOf('?')
      const query = at < 0 ? '' : to.slice(at)
      const own = req.url ?? '/'
      const q = own.indexOf('?')
      req.url = (q < 0 ? own : own.slice(0, q)) + query
    },
    send: (response) => {
      // A reason phrase of our own: the handler's (express's error handler sets one) must not survive a discard.
      res.statusMessage = STATUS_CODES[response.status] ?? ''
      original.writeHead.call(res, response.status, response.headers as Record<string, string | string[]>)
      // Node drops the body of HEAD, 204 and 304 answers by itself; the engine sends none for them anyway.
      if (req.method === 'HEAD' || response.body.byteLength === 0) original.end.call(res)
      else original.end.call(res, response.body)
    },
    pass: (headers) => {
      for (const [name, value] of headers) res.setHeader(name, value)
      run()
    },
    detached: server instanceof Server ? (copy) => runDetached(server, copy) : undefined,
  }
}

/**
 * Runs the handler with `res`'s writes watched: `head` decides at the first of writeHead/write/end. The wrappers
 * stay on `res` after the answer (deleting them would slow every later property access of the object); once decided
 * they only pass through or swallow.
 */
function forward(
  res: ServerResponse,
  run: () => void,
  head: (status: number, headers: HttpHeaders, outer: HttpHeaders) => ForwardDecision,
): Promise<Uint8Array | undefined> {
  return new Promise((resolve, reject) => {
    const writeHead = res.writeHead as (...args: unknown[]) => ServerResponse
    const write = res.write as (...args: unknown[]) => boolean
    const end = res.end as (...args: unknown[]) => ServerResponse
    // What earlier middleware set (CORS, a request id, a session cookie, Cache-Control: private): the engine judges
    // the final headers, these included, but stores none of them unchanged (they belong to this request), and a
    // discarded answer falls back to them.
    const outer = res.getHeaders()
    const before = Object.keys(outer)
    let discard = false
    let decided = false
    let hold: Promise<void> | undefined
    let chunks: Buffer[] | undefined
    let size = 0
    let cap = 0
    let done = false

    const finish = (body: Uint8Array | undefined) => {
      if (done) return
      done = true
      resolve(body)
    }
    /** The header argument of the writeHead that sent the headers: Node does not always merge it into getHeaders(). */
    let given: unknown
    let rechecked = false
    const current = (extra: unknown) => {
      const headers = res.getHeaders() as Record<string, string | number | readonly string[] | undefined>
      if (extra !== undefined && extra !== null) {
        for (const [name, value] of headerPairs(extra)) headers[name.toLowerCase()] = value
      }
      return headers
    }
    /**
     * Once the headers have gone out, the engine judges them again as they went: middleware before the cache may
     * have wrapped writeHead too (express-session adds its Set-Cookie there, through on-headers), and its wrapper
     * runs inside this one, after the first decision. The second decision can only withdraw the copy.
     */
    const recheck = () => {
      if (rechecked || !res.headersSent) return
      rechecked = true
      if (chunks === undefined) return
      const again = head(res.statusCode, current(given), outer)
      if (again.action !== 'send' || again.capture <= 0) {
        chunks = undefined
        // Nothing will be stored: whoever waits for this answer may go on now.
        finish(undefined)
      } else cap = Math.min(cap, again.capture)
    }
    const decide = (status: number, extra?: unknown): void => {
      if (decided) return
      decided = true
      given = extra
      const decision = head(status, current(extra), outer)
      if (decision.action === 'discard') {
        discard = true
        // Undo what the handler set; the engine answers with a stored copy through send().
        for (const name of res.getHeaderNames()) if (!before.includes(name)) res.removeHeader(name)
        for (const [name, value] of Object.entries(outer)) if (value !== undefined) res.setHeader(name, value)
        return
      }
      for (const [name, value] of decision.headers) res.setHeader(name, value)
      hold = decision.hold
      if (decision.capture > 0) {
        chunks = []
        cap = decision.capture
      }
    }
    const collect = (chunk: unknown, encoding: unknown) => {
      if (chunks === undefined) return
      const buf = copyOf(chunk, encoding)
      if (buf === undefined) return
      size += buf.byteLength
      // Past the cap the body still goes to the client in full; only the copy is dropped, and whoever waits for
      // this answer to be stored may go on at once (a client that reads slowly must not hold them up).
      if (size > cap) {
        chunks = undefined
        finish(undefined)
      } else chunks.push(buf)
    }

    res.writeHead = function (this: ServerResponse, status: number, ...rest: unknown[]) {
      decide(status, typeof rest[0] === 'string' ? rest[1] : rest[0])
      if (discard) return this
      const out = writeHead.call(this, status, ...rest)
      recheck()
      return out
    } as WriteHead
    res.write = function (this: ServerResponse, chunk: unknown, encoding?: unknown, cb?: unknown) {
      decide(this.statusCode)
      if (discard) {
        const callback = typeof encoding === 'function' ? encoding : cb
        if (typeof callback === 'function') process.nextTick(callback as Callback)
        return true
      }
      collect(chunk, encoding)
      return write.call(this, chunk, encoding, cb)
    } as Write
    res.end = function (this: ServerResponse, chunk?: unknown, encoding?: unknown, cb?: unknown) {
      // The whole body is here: give the engine its length, which Node only adds after writeHead.
      if (!decided && !this.hasHeader('content-length') && (typeof chunk === 'string' || chunk instanceof Uint8Array)) {
        const length =
          typeof chunk === 'string'
            ? Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
            : chunk.byteLength
        decide(this.statusCode, { 'content-length': String(length) })
      }
      decide(this.statusCode)
      if (discard) {
        const callback = typeof chunk === 'function' ? chunk : typeof encoding === 'function' ? encoding : cb
        if (typeof callback === 'function') process.nextTick(callback as Callback)
        finish(undefined)
        return this
      }
      collect(chunk, encoding)
      if (hold === undefined) return end.call(this, chunk, encoding, cb)
      hold.then(() => end.call(this, chunk, encoding, cb))
      return this
    } as End

    // 'close' follows 'finish' for a complete answer; alone, it means the client went away or the handler destroyed
    // the response mid-body: nothing of it may be stored.
    res.once('close', () => {
      finish(res.writableFinished && chunks !== undefined ? Buffer.concat(chunks) : undefined)
    })
    try {
      run()
    } catch (err) {
      done = true
      reject(err)
    }
  })
}

/** A copy of what a `write`/`end` was given (the caller may reuse its buffer), or undefined for no data. */
function copyOf(chunk: unknown, encoding: unknown): Buffer | undefined {
  if (chunk === undefined || chunk === null || typeof chunk === 'function') return undefined
  if (typeof chunk === 'string') {
    return Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
  }
  return Buffer.from(chunk as Uint8Array)
}

/** What earlier middleware had set on a detached request's response: `runDetached` hands it over as `outer`. */
const OUTER = Symbol('@cache/core/http.outer')

/**
 * For a request made by `runDetached` (see `isDetached`): runs the handler, telling the engine what earlier
 * middleware had set on `res` (a request id, a session cookie, `Cache-Control: private`): those headers count in
 * whether the refresh may be stored, as on any answer, but are left out of the stored copy. `outer` gives them when
 * they are not on `res` (hono keeps them on its own Response until the handler is done).
 *
 * @example
 * if (isDetached(req)) return forwardDetached(res, next)
 */
export function forwardDetached(res: ServerResponse, run: () => void, outer?: HttpHeaders): void {
  const mine = res as unknown as Record<symbol, unknown>
  mine[OUTER] = outer === undefined ? res.getHeaders() : { ...res.getHeaders(), ...outer }
  run()
}

function headerPairs(extra: unknown): [string, string | number | readonly string[]][] {
  if (extra === undefined || extra === null) return []
  if (Array.isArray(extra)) {
    const out: [string, string][] = []
    if (Array.isArray(extra[0])) for (const [name, value] of extra as [string, string][]) out.push([name, value])
    else for (let i = 0; i + 1 < extra.length; i += 2) out.push([String(extra[i]), String(extra[i + 1])])
    return out
  }
  return Object.entries(extra as Record<string, string | number | readonly string[]>)
}

/**
 * Runs a copy of `request` through `server`'s request listeners, with no socket, and resolves with the complete
 * response. The copy is marked (see `isDetached`) so cache middleware passes it straight to the handler. Rejects
 * when the handler destroys the response or has not answered within a minute.
 *
 * @example
 * const fresh = await runDetached(server, { method: 'GET', protocol: 'http', url: '/todos', headers: { host } })
 */
export function runDetached(server: Server, request: HttpRequest): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const socket = new Socket()
    const req = new IncomingMessage(socket)
    req.method = request.method
    req.url = request.url
    req.httpVersion = '1.1'
    req.httpVersionMajor = 1
    req.httpVersionMinor = 1
    const headers: Record<string, string | string[]> = {}
    const raw: string[] = []
    for (const [name, value] of Object.entries(request.headers)) {
      if (value === undefined) continue
      const lower = name.toLowerCase()
      headers[lower] = Array.isArray(value) ? [...value] : String(value)
      for (const item of Array.isArray(value) ? value : [String(value)]) raw.push(lower, item)
    }
    req.headers = headers
    req.rawHeaders = raw
    ;(req as unknown as Record<symbol, boolean>)[DETACHED] = true
    req.push(null)
    const res = new ServerResponse(req)
    const chunks: Buffer[] = []
    let settled = false
    const timer = setTimeout(
      () => fail(new Error(`no answer to ${request.url} within ${DETACHED_LIMIT_MS} ms`)),
      DETACHED_LIMIT_MS,
    )
    timer.unref()
    const fail = (err: Error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      reject(err)
    }
    const add = (chunk: unknown, encoding: unknown) => {
      const buf = copyOf(chunk, encoding)
      if (buf !== undefined) chunks.push(buf)
    }
    // Nothing reaches a socket: the writes are collected, and 'finish' is ours to emit.
    const writeHead = res.writeHead
    res.writeHead = function (this: ServerResponse, status: number, ...rest: unknown[]) {
      // Headers given only to writeHead are not in getHeaders(): set them so the collected response has them.
      const extra = typeof rest[0] === 'string' ? rest[1] : rest[0]
      for (const [name, value] of headerPairs(extra)) this.setHeader(name, value)
      return (writeHead as (...a: unknown[]) => ServerResponse).call(this, status)
    } as WriteHead
    res.write = function (this: ServerResponse, chunk: unknown, encoding?: unknown, cb?: unknown) {
      if (!this.headersSent) this.writeHead(this.statusCode)
      add(chunk, encoding)
      const callback = typeof encoding === 'function' ? encoding : cb
      if (typeof callback === 'function') process.nextTick(callback as Callback)
      return true
    } as Write
    res.end = function (this: ServerResponse, chunk?: unknown, encoding?: unknown, cb?: unknown) {
      if (settled) return this
      if (!this.headersSent) this.writeHead(this.statusCode)
      add(chunk, encoding)
      const callback = typeof chunk === 'function' ? chunk : typeof encoding === 'function' ? encoding : cb
      if (typeof callback === 'function') process.nextTick(callback as Callback)
      settled = true
      clearTimeout(timer)
      ;(this as unknown as { finished: boolean }).finished = true
      const out: Record<string, string | string[]> = {}
      for (const [name, value] of Object.entries(this.getHeaders())) {
        if (value !== undefined) out[name] = Array.isArray(value) ? value : String(value)
      }
      const outer = (this as unknown as Record<symbol, HttpHeaders | undefined>)[OUTER]
      resolve({ status: this.statusCode, headers: out, outer, body: Buffer.concat(chunks) })
      this.emit('prefinish')
      this.emit('finish')
      this.emit('close')
      return this
    } as End
    res.destroy = function (this: ServerResponse, error?: Error) {
      fail(error ?? new Error(`the handler of ${request.url} destroyed its response`))
      return this
    } as ServerResponse['destroy']
    try {
      server.emit('request', req, res)
    } catch (err) {
      fail(err instanceof Error ? err : new Error(String(err)))
    }
  })
}

/** True for a request made by `runDetached`: cache middleware must call the handler and nothing else. */
export function isDetached(req: unknown): boolean {
  return typeof req === 'object' && req !== null && (req as Record<symbol, unknown>)[DETACHED] === true
}
