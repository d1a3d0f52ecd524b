/** The IPC messages between the load generator (load.ts) and a server under test (app.ts). */

export const APPS = [
  'express',
  'express-cache',
  'express-apicache',
  'fastify',
  'fastify-cache',
  'hono',
  'hono-cache',
  'trpc',
  'trpc-cache',
] as const

export type AppName = (typeof APPS)[number]

export type Route = 'hello' | 'big' | 'nostore'

export interface ReadyMessage {
  ready: true
  port: number
  /** Size of the /big body as the handler serialises it. */
  bigBytes: number
}

/** `begin`: collect garbage, then snapshot the counters and the CPU clock; `end`: what happened since. */
export interface Request {
  id: number
  cmd: 'begin' | 'end'
}

export interface BeginReply {
  id: number
}

export interface EndReply {
  id: number
  /** Handler calls per route since `begin`. */
  calls: Record<Route, number>
  /** CPU time (user + system) the server process spent since `begin`. */
  cpuMs: number
}
