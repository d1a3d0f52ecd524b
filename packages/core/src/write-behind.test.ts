import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { isCacheError } from './errors.js'
import { writeQueueContract } from './stores/fixtures/write-queue-contract.js'
import { caught, deferred, expectCode, pollUntil } from './test-helpers.js'
import type { WriteBehindItem, WriteQueue } from './types.js'
import { memoryQueue, WriteBehind, type WriteBehindOptions } from './write-behind.js'

writeQueueContract('memoryQueue', async () => {
  const queue = memoryQueue()
  return { queue, other: queue }
})

/** A sink that records every batch; `fail` decides per call whether it throws. */
function recorder(fail: (call: number, batch: WriteBehindItem[]) => unknown = () => false) {
  const batches: WriteBehindItem[][] = []
  let calls = 0
  const flush: WriteBehindOptions['flush'] = async (batch) => {
    const call = calls++
    const failure = fail(call, batch)
    if (failure) throw failure instanceof Error ? failure : new Error(`sink failure ${call}`)
    batches.push(batch)
  }
  return {
    flush,
    batches,
    calls: () => calls,
    items: () => batches.flat(),
    keys: () => batches.flat().map((i) => i.key),
  }
}

function hooks() {
  const dead: { item: WriteBehindItem; error: Error }[] = []
  const errors: Error[] = []
  return {
    dead,
    errors,
    hooks: {
      deadLetter: (item: WriteBehindItem, error: Error) => dead.push({ item, error }),
      error: (e: Error) => errors.push(e),
    },
  }
}

const writes = (n: number, prefix = 'k') =>
  Array.from({ length: n }, (_, i) => ({ namespace: 'app', key: `${prefix}${i}`, value: i }))

let open: WriteBehind[] = []
function make(options: WriteBehindOptions, h = hooks().hooks, queue: WriteQueue = memoryQueue()): WriteBehind {
  const wb = new WriteBehind(options, queue, h)
  open.push(wb)
  return wb
}

// Vitest fails a run on unhandled rejections too; this pins the failure on the test that caused it.
let unhandled: unknown[] = []
const onUnhandled = (reason: unknown) => unhandled.push(reason)
beforeEach(() => {
  unhandled = []
  process.on('unhandledRejection', onUnhandled)
})
afterEach(async () => {
  await Promise.allSettled(open.map((wb) => wb.close()))
  open = []
  // Let late rejections surface before checking.
  await new Promise((r) => setTimeout(r, 10))
  process.off('unhandledRejection', onUnhandled)
  expect(unhandled).toEqual([])
})

describe('WriteBehind: batching', () => {
  it('flushes a full batch without waiting for the interval, never more than batchSize per call', async () => {
    const sink = recorder()
    const wb = make({ flush: sink.flush, batchSize: 10, interval: '1h' })
    for (const w of writes(25)) await wb.enqueue([w])
    expect(await pollUntil(async () => sink.items().length >= 20, 5_000, 10)).toBe(true)
    expect(sink.batches.every((b) => b.length <= 10)).toBe(true)
    await wb.flush()
    expect(sink.keys().sort()).toEqual(
      writes(25)
        .map((w) => w.key)
        .sort(),
    )
    expect(await wb.size()).toBe(0)
  })

  it('flushes a partial batch once the interval passes', async () => {
    const sink = recorder()
    const wb = make({ flush: sink.flush, batchSize: 100, interval: 20 })
    await wb.enqueue(writes(3))
    expect(await pollUntil(async () => sink.items().length === 3, 5_000, 10)).toBe(true)
    expect(sink.batches).toHaveLength(1)
    expect(sink.items()[0]).toMatchObject({ namespace: 'app', key: 'k0', value: 0, attempts: 0 })
    expect(typeof sink.items()[0]!.queuedAt).toBe('number')
  })

  it('hands the sink distinct keys in queue order', async () => {
    const sink = recorder()
    const wb = make({ flush: sink.flush, interval: '1h' })
    await wb.enqueue(writes(5))
    await wb.enqueue([{ namespace: 'app', key: 'z', value: 'last' }])
    await wb.flush()
    expect(sink.keys()).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'z'])
  })

  it('coalesces writes of the same namespace+key in a batch to the latest', async () => {
    const sink = recorder()
    const wb = make({ flush: sink.flush, interval: '1h' })
    await wb.enqueue([{ namespace: 'app', key: 'a', value: 1 }])
    await wb.enqueue([
      { namespace: 'app', key: 'b', value: 'b' },
      { namespace: 'app.t:1', key: 'a', value: 'other namespace' },
      { namespace: 'app', key: 'a', value: 2 },
    ])
    await wb.enqueue([{ namespace: 'app', key: 'a', value: 3 }])
    await wb.flush()
    expect(sink.batches).toHaveLength(1)
    expect(sink.items().map((i) => [i.namespace, i.key, i.value])).toEqual([
      ['app', 'b', 'b'],
      ['app.t:1', 'a', 'other namespace'],
      ['app', 'a', 3],
    ])
    expect(await wb.size()).toBe(0)
  })
})

