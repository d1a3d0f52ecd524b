import { connect, type Socket } from 'node:net'

/** Where a server listens. */
export interface HostPort {
  host: string
  port: number
}

/** An error reply (`-ERR …`, `-MOVED …`). Thrown for a top-level reply; kept as a value inside arrays. */
export class RespError extends Error {
  override readonly name = 'RespError'
}

/** No reply within the timeout: the connection is closed, since a late reply would answer the wrong command. */
export class ReplyTimeoutError extends Error {
  override readonly name = 'ReplyTimeoutError'
  readonly code = 'ETIMEDOUT'
}

/** A RESP2 reply: simple and bulk strings as UTF-8 strings, integers, null, arrays, errors inside arrays. */
export type RespValue = string | number | null | RespError | RespValue[]

export type RespArg = string | number | Buffer

export function encodeCommand(args: readonly RespArg[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)]
  for (const arg of args) {
    const data = Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg))
    parts.push(Buffer.from(`$${data.length}\r\n`), data, Buffer.from('\r\n'))
  }
  return Buffer.concat(parts)
}

interface Parsed {
  value: RespValue
  next: number
}

/** Parses one reply at `pos`; undefined when the buffer does not hold all of it yet. */
export function parseReply(buf: Buffer, pos = 0): Parsed | undefined {
  if (pos >= buf.length) return undefined
  const eol = buf.indexOf('\r\n', pos)
  if (eol === -1) return undefined
  const type = String.fromCharCode(buf[pos]!)
  const line = buf.toString('utf8', pos + 1, eol)
  const after = eol + 2
  switch (type) {
    case '+':
      return { value: line, next: after }
    case '-':
      return { value: new RespError(line), next: after }
    case ':':
      return { value: Number(line), next: after }
    case '$': {
      const len = Number(line)
      if (len < 0) return { value: null, next: after }
      if (buf.length < after + len + 2) return undefined
      return { value: buf.toString('utf8', after, after + len), next: after + len + 2 }
    }
    case '*': {
      const count = Number(line)
      if (count < 0) return { value: null, next: after }
      const items: RespValue[] = []
      let next = after
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, next)
        if (!item) return undefined
        items.push(item.value)
        next = item.next
      }
      return { value: items, next }
    }
    default:
      throw new Error(`not a RESP2 reply (type byte ${JSON.stringify(type)})`)
  }
}

interface Pending {
  resolve: (value: RespValue) => void
  reject: (error: Error) => void
  timer: NodeJS.Timeout
}

/**
 * A minimal RESP2 client over one raw TCP connection, for tests that check a server directly. Commands are
 * pipelined; each has its own reply timeout, which also works as a liveness probe (a paused server never answers).
 */
export class RespClient {
  private buffer: Buffer = Buffer.alloc(0)
  private readonly pending: Pending[] = []
  private failure: Error | undefined

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('error', (err) => this.fail(err))
    socket.on('close', () => this.fail(new Error('connection closed')))
  }

  /** Connects to `target`; rejects on refusal or when not connected within `timeoutMs`. */
  static connect(target: HostPort, options: { timeoutMs?: number } = {}): Promise<RespClient> {
    const timeoutMs = options.timeoutMs ?? 2_000
    return new Promise((resolve, reject) => {
      const socket = connect({ host: target.host, port: target.port })
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new ReplyTimeoutError(`could not connect to ${target.host}:${target.port} within ${timeoutMs} ms`))
      }, timeoutMs)
      socket.once('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
      socket.once('connect', () => {
        clearTimeout(timer)
        socket.removeAllListeners('error')
        socket.setNoDelay(true)
        resolve(new RespClient(socket))
      })
    })
  }

  /** Sends one command; resolves with its reply, rejects with a RespError for an error reply. */
  command(args: readonly RespArg[], options: { timeoutMs?: number } = {}): Promise<RespValue> {
    const timeoutMs = options.timeoutMs ?? 2_000
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new ReplyTimeoutError(`no reply to ${String(args[0])} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.push({ resolve, reject, timer })
      this.socket.write(encodeCommand(args))
    })
  }

  close(): void {
    this.fail(new Error('connection closed by the client'))
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
    let pos = 0
    for (;;) {
      let parsed: Parsed | undefined
      try {
        parsed = parseReply(this.buffer, pos)
      } catch (err) {
        this.fail(err as Error)
        return
      }
      if (!parsed) break
      pos = parsed.next
      const waiter = this.pending.shift()
      if (!waiter) continue
      clearTimeout(waiter.timer)
      if (parsed.value instanceof RespError) waiter.reject(parsed.value)
      else waiter.resolve(parsed.value)
    }
    this.buffer = this.buffer.subarray(pos)
  }

  private fail(error: Error): void {
    if (!this.failure) this.failure = error
    this.socket.destroy()
    for (const waiter of this.pending.splice(0)) {
      clearTimeout(waiter.timer)
      waiter.reject(error)
    }
  }
}

/** One command on a fresh connection, closed afterwards. */
export async function redisCommand(
  target: HostPort,
  args: readonly RespArg[],
  options: { timeoutMs?: number } = {},
): Promise<RespValue> {
  const client = await RespClient.connect(target, options)
  try {
    return await client.command(args, options)
  } finally {
    client.close()
  }
}

/**
 * One command against a Redis Cluster: sent to the first startup node, following MOVED and ASK redirections.
 */
export async function clusterCommand(
  startupNodes: readonly HostPort[],
  args: readonly RespArg[],
  options: { timeoutMs?: number; maxRedirections?: number } = {},
): Promise<RespValue> {
  const first = startupNodes[0]
  if (!first) throw new Error('clusterCommand: no startup node')
  let target: HostPort = first
  let asking = false
  const max = options.maxRedirections ?? 5
  for (let hop = 0; ; hop++) {
    const client = await RespClient.connect(target, options)
    try {
      if (asking) await client.command(['ASKING'], options)
      return await client.command(args, options)
    } catch (err) {
      const redirect = err instanceof RespError ? /^(MOVED|ASK) \d+ (.+):(\d+)$/.exec(err.message) : null
      if (!redirect || hop >= max) throw err
      asking = redirect[1] === 'ASK'
      target = { host: redirect[2]!, port: Number(redirect[3]) }
    } finally {
      client.close()
    }
  }
}
