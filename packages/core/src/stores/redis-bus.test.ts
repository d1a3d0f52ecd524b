// redisBus against real servers: a standalone Redis (exchange, odd keys, splitting, garbage, kill/restart, refcount,
// dead server) and a 3-master Cluster (exchange across nodes, the subscriber's node killed).
import { randomBytes } from 'node:crypto'
import {
  freePort,
  type RedisCluster,
  type RedisServer,
  redisCommand,
  startRedis,
  startRedisCluster,
} from '@cache/testing'
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isCacheError } from '../errors.js'
import { caught, expectCode, pollUntil } from '../test-helpers.js'
import type { BusHandlers, BusMessage } from '../types.js'
import {
  decodeMessage,
  decodeString,
  encodeMessage,
  encodeString,
  MAX_MESSAGE_BYTES,
  type RedisBus,
  redisBus,
} from './redis-bus.js'

const WAIT = 5000
let server: RedisServer
const clients: (Redis | Cluster)[] = []
const unsubscribes: (() => Promise<void>)[] = []

beforeAll(async () => {
  server = await startRedis()
})

afterAll(async () => {
  await Promise.allSettled(unsubscribes.map((u) => u()))
  for (const c of clients) c.disconnect()
  await server?.stop()
})

let n = 0
const channel = () => `bus-test:${process.pid}:${n++}`

function redis(url: string, options: RedisOptions = {}): Redis {
  const client = new Redis(url, options)
  client.on('error', () => {})
  clients.push(client)
  return client
}

/** Handlers that record what they hear. */
function recorder() {
  const messages: BusMessage[] = []
  let gaps = 0
  const handlers: BusHandlers = {
    message: (m) => messages.push(m),
    gap: () => gaps++,
  }
  return {
    handlers,
    messages,
    get gaps() {
      return gaps
    },
    keys: () => messages.flatMap((m) => (m.kind === 'keys' ? m.keys : [])),
    has: (m: BusMessage) => messages.some((x) => JSON.stringify(x) === JSON.stringify(m)),
  }
}

async function subscribe(bus: RedisBus, handlers: BusHandlers): Promise<() => Promise<void>> {
  const unsubscribe = await bus.subscribe(handlers)
  unsubscribes.push(unsubscribe)
  return unsubscribe
}

const eventually = (check: () => boolean, ms = WAIT) => pollUntil(async () => check(), ms, 20)

