import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { HttpExchange, HttpRequest, HttpResponse } from './types.js'

/**
 * An exchange over Node's own request and response: plain `node:http`, express, anything built on them. `run`
 * starts the route's handler, which answers through `res` as usual; the engine sees its status and headers at
 * `writeHead` (or the first write) and collects the body from `write`/`end`. `url` defaults to `req.url` (pass
 * express's `req.originalUrl`). When `req.socket.server` is a Node server, `detached` runs copies of the request
 * through it (see `runDetached`).
 */
export function nodeExchange<R>(
  req: IncomingMessage,
  res: ServerResponse,
  run: () => void,
  source: R,
  url?: string,
): HttpExchange<R> {
  throw new Error(`not yet ${String(req)} ${String(res)} ${String(run)} ${String(source)} ${url}`)
}

/**
 * Runs a copy of `request` through `server`'s request listeners, with no socket, and resolves with the complete
 * response. The copy is marked (see `isDetached`) so cache middleware passes it straight to the handler.
 */
export function runDetached(server: Server, request: HttpRequest): Promise<HttpResponse> {
  throw new Error(`not yet ${String(server)} ${String(request)}`)
}

/** True for a request made by `runDetached`: cache middleware must call the handler and nothing else. */
export function isDetached(req: unknown): boolean {
  return typeof req === 'object' && req !== null && (req as Record<symbol, unknown>)[DETACHED] === true
}

/** Global (Symbol.for) so two copies of this module (ESM and CJS) agree. */
export const DETACHED = Symbol.for('@cache/core/http.detached')