describe('WriteBehind: failures', () => {
  it('retries a failing batch with backoff, then dead-letters it (hook, deadLetters(), error hook)', async () => {
    const sink = recorder(() => new Error('db down'))
    const h = hooks()
    const attempts: number[] = []
    const wb = make(
      {
        flush: async (batch, ctx) => {
          attempts.push(batch[0]!.attempts)
          await sink.flush(batch, ctx)
        },
        maxAttempts: 3,
        backoff: 5,
        interval: 10,
      },
      h.hooks,
    )
    await wb.enqueue([{ namespace: 'app', key: 'a', value: 1 }])
    expect(await pollUntil(async () => h.dead.length === 1, 5_000, 10)).toBe(true)
    expect(attempts).toEqual([0, 1, 2])
    expect(h.dead[0]!.item).toMatchObject({ key: 'a', value: 1, attempts: 3 })
    expect(h.dead[0]!.error.message).toBe('db down')
    expect(h.errors.map((e) => e.message)).toEqual(['db down', 'db down', 'db down'])
    const dead = await wb.deadLetters()
    expect(dead.map((d) => [d.item.key, d.item.attempts, d.error])).toEqual([['a', 3, 'db down']])
    expect(await wb.size()).toBe(0)
  })

  it('a batch that fails once is flushed on a later attempt, with its attempts counted', async () => {
    const sink = recorder((call) => call === 0)
    const h = hooks()
    const wb = make({ flush: sink.flush, backoff: 5, interval: 10 }, h.hooks)
    await wb.enqueue(writes(3))
    expect(await pollUntil(async () => sink.items().length === 3, 5_000, 10)).toBe(true)
    expect(sink.items().map((i) => i.attempts)).toEqual([1, 1, 1])
    expect(h.dead).toEqual([])
    expect(h.errors).toHaveLength(1)
  })

  it('flush() retries at once (no backoff wait), still counting attempts', async () => {
    const sink = recorder((call) => call < 2)
    const wb = make({ flush: sink.flush, backoff: '1h', interval: '1h' })
    await wb.enqueue(writes(2))
    await wb.flush()
    expect(sink.items().map((i) => [i.key, i.attempts])).toEqual([
      ['k0', 2],
      ['k1', 2],
    ])
  })

  it('flush() with a sink that always fails ends: the items are dead-lettered after maxAttempts', async () => {
    const h = hooks()
    const sink = recorder(() => true)
    const wb = make({ flush: sink.flush, backoff: '1h', interval: '1h', maxAttempts: 4 }, h.hooks)
    await wb.enqueue(writes(3))
    await wb.flush()
    expect(sink.calls()).toBe(4)
    expect(h.dead.map((d) => [d.item.key, d.item.attempts])).toEqual([
      ['k0', 4],
      ['k1', 4],
      ['k2', 4],
    ])
  })

  it('a newer write of a key replaces its retry still waiting for the backoff', async () => {
    const sink = recorder((call) => call === 0)
    const wb = make({ flush: sink.flush, backoff: '1h', interval: 10 })
    await wb.enqueue([{ namespace: 'app', key: 'a', value: 'old' }])
    expect(await pollUntil(async () => sink.calls() === 1, 5_000, 10)).toBe(true)
    await wb.enqueue([{ namespace: 'app', key: 'a', value: 'new' }])
    await wb.flush()
    expect(sink.items().map((i) => i.value)).toEqual(['new'])
    expect(await wb.size()).toBe(0)
  })

  it('a sink that throws synchronously, rejects with a non-Error or never settles counts as a failed attempt', async () => {
    const h = hooks()
    let call = 0
    let aborted = 0
    const wb = make(
      {
        flush: (_batch, { signal }) => {
          call++
          if (call === 1) throw new Error('sync throw')
          if (call === 2) return Promise.reject('a string')
          signal.addEventListener('abort', () => aborted++)
          return new Promise(() => {}) // hangs: flushTimeout gives up on it
        },
        maxAttempts: 3,
        flushTimeout: 20,
        interval: '1h',
      },
      h.hooks,
    )
    await wb.enqueue(writes(1))
    await wb.flush()
    expect(h.dead).toHaveLength(1)
    expect(aborted).toBe(1)
    expect(isCacheError(h.dead[0]!.error, 'E_STORE_UNAVAILABLE')).toBe(true)
    expect(h.errors.map((e) => e.message)).toEqual([
      'sync throw',
      expect.stringContaining('a string'),
      expect.stringContaining('no answer'),
    ])
  })

  it('a queue that fails reaches the error hook, never an unhandled rejection; flush() rejects with its error', async () => {
    const h = hooks()
    const inner = memoryQueue()
    const broken: WriteQueue = {
      ...inner,
      take: () => Promise.reject(new Error('queue down')),
    }
    const wb = make({ flush: recorder().flush, interval: 5 }, h.hooks, broken)
    await wb.enqueue(writes(1))
    expect(await pollUntil(async () => h.errors.length >= 2, 5_000, 10)).toBe(true)
    expect(h.errors[0]!.message).toBe('queue down')
    expect(((await caught(wb.flush())) as Error).message).toBe('queue down')
  })

  it('hooks that throw do not break the flushing', async () => {
    const throwing = {
      deadLetter: () => {
        throw new Error('bad hook')
      },
      error: () => {
        throw new Error('bad hook')
      },
    }
    const wb = make({ flush: recorder(() => true).flush, maxAttempts: 2, interval: '1h' }, throwing)
    await wb.enqueue(writes(2))
    await wb.flush()
    expect((await wb.deadLetters()).length).toBe(2)
  })
})