describe('the wire format', () => {
  const id = randomBytes(16)
  const keysOf = (part: Buffer): readonly string[] => {
    const message = decodeMessage(part)?.message
    if (message?.kind !== 'keys') throw new Error('expected a keys message')
    return message.keys
  }

  it('every JS string round-trips exactly, lone surrogates included, and distinct strings stay distinct', () => {
    const odd = [
      '',
      'a\u0000b',
      'a\nb\r\n',
      '日本語😀',
      'a\uD800',
      'a\uDC00',
      '\uDC00\uD800',
      'z\uDBFF',
      '\uFFFD',
      'a\uD800\uDC00',
    ]
    const bytes = odd.map((s) => encodeString(s).toString('hex'))
    expect(new Set(bytes).size).toBe(odd.length)
    for (const s of odd) expect(decodeString(encodeString(s))).toBe(s)
    // Well-formed strings are plain UTF-8.
    expect(encodeString('日本語😀')).toEqual(Buffer.from('日本語😀', 'utf8'))
    // The lead then trail surrogate as two 3-byte sequences is not what the encoder writes for a pair.
    expect(() => decodeString(Buffer.concat([encodeString('\uD800'), encodeString('\uDC00')]))).toThrow()
    expect(() => decodeString(Buffer.from([0xff]))).toThrow()
  })

  it('splits large lists into messages of at most 64 KiB; a single larger string travels alone', () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => `key:${i}:${'x'.repeat(i % 50)}`)
    keys.splice(500, 0, 'y'.repeat(100_000))
    const parts = encodeMessage(id, { kind: 'keys', keys })
    expect(parts.length).toBeGreaterThan(5)
    const big = parts.filter((p) => p.length > MAX_MESSAGE_BYTES)
    expect(big).toHaveLength(1)
    expect(keysOf(big[0]!)).toEqual(['y'.repeat(100_000)])
    const back = parts.flatMap(keysOf)
    expect(back).toEqual(keys)
    expect(encodeMessage(id, { kind: 'tags', tags: [] })).toEqual([])
    expect(decodeMessage(encodeMessage(id, { kind: 'clear', prefix: '' })[0]!)?.message).toEqual({
      kind: 'clear',
      prefix: '',
    })
  })

  it('no magic: not ours (undefined); magic but truncated, trailing bytes or unknown version/kind: throws', () => {
    expect(decodeMessage(Buffer.from('{"hello":1}'))).toBeUndefined()
    expect(decodeMessage(Buffer.alloc(0))).toBeUndefined()
    const [good] = encodeMessage(id, { kind: 'tags', tags: ['t1', 't2'] })
    expect(decodeMessage(good!)?.id).toEqual(id)
    expect(() => decodeMessage(good!.subarray(0, good!.length - 1))).toThrow()
    expect(() => decodeMessage(Buffer.concat([good!, Buffer.from([0])]))).toThrow()
    const version = Buffer.from(good!)
    version[1] = 2
    expect(() => decodeMessage(version)).toThrow()
    const kind = Buffer.from(good!)
    kind[18] = 9
    expect(() => decodeMessage(kind)).toThrow()
    const count = Buffer.from(good!)
    count.writeUInt32BE(0xffffffff, 19)
    expect(() => decodeMessage(count)).toThrow()
  })

  it('rejects invalid options and messages with CacheErrors', async () => {
    const client = redis(server.url, { lazyConnect: true })
    expectCode(() => redisBus({} as never), 'E_INVALID_OPTION', /client must be an ioredis/)
    expectCode(() => redisBus({ client, channel: '' }), 'E_INVALID_OPTION', /channel/)
    expectCode(() => redisBus({ client, commandTimeout: 0 }), 'E_INVALID_OPTION', /commandTimeout/)
    expectCode(() => redisBus({ client, heartbeat: '0ms' }), 'E_INVALID_OPTION', /heartbeat/)
    expectCode(() => redisBus({ client, subscribeTimeout: 'soon' as never }), 'E_INVALID_OPTION', /subscribeTimeout/)
    const bus = redisBus({ client })
    const bad = await caught(bus.publish({ kind: 'keys', keys: [1] } as never))
    expect(isCacheError(bad, 'E_INVALID_VALUE')).toBe(true)
    expect(isCacheError(await caught(bus.publish({ kind: 'nope' } as never)), 'E_INVALID_VALUE')).toBe(true)
    expect(isCacheError(await caught(bus.subscribe({} as never)), 'E_INVALID_OPTION')).toBe(true)
  })
})

