/**
 * Shared by L1 and L2 (`@cache/redis-lock` against @sesamecare-oss/redlock and redis-semaphore's RedlockMutex):
 * the 5 masters, the connections, and the settings every library is given.
 */
import { type RedisServer, startRedises } from '@cache/testing'
import { type Command, Redis } from 'ioredis'

/** Independent masters: the Redlock docs' example, and what every library here is pointed at. */
export const MASTERS = 5
/** The lock ttl of every library (redis-semaphore's default `lockTimeout`). */
export const TTL_MS = 10_000

/**
 * One connection per master, ioredis defaults (no library's docs ask for more), resolved once every connection is
 * ready so no command of a timed batch waits in the offline queue.
 */
export async function connect(servers: readonly RedisServer[]): Promise<Redis[]> {
  return Promise.all(
    servers.map(async (s) => {
      const client = new Redis({ host: s.host, port: s.port })
      if (client.status !== 'ready') await new Promise((resolve) => client.once('ready', resolve))
      return client
    }),
  )
}

/** Starts the masters, runs `body`, and stops every connection it opened and every server, also when it fails. */
export async function withMasters<T>(
  body: (servers: RedisServer[], open: () => Promise<Redis[]>) => Promise<T>,
): Promise<T> {
  const servers = await startRedises(MASTERS)
  const opened: Redis[] = []
  try {
    return await body(servers, async () => {
      const clients = await connect(servers)
      opened.push(...clients)
      return clients
    })
  } finally {
    for (const c of opened) c.disconnect()
    await Promise.all(servers.map((s) => s.stop()))
  }
}

/**
 * Counts, by name, the commands `clients` send from now on (their own, not those Redis runs inside a script, which
 * INFO commandstats would add): what a library costs in messages, retries included.
 */
export function countSent(clients: readonly Redis[]): Map<string, number> {
  const counts = new Map<string, number>()
  for (const client of clients) {
    const send = client.sendCommand.bind(client)
    client.sendCommand = (command: Command, stream?: Parameters<Redis['sendCommand']>[1]) => {
      counts.set(command.name, (counts.get(command.name) ?? 0) + 1)
      return send(command, stream)
    }
  }
  return counts
}

/** `3 (evalsha 3)`: commands per operation, by name. */
export function perOp(counts: ReadonlyMap<string, number>, ops: number): string {
  let total = 0
  const parts: string[] = []
  for (const [name, calls] of counts) {
    total += calls
    parts.push(`${name} ${fmt(calls / ops)}`)
  }
  return `${fmt(total / ops)} (${parts.join(', ')})`
}

const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(2))
