import { createServer } from 'node:net'

export const LOOPBACK = '127.0.0.1'

/** Asks the OS for a free port on 127.0.0.1 (listen on port 0, read it, close). Someone may take it before use. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen({ host: LOOPBACK, port: 0, exclusive: true }, () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('the OS gave no port'))))
    })
  })
}

/** True when 127.0.0.1:port can be listened on right now. */
export function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.unref()
    server.once('error', () => resolve(false))
    server.listen({ host: LOOPBACK, port, exclusive: true }, () => server.close(() => resolve(true)))
  })
}

/**
 * A free port P whose companion P + offset is free too (Redis Cluster listens on P and on its bus port P + 10000),
 * so P ≤ 65535 - offset.
 */
export async function freePortWithCompanion(offset = 10_000): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = await freePort()
    if (port + offset > 65_535) continue
    if (await canListen(port + offset)) return port
  }
  throw new Error(`found no free port P with P + ${offset} free as well on ${LOOPBACK}`)
}