describe('redisBus on a standalone Redis', () => {
  it('two buses exchange keys, tags and clear; a bus never hears its own; one bus serves several subscribers', async () => {
    const ch = channel()
    const a = redisBus({ client: redis(server.url), channel: ch })
    const b = redisBus({ client: redis(server.url), channel: ch })
    const heardA = recorder()
    const heardB1 = recorder()
    const heardB2 = recorder()
    await subscribe(a, heardA.handlers)
    await subscribe(b, heardB1.handlers)
    await subscribe(b, heardB2.handlers)

    const fromA: BusMessage[] = [
      { kind: 'keys', keys: ['app:k1', 'app:k2'] },
      { kind: 'tags', tags: ['app:user:1'] },
      { kind: 'clear', prefix: 'app:' },
      { kind: 'clear', prefix: '' },
    ]
    for (const m of fromA) await a.publish(m)
    // Published after A's, on the same server: once A hears it, A's own messages would have arrived before.
    const fromB: BusMessage = { kind: 'keys', keys: ['from-b'] }
    await b.publish(fromB)

    expect(await eventually(() => fromA.every((m) => heardB1.has(m) && heardB2.has(m)))).toBe(true)
    expect(await eventually(() => heardA.has(fromB))).toBe(true)
    expect(heardA.messages).toEqual([fromB])
    expect(heardB1.messages).toEqual(fromA)
    expect(heardB2.messages).toEqual(fromA)
    expect([heardA.gaps, heardB1.gaps, heardB2.gaps]).toEqual([0, 0, 0])
  })

  it('keys with odd characters and a 100 000-key list arrive intact, split into several messages', async () => {
    const ch = channel()
    const a = redisBus({ client: redis(server.url), channel: ch })
    const b = redisBus({ client: redis(server.url), channel: ch })
    const heard = recorder()
    await subscribe(b, heard.handlers)

    const odd = [
      'a\u0000b',
      'line\nbreak\r\n',
      ' ',
      '日本語:😀',
      'a\uD800',
      'a\uDC00',
      '\uDC00\uD800',
      '\uFFFD',
      'x'.repeat(70_000),
    ]
    await a.publish({ kind: 'keys', keys: odd })
    expect(await eventually(() => heard.keys().length === odd.length)).toBe(true)
    expect(heard.keys()).toEqual(odd)

    const many = Array.from({ length: 100_000 }, (_, i) => `tenant:${i % 7}:user:${i}`)
    const before = heard.messages.length
    await a.publish({ kind: 'keys', keys: many })
    expect(await eventually(() => heard.keys().length === odd.length + many.length)).toBe(true)
    expect(heard.keys().slice(odd.length)).toEqual(many)
    expect(heard.messages.length - before).toBeGreaterThan(1)
    expect(heard.gaps).toBe(0)
  })

  it('ignores messages without the magic (another app); a corrupt one with the magic is a gap', async () => {
    const ch = channel()
    const raw = redis(server.url)
    const b = redisBus({ client: redis(server.url), channel: ch })
    const heard = recorder()
    await subscribe(b, heard.handlers)

    await raw.publish(ch, '{"event":"something else"}')
    await raw.publish(ch, Buffer.alloc(0))
    await raw.publish(ch, Buffer.from([0x00, 0x01, 0x02]))
    const sentinel = encodeMessage(randomBytes(16), { kind: 'tags', tags: ['sentinel'] })[0]!
    await raw.publish(ch, sentinel)
    expect(await eventually(() => heard.messages.length === 1)).toBe(true)
    expect(heard.messages).toEqual([{ kind: 'tags', tags: ['sentinel'] }])
    expect(heard.gaps).toBe(0)

    await raw.publish(ch, sentinel.subarray(0, sentinel.length - 2))
    expect(await eventually(() => heard.gaps === 1)).toBe(true)
    const future = Buffer.from(sentinel)
    future[1] = 99
    await raw.publish(ch, future)
    expect(await eventually(() => heard.gaps === 2)).toBe(true)
    expect(heard.messages).toHaveLength(1)
  })

  it('unsubscribe is reference-counted: the last one quits the duplicate; your client stays open', async () => {
    const ch = channel()
    const client = redis(server.url)
    const bus = redisBus({ client, channel: ch })
    const numsub = async () => Number(((await redisCommand(server, ['PUBSUB', 'NUMSUB', ch])) as unknown[])[1])
    const first = recorder()
    const second = recorder()
    const off1 = await subscribe(bus, first.handlers)
    const off2 = await subscribe(bus, second.handlers)
    const connection = bus.subscriberConnection!
    expect(connection).not.toBe(client)
    expect(await numsub()).toBe(1)

    await off1()
    await off1() // idempotent: must not release the second one's share
    expect(bus.subscriberCount).toBe(1)
    expect(connection.status).toBe('ready')
    const other = redisBus({ client: redis(server.url), channel: ch })
    await other.publish({ kind: 'tags', tags: ['t'] })
    expect(await eventually(() => second.messages.length === 1)).toBe(true)
    expect(first.messages).toHaveLength(0)

    await off2()
    expect(connection.status).toBe('end')
    expect(bus.subscriberConnection).toBeUndefined()
    expect(await pollUntil(async () => (await numsub()) === 0, WAIT, 20)).toBe(true)
    expect(await client.ping()).toBe('PONG')

    // And it comes back on the next subscribe, with a new connection.
    const third = recorder()
    await subscribe(bus, third.handlers)
    expect(bus.subscriberConnection).not.toBe(connection)
    await other.publish({ kind: 'tags', tags: ['again'] })
    expect(await eventually(() => third.messages.length === 1)).toBe(true)
  })
})

