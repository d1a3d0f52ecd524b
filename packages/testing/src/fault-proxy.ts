import { connect, createServer, type Server, type Socket } from 'node:net'
import { LOOPBACK } from './ports.js'
import { registry } from './registry.js'
import type { HostPort } from './resp.js'

export interface FaultProxyOptions {
  /** The server to forward to; when it has a `url` ('redis://…'), the proxy gets one with the same scheme. */
  target: HostPort & { url?: string }
  /** Latency from the start, in ms (see `setLatency`). Default 0. */
  latencyMs?: number
}

/**
 * A TCP proxy on 127.0.0.1 in front of a server, for failure tests: latency, a black hole, cut connections.
 */
export interface FaultProxy extends HostPort {
  readonly host: string
  readonly port: number
  /** 'host:port' */
  readonly address: string
  /** The target's URL with the proxy's address ('redis://127.0.0.1:PROXYPORT'); undefined without a target url. */
  readonly url: string | undefined
  /** Connections currently open through the proxy. */
  readonly connections: number
  /** Delays every chunk by `ms` in both directions, keeping their order. 0 turns it off. */
  setLatency(ms: number): void
  /**
   * On: new connections are accepted but never reach the target, and nothing is forwarded on any connection
   * (data is held, so nothing is ever answered). Off: held data flows again, in order, and connections accepted
   * meanwhile are connected to the target — like a network partition that heals, after which TCP delivers late.
   */
  blackhole(on?: boolean): void
  /** Resets every current connection (both sides); the clients see their socket close. New ones still work. */
  cutAll(): void
  /** Cuts every connection and stops listening. */
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

type Item = { at: number; chunk: Buffer } | { at: number; end: true } | { at: number; destroy: true }

/** One direction of one connection: a queue that releases chunks in order once their time has come. */
class Flow {
  private readonly queue: Item[] = []
  private timer: NodeJS.Timeout | undefined
  private waitingForDrain = false

  constructor(
    private readonly from: () => Socket | undefined,
    private readonly to: () => Socket | undefined,
    private readonly proxy: ProxyState,
  ) {}

  push(item: Item): void {
    this.queue.push(item)
    this.pump()
  }

  pump(): void {
    if (this.timer || this.proxy.blackholed) return
    const to = this.to()
    if (!to) return
    while (this.queue.length > 0) {
      const head = this.queue[0]!
      const wait = head.at - Date.now()
      if (wait > 0) {
        this.timer = setTimeout(() => {
          this.timer = undefined
          this.pump()
        }, wait)
        return
      }
      this.queue.shift()
      if (to.destroyed) continue
      if ('chunk' in head) {
        if (!to.write(head.chunk)) this.applyBackpressure(to)
      } else if ('end' in head) {
        to.end()
      } else {
        to.destroy()
      }
    }
  }

  /** Stops reading the source until the destination drains. */
  private applyBackpressure(to: Socket): void {
    const from = this.from()
    if (!from || this.waitingForDrain) return
    this.waitingForDrain = true
    from.pause()
    to.once('drain', () => {
      this.waitingForDrain = false
      from.resume()
    })
  }

  clear(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.queue.length = 0
  }
}

interface ProxyState {
  blackholed: boolean
  latencyMs: number
}

/** A client connection and, once connected, its upstream connection. */
class Link {
  private upstream: Socket | undefined
  private readonly toUpstream: Flow
  private readonly toClient: Flow

  constructor(
    private readonly client: Socket,
    private readonly target: HostPort,
    private readonly proxy: ProxyState,
    private readonly onGone: (link: Link) => void,
  ) {
    this.toUpstream = new Flow(
      () => this.client,
      () => this.upstream,
      proxy,
    )
    this.toClient = new Flow(
      () => this.upstream,
      () => this.client,
      proxy,
    )
    this.wire(client, this.toUpstream)
    client.on('close', () => {
      if (!this.upstream || this.upstream.destroyed) this.onGone(this)
    })
    if (!proxy.blackholed) this.connectUpstream()
  }

  /** Feeds `socket`'s data, end and abrupt close into `flow`, each due `latencyMs` after it happened. */
  private wire(socket: Socket, flow: Flow): void {
    const due = (): number => Date.now() + this.proxy.latencyMs
    socket.on('data', (chunk: Buffer) => flow.push({ at: due(), chunk }))
    socket.on('end', () => flow.push({ at: due(), end: true }))
    socket.on('close', (hadError) => {
      if (hadError) flow.push({ at: due(), destroy: true })
    })
  }

  private connectUpstream(): void {
    if (this.upstream || this.client.destroyed) return
    const upstream = connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true })
    this.upstream = upstream
    upstream.setNoDelay(true)
    this.wire(upstream, this.toClient)
    // A refused or failed upstream resets the client, as a server going away would.
    upstream.on('error', () => {
      if (!this.client.destroyed) this.client.resetAndDestroy()
    })
    upstream.on('close', () => {
      if (this.client.destroyed) this.onGone(this)
    })
    // Held client data is written now; Node buffers it until the connection is up.
    this.toUpstream.pump()
  }

  /** After a black hole: connect when not yet connected and release whatever was held, in order. */
  release(): void {
    this.connectUpstream()
    this.toUpstream.pump()
    this.toClient.pump()
  }

  cut(): void {
    this.toUpstream.clear()
    this.toClient.clear()
    for (const socket of [this.client, this.upstream]) {
      if (socket && !socket.destroyed) socket.resetAndDestroy()
    }
  }
}

/** Starts a TCP proxy on 127.0.0.1 and a free port, forwarding to `target`. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const { target } = options
  const state: ProxyState = { blackholed: false, latencyMs: 0 }
  const links = new Set<Link>()
  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    client.setNoDelay(true)
    client.on('error', () => {
      // 'close' (with hadError) follows and is handled by the link.
    })
    links.add(new Link(client, target, state, (link) => links.delete(link)))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: LOOPBACK, port: 0 }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  if (!address || typeof address !== 'object') throw new Error('the fault proxy has no address')
  const port = address.port
  const scheme = target.url ? /^([a-z][a-z0-9+.-]*):\/\//i.exec(target.url)?.[1] : undefined
  let closed: Promise<void> | undefined
  const handle = { stop: () => proxy.close() }

  const proxy: FaultProxy = {
    host: LOOPBACK,
    port,
    address: `${LOOPBACK}:${port}`,
    url: scheme ? `${scheme}://${LOOPBACK}:${port}` : undefined,
    get connections() {
      return links.size
    },
    setLatency(ms: number) {
      if (!Number.isFinite(ms) || ms < 0) throw new Error(`setLatency: expected ms ≥ 0, got ${ms}`)
      state.latencyMs = ms
    },
    blackhole(on = true) {
      state.blackholed = on
      if (!on) for (const link of links) link.release()
    },
    cutAll() {
      for (const link of [...links]) {
        link.cut()
        links.delete(link)
      }
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        proxy.cutAll()
        registry().handles.delete(handle)
      })
      return closed
    },
    [Symbol.asyncDispose]() {
      return proxy.close()
    },
  }
  proxy.setLatency(options.latencyMs ?? 0)
  registry().handles.add(handle)
  return proxy
}