describe('WriteBehind: close', () => {
  it('close() flushes what is queued; later writes reject with E_CLOSED; close is idempotent', async () => {
    const sink = recorder()
    const wb = make({ flush: sink.flush, interval: '1h' })
    await wb.enqueue(writes(7))
    await wb.close()
    expect(sink.keys()).toEqual(writes(7).map((w) => w.key))
    const err = await caught(wb.enqueue(writes(1)))
    expect(isCacheError(err, 'E_CLOSED')).toBe(true)
    await wb.close()
  })

  it('close() waits for a flush in progress', async () => {
    const gate = deferred<void>()
    const seen: string[] = []
    const wb = make({
      flush: async (batch) => {
        await gate.promise
        seen.push(...batch.map((i) => i.key))
      },
      interval: 5,
    })
    await wb.enqueue(writes(2))
    const closed = wb.close()
    gate.resolve()
    await closed
    expect(seen).toEqual(['k0', 'k1'])
  })

  it('close() with a sink that always fails ends once every item used its attempts', async () => {
    const h = hooks()
    const wb = make({ flush: recorder(() => true).flush, maxAttempts: 3, backoff: '1h', interval: '1h' }, h.hooks)
    await wb.enqueue(writes(4))
    await wb.close()
    expect(h.dead.map((d) => d.item.attempts)).toEqual([3, 3, 3, 3])
  })
})

describe('WriteBehind: options', () => {
  const queue = memoryQueue()
  const h = hooks().hooks
  const flush = async () => {}
  const bad: [string, unknown][] = [
    ['no options', undefined],
    ['no flush', {}],
    ['flush not a function', { flush: 'db' }],
    ['batchSize 0', { flush, batchSize: 0 }],
    ['batchSize 1.5', { flush, batchSize: 1.5 }],
    ['maxAttempts 0', { flush, maxAttempts: 0 }],
    ['interval 0', { flush, interval: 0 }],
    ['interval garbage', { flush, interval: 'soon' }],
    ['backoff negative', { flush, backoff: -1 }],
    ['claimAfter 0', { flush, claimAfter: 0 }],
    ['flushTimeout NaN', { flush, flushTimeout: Number.NaN }],
    ['interval beyond a timer', { flush, interval: '30d' }],
    ['queue not a queue', { flush, queue: {} }],
  ]
  for (const [name, options] of bad) {
    it(`rejects ${name} with E_INVALID_OPTION`, () => {
      expectCode(() => new WriteBehind(options as WriteBehindOptions, queue, h), 'E_INVALID_OPTION')
    })
  }

  it('accepts durations as strings or numbers', async () => {
    const wb = make({ flush, interval: '250ms', backoff: 0, claimAfter: '5s', flushTimeout: 1000, batchSize: 1 })
    await wb.close()
  })

  it('memoryQueue rejects a bad maxDeadLetters', () => {
    expectCode(() => memoryQueue({ maxDeadLetters: -1 }), 'E_INVALID_OPTION')
  })
})