describe('redisBus when the server fails', () => {
  it('a killed Redis is a gap; once it is back and subscribed again, another gap, and messages flow', async () => {
    const faulty = await startRedis()
    try {
      const ch = channel()
      const a = redisBus({ client: redis(faulty.url), channel: ch, commandTimeout: '300ms' })
      const b = redisBus({ client: redis(faulty.url), channel: ch })
      const heard = recorder()
      const heard2 = recorder()
      await subscribe(b, heard.handlers)
      await subscribe(b, heard2.handlers)

      await faulty.kill()
      expect(await eventually(() => heard.gaps === 1 && heard2.gaps === 1)).toBe(true)
      // Down, publishing fails fast and never hangs.
      const down = await caught(a.publish({ kind: 'keys', keys: ['lost'] }))
      expect(isCacheError(down, 'E_STORE_UNAVAILABLE')).toBe(true)
      // Several failed reconnects later it is still one gap per loss.
      expect(heard.gaps).toBe(1)

      await faulty.restart()
      expect(await eventually(() => heard.gaps === 2 && heard2.gaps === 2, 10_000)).toBe(true)
      const after: BusMessage = { kind: 'keys', keys: ['after-restart'] }
      expect(
        await pollUntil(
          () =>
            a.publish(after).then(
              () => true,
              () => false,
            ),
          WAIT,
          50,
        ),
      ).toBe(true)
      expect(await eventually(() => heard.has(after) && heard2.has(after))).toBe(true)
      expect(heard.gaps).toBe(2)
    } finally {
      await faulty.stop()
    }
  })

  it('a paused Redis (no socket event at all) is caught by the heartbeat: a gap, and another once back', async () => {
    const paused = await startRedis()
    try {
      const ch = channel()
      const a = redisBus({ client: redis(paused.url), channel: ch })
      const b = redisBus({ client: redis(paused.url), channel: ch, heartbeat: '100ms' })
      const heard = recorder()
      await subscribe(b, heard.handlers)
      await paused.pause()
      expect(await eventually(() => heard.gaps === 1)).toBe(true)
      await paused.resume()
      expect(await eventually(() => heard.gaps === 2)).toBe(true)
      const after: BusMessage = { kind: 'tags', tags: ['after-pause'] }
      await a.publish(after)
      expect(await eventually(() => heard.has(after))).toBe(true)
    } finally {
      await paused.stop()
    }
  })

  it('publish and subscribe on a dead server reject with E_STORE_UNAVAILABLE (deadline and connection error)', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`
    // ioredis defaults: the command waits in the offline queue, so the deadline ends it.
    const queued = redisBus({ client: redis(url), commandTimeout: '200ms', subscribeTimeout: '300ms' })
    const late = await caught(queued.publish({ kind: 'keys', keys: ['k'] }))
    expect(isCacheError(late, 'E_STORE_UNAVAILABLE')).toBe(true)
    // No offline queue: the command fails at once, with ioredis' error as the cause.
    const failing = redisBus({ client: redis(url, { enableOfflineQueue: false }) })
    const failed = await caught(failing.publish({ kind: 'clear', prefix: 'x' }))
    expect(isCacheError(failed, 'E_STORE_UNAVAILABLE')).toBe(true)
    expect((failed as Error).cause).toBeDefined()

    const unsubscribed = await caught(queued.subscribe(recorder().handlers))
    expect(isCacheError(unsubscribed, 'E_STORE_UNAVAILABLE')).toBe(true)
    expect(queued.subscriberCount).toBe(0)
    expect(queued.subscriberConnection).toBeUndefined()
  })
})

describe('redisBus on a 3-master Redis Cluster', () => {
  let cluster: RedisCluster

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 })
  })

  afterAll(async () => {
    await cluster?.stop()
  })

  it('exchanges all three kinds between a Cluster client and clients on different nodes', async () => {
    const ch = channel()
    const [n0, n1] = cluster.nodes
    const onNode0 = redisBus({ client: redis(n0!.url), channel: ch })
    const onNode1 = redisBus({ client: redis(n1!.url), channel: ch })
    const clusterClient = new Cluster(cluster.startupNodes)
    clusterClient.on('error', () => {})
    clients.push(clusterClient)
    const viaCluster = redisBus({ client: clusterClient, channel: ch, commandTimeout: '2s' })
    const heard1 = recorder()
    const heardC = recorder()
    await subscribe(onNode1, heard1.handlers)
    await subscribe(viaCluster, heardC.handlers)

    const messages: BusMessage[] = [
      { kind: 'keys', keys: ['{a}1', 'b', 'c\u0000'] },
      { kind: 'tags', tags: ['t'] },
      { kind: 'clear', prefix: 'app:' },
    ]
    for (const m of messages) await onNode0.publish(m)
    expect(await eventually(() => messages.every((m) => heard1.has(m) && heardC.has(m)))).toBe(true)

    const fromCluster: BusMessage = { kind: 'keys', keys: ['from-cluster'] }
    await viaCluster.publish(fromCluster)
    expect(await eventually(() => heard1.has(fromCluster))).toBe(true)
    // Its own message, published after node0's, never comes back.
    await onNode0.publish({ kind: 'tags', tags: ['last'] })
    expect(await eventually(() => heardC.messages.length === messages.length + 1)).toBe(true)
    expect(heardC.messages).toEqual([...messages, { kind: 'tags', tags: ['last'] }])
    expect(heardC.gaps).toBe(0)
  })

  it("the node carrying the Cluster's subscription killed: a gap, then another once resubscribed elsewhere", async () => {
    const ch = channel()
    const clusterClient = new Cluster(cluster.startupNodes)
    clusterClient.on('error', () => {})
    clients.push(clusterClient)
    const bus = redisBus({ client: clusterClient, channel: ch })
    const heard = recorder()
    await subscribe(bus, heard.handlers)
    // Classic pub/sub counts are per node: the one answering 1 holds our subscription.
    const counts = await Promise.all(
      cluster.nodes.map(async (node) => Number(((await redisCommand(node, ['PUBSUB', 'NUMSUB', ch])) as unknown[])[1])),
    )
    const holder = cluster.nodes[counts.indexOf(1)]!
    await holder.kill()
    // Lost and back can both happen between two polls: the count, not the moment, is what matters. Resubscribing
    // waits for ioredis to give up on the dead node and find another, which takes seconds more on a loaded machine
    // (the whole suite running on 2 cores): a generous bound, not a duration under test.
    expect(await eventually(() => heard.gaps === 2, 40_000)).toBe(true)

    const live = cluster.nodes.find((node) => node.running)!
    const publisher = redisBus({ client: redis(live.url), channel: ch })
    const after: BusMessage = { kind: 'clear', prefix: '' }
    await publisher.publish(after)
    expect(await eventually(() => heard.has(after))).toBe(true)
    expect(heard.gaps).toBe(2)
  }, 60_000)
})
