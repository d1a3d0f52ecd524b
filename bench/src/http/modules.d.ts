// Neither package ships types (and @types/autocannon is not installed): the few members the HTTP benchmarks use.

declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  /** What the HTTP parser hands over once a response's head is read; `headers` is flat: name, value, name, … */
  export interface ResponseHead {
    statusCode: number
    headers: string[]
  }

  export interface Options {
    url: string
    connections?: number
    pipelining?: number
    /** Seconds. */
    duration?: number
    /** Milliseconds between samples; the run stops on the first sample after `duration`. */
    sampleInt?: number
    timeout?: number
    headers?: Record<string, string>
    /** Called with every client (one per connection) before it connects. */
    setupClient?: (client: EventEmitter) => void
  }

  export interface Result {
    /** Seconds, measured by autocannon from start to stop. */
    duration: number
    errors: number
    timeouts: number
    mismatches: number
    non2xx: number
    resets: number
    requests: { total: number; sent: number; average: number }
    latency: { p50: number; p99: number; average: number }
    throughput: { total: number }
  }

  function autocannon(options: Options): Promise<Result>
  export default autocannon
}

declare module 'apicache' {
  import type { RequestHandler } from 'express'

  const apicache: {
    /** `duration` such as '1 hour'. */
    middleware(duration?: string | number): RequestHandler
  }
  export default apicache
}
