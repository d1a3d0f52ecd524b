// The HTTP client side of `httpAdapterSuite`: requests over loopback, and the parsing of `Cache-Status` (RFC 9211).
import { request as httpRequest } from 'node:http'

/** A response as the suite inspects it: bytes exactly as received, headers as a `Headers`. */
export interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly bytes: Uint8Array
  /** The body decoded as UTF-8. */
  readonly text: string
  /** False when the connection ended before the body did (an aborted stream). */
  readonly complete: boolean
}

export interface RequestInit {
  method?: string
  headers?: Record<string, string>
  /** A body, sent with its `content-length` (`rawRequest` only: `fetch` sends none with GET). */
  body?: string
  /** The request-target sent exactly as given, instead of the URL's path and query (`rawRequest` only). */
  target?: string
}

const decoder = new TextDecoder()

/**
 * `fetch` as a browser-less client uses it, but without following redirects (the suite checks 3xx statuses). Note
 * that undici adds `accept-encoding: gzip, deflate` and decodes such bodies: use `rawRequest` to see the bytes sent.
 */
export async function fetchReply(url: string, init: RequestInit = {}): Promise<Reply> {
  const res = await fetch(url, { method: init.method ?? 'GET', headers: init.headers ?? {}, redirect: 'manual' })
  let bytes: Uint8Array
  let complete = true
  try {
    bytes = new Uint8Array(await res.arrayBuffer())
  } catch {
    bytes = new Uint8Array(0)
    complete = false
  }
  return { status: res.status, headers: res.headers, bytes, text: decoder.decode(bytes), complete }
}

/**
 * One request through `node:http`, on its own connection: it sends exactly the headers given (`Host` included, and
 * no `Accept-Encoding` unless given) and returns the body bytes as they came over the wire (never decompressed).
 */
export function rawRequest(url: string, init: RequestInit = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const at = new URL(url)
    const options = {
      method: init.method ?? 'GET',
      // Node sends a GET's body without a length unless told it.
      headers:
        init.body === undefined
          ? (init.headers ?? {})
          : { ...init.headers, 'content-length': String(Buffer.byteLength(init.body)) },
      agent: false,
      host: at.hostname,
      port: at.port,
      // A path given as a string is sent as is: a URL would drop a '#…' or normalise '..'.
      path: init.target ?? at.pathname + at.search,
    }
    const req = httpRequest(options, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      // 'close' comes after 'end' on a complete body, and alone when the server cut the connection mid-body.
      res.on('error', () => {})
      res.on('close', () => {
        const headers = new Headers()
        for (const [name, value] of Object.entries(res.headers)) {
          if (value === undefined) continue
          for (const one of Array.isArray(value) ? value : [value]) headers.append(name, one)
        }
        const bytes = new Uint8Array(Buffer.concat(chunks))
        resolve({ status: res.statusCode ?? 0, headers, bytes, text: decoder.decode(bytes), complete: res.complete })
      })
    })
    req.on('error', reject)
    req.end(init.body)
  })
}

/** One `Cache-Status` member: its parameters, a bare key (`hit`, `stored`) as `true`. */
export type CacheStatusParams = Readonly<Record<string, string | true>>

/**
 * The parameters of the member named `name` in a `Cache-Status` value, or `undefined` when there is none. Members
 * are separated by ',' and parameters by ';'; quoted values are unquoted.
 */
export function parseCacheStatus(value: string | null, name = 'cache'): CacheStatusParams | undefined {
  if (value === null) return undefined
  for (const member of value.split(',')) {
    const [head, ...params] = member.split(';').map((part) => part.trim())
    if (unquote(head ?? '') !== name) continue
    const out: Record<string, string | true> = {}
    for (const param of params) {
      if (param === '') continue
      const eq = param.indexOf('=')
      if (eq === -1) out[param.toLowerCase()] = true
      else out[param.slice(0, eq).trim().toLowerCase()] = unquote(param.slice(eq + 1).trim())
    }
    return out
  }
  return undefined
}

function unquote(text: string): string {
  return text.length >= 2 && text.startsWith('"') && text.endsWith('"') ? text.slice(1, -1) : text
}

/** Settles after `ms`. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `check` every 20 ms until it is true or `timeoutMs` passes; resolves to its last answer. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<boolean> {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() >= end) return false
    await sleep(20)
  }
}

/** A promise to open from outside: holds a handler until the test lets it go. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void
  const promise = new Promise<void>((resolve) => {
    open = resolve
  })
  return { promise, open }
}
