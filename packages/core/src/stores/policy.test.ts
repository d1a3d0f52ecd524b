import { describe, expect, it } from 'vitest'
import { random } from '../test-helpers.js'
import { type EvictionPolicy, FifoPolicy, fifo, LruPolicy, lru, NO_SLOT } from './policy.js'

/** What a list policy keeps, read through a subclass (the links are protected). */
interface Links {
  prev: Int32Array
  next: Int32Array
  head: number
  tail: number
}

class ProbedLru extends LruPolicy {
  links(): Links {
    return { prev: this.prev, next: this.next, head: this.head, tail: this.tail }
  }
}

class ProbedFifo extends FifoPolicy {
  links(): Links {
    return { prev: this.prev, next: this.next, head: this.head, tail: this.tail }
  }
}

type Probed = ProbedLru | ProbedFifo

/** Slots from the next victim to the most valuable entry; fails instead of looping on a cycle. */
function order(policy: EvictionPolicy, limit = 100_000): number[] {
  const slots: number[] = []
  for (const slot of policy.slots()) {
    slots.push(slot)
    if (slots.length > limit) throw new Error('slots() does not end: the list has a cycle')
  }
  return slots
}

/** A policy with `slots` inserted in that order. */
function filled<P extends EvictionPolicy>(policy: P, slots: readonly number[]): P {
  for (const slot of slots) policy.insert(slot)
  return policy
}

/**
 * The list must be consistent both ways: every `next` mirrors a `prev`, the ends point nowhere, walking from the
 * head along `next` visits the same slots as `slots()` in reverse, and `victim()` is the first of `slots()`.
 */
function expectLinked(policy: Probed): void {
  const slots = order(policy)
  const { prev, next, head, tail } = policy.links()
  expect(policy.victim()).toBe(slots[0] ?? NO_SLOT)
  expect(tail).toBe(slots[0] ?? NO_SLOT)
  expect(head).toBe(slots.at(-1) ?? NO_SLOT)
  if (slots.length === 0) return
  expect(next[tail]).toBe(NO_SLOT)
  expect(prev[head]).toBe(NO_SLOT)
  for (let i = 0; i + 1 < slots.length; i++) {
    expect(prev[slots[i]!]).toBe(slots[i + 1])
    expect(next[slots[i + 1]!]).toBe(slots[i])
  }
  const forward: number[] = []
  for (let slot = head; slot !== NO_SLOT; slot = next[slot]!) {
    forward.push(slot)
    if (forward.length > slots.length) throw new Error('next links have a cycle')
  }
  expect(forward).toEqual([...slots].reverse())
}

/**
 * Drives `policy` the way the memory store does (slots from a free list, `grow` before a slot past the capacity is
 * used, capacity doubling from 1) and checks it against an array model. `moves` says whether touch/update reorder.
 */
function randomRun(policy: Probed, seed: number, moves: boolean): void {
  const next = random(seed)
  const model: number[] = []
  const free: number[] = []
  let used = 0
  let capacity = 1
  let grown = 0
  for (let step = 0; step < 5000; step++) {
    const roll = next()
    const pick = model[Math.floor(next() * model.length)]
    if (roll < 0.4 || pick === undefined) {
      let slot = free.pop()
      if (slot === undefined) {
        slot = used++
        if (slot >= capacity) {
          capacity *= 2
          policy.grow(capacity)
          grown++
        }
      }
      policy.insert(slot)
      model.push(slot)
    } else if (roll < 0.6) {
      policy.touch(pick)
      if (moves) model.push(...model.splice(model.indexOf(pick), 1))
    } else if (roll < 0.75) {
      policy.update(pick)
      if (moves) model.push(...model.splice(model.indexOf(pick), 1))
    } else {
      policy.remove(pick)
      model.splice(model.indexOf(pick), 1)
      free.push(pick)
    }
    if (step % 250 === 0) expectLinked(policy)
    expect(policy.victim()).toBe(model[0] ?? NO_SLOT)
  }
  // The run must have exercised growth and reuse, or it proves less than it claims.
  expect(grown).toBeGreaterThan(3)
  expect(used).toBeLessThan(5000)
  expect(order(policy)).toEqual(model)
  expectLinked(policy)
}

it('NO_SLOT is -1 (never a valid slot)', () => {
  expect(NO_SLOT).toBe(-1)
})

const kinds = [
  ['LruPolicy', (capacity = 16): Probed => new ProbedLru(capacity), 'lru'],
  ['FifoPolicy', (capacity = 16): Probed => new ProbedFifo(capacity), 'fifo'],
] as const

for (const [label, create, name] of kinds) {
  describe(`${label}: what both list policies share`, () => {
    it(`is named ${name}`, () => {
      expect(create().name).toBe(name)
    })

    it('is empty at first: no victim, nothing to iterate', () => {
      const policy = create()
      expect(policy.victim()).toBe(NO_SLOT)
      expect(order(policy)).toEqual([])
      expectLinked(policy)
    })

    it('insert: the first slot in is the first victim; slots() runs oldest to newest', () => {
      const policy = filled(create(), [0, 1, 2])
      expect(policy.victim()).toBe(0)
      expect(order(policy)).toEqual([0, 1, 2])
      expectLinked(policy)
    })

    it('works on any slots, in any order (the store reuses freed slots)', () => {
      const policy = filled(create(), [7, 3, 15, 0, 9])
      expect(order(policy)).toEqual([7, 3, 15, 0, 9])
      expectLinked(policy)
    })

    it('a single entry is both ends', () => {
      const policy = filled(create(), [5])
      expect(policy.victim()).toBe(5)
      expectLinked(policy)
      policy.remove(5)
      expect(policy.victim()).toBe(NO_SLOT)
      expect(order(policy)).toEqual([])
      expectLinked(policy)
    })

    it('remove the victim (tail): the next one becomes the victim', () => {
      const policy = filled(create(), [0, 1, 2])
      policy.remove(0)
      expect(policy.victim()).toBe(1)
      expect(order(policy)).toEqual([1, 2])
      expectLinked(policy)
    })

    it('remove the newest (head)', () => {
      const policy = filled(create(), [0, 1, 2])
      policy.remove(2)
      expect(order(policy)).toEqual([0, 1])
      expectLinked(policy)
      policy.insert(3)
      expect(order(policy)).toEqual([0, 1, 3])
      expectLinked(policy)
    })

    it('remove one in the middle', () => {
      const policy = filled(create(), [0, 1, 2, 3])
      policy.remove(1)
      expect(order(policy)).toEqual([0, 2, 3])
      expectLinked(policy)
      policy.remove(2)
      expect(order(policy)).toEqual([0, 3])
      expectLinked(policy)
    })

    it('a removed slot can be inserted again, as the newest', () => {
      const policy = filled(create(), [0, 1, 2])
      policy.remove(1)
      policy.insert(1)
      expect(order(policy)).toEqual([0, 2, 1])
      expectLinked(policy)
      policy.remove(0)
      policy.insert(0)
      expect(order(policy)).toEqual([2, 1, 0])
      expectLinked(policy)
    })

    it('removing victims one by one yields every slot, in order', () => {
      const slots = [4, 0, 3, 1, 2]
      const policy = filled(create(), slots)
      const evicted: number[] = []
      for (let victim = policy.victim(); victim !== NO_SLOT; victim = policy.victim()) {
        evicted.push(victim)
        policy.remove(victim)
        if (evicted.length > slots.length) throw new Error('victim() never ran out')
      }
      expect(evicted).toEqual(slots)
      expect(order(policy)).toEqual([])
      expectLinked(policy)
    })

    it('the slot just yielded may be removed while iterating', () => {
      const policy = filled(create(), [0, 1, 2, 3])
      const seen: number[] = []
      for (const slot of policy.slots()) {
        seen.push(slot)
        if (slot !== 2) policy.remove(slot)
      }
      expect(seen).toEqual([0, 1, 2, 3])
      expect(order(policy)).toEqual([2])
      expectLinked(policy)
    })

    it('removing every slot while iterating empties it', () => {
      const policy = filled(create(), [3, 1, 2, 0])
      const seen: number[] = []
      for (const slot of policy.slots()) {
        seen.push(slot)
        policy.remove(slot)
      }
      expect(seen).toEqual([3, 1, 2, 0])
      expect(policy.victim()).toBe(NO_SLOT)
      expectLinked(policy)
    })

    it('clear() empties it, and it works afterwards', () => {
      const policy = filled(create(), [0, 1, 2])
      policy.clear()
      expect(policy.victim()).toBe(NO_SLOT)
      expect(order(policy)).toEqual([])
      expectLinked(policy)
      filled(policy, [2, 0])
      expect(order(policy)).toEqual([2, 0])
      expectLinked(policy)
    })

    it('grow() keeps every link when the capacity increases mid-use', () => {
      const policy = filled(create(4), [2, 0, 3, 1])
      policy.touch(2)
      policy.remove(0)
      policy.insert(0)
      const before = order(policy)
      policy.grow(8)
      expect(policy.links().prev.length).toBe(8)
      expect(order(policy)).toEqual(before)
      expectLinked(policy)
      // The new slots are usable and link up with the old ones.
      filled(policy, [6, 4, 7, 5])
      expect(order(policy)).toEqual([...before, 6, 4, 7, 5])
      expectLinked(policy)
      policy.remove(before[0]!)
      policy.remove(7)
      policy.remove(5)
      expect(order(policy)).toEqual([...before.slice(1), 6, 4])
      expectLinked(policy)
      policy.grow(1000)
      expect(order(policy)).toEqual([...before.slice(1), 6, 4])
      expectLinked(policy)
    })

    it('grow() to the same or a smaller capacity changes nothing', () => {
      const policy = filled(create(4), [1, 3, 0, 2])
      const { prev, next } = policy.links()
      policy.grow(4)
      policy.grow(2)
      expect(policy.links().prev).toBe(prev)
      expect(policy.links().next).toBe(next)
      expect(order(policy)).toEqual([1, 3, 0, 2])
      expectLinked(policy)
    })

    it('grows from a capacity of 1, one doubling at a time', () => {
      const policy = create(1)
      let capacity = 1
      for (let slot = 0; slot < 100; slot++) {
        if (slot >= capacity) {
          capacity *= 2
          policy.grow(capacity)
        }
        policy.insert(slot)
      }
      expect(order(policy)).toEqual(Array.from({ length: 100 }, (_, i) => i))
      expectLinked(policy)
    })

    it('has no admission filter', () => {
      const policy: EvictionPolicy = create()
      expect(policy.admit).toBeUndefined()
    })
  })
}

describe('LruPolicy', () => {
  it('touch moves the victim to the most valuable end', () => {
    const policy = filled(new ProbedLru(4), [0, 1, 2])
    policy.touch(0)
    expect(order(policy)).toEqual([1, 2, 0])
    expect(policy.victim()).toBe(1)
    expectLinked(policy)
  })

  it('touch moves one from the middle', () => {
    const policy = filled(new ProbedLru(4), [0, 1, 2, 3])
    policy.touch(1)
    expect(order(policy)).toEqual([0, 2, 3, 1])
    expectLinked(policy)
  })

  it('touching the newest changes nothing', () => {
    const policy = filled(new ProbedLru(4), [0, 1, 2])
    policy.touch(2)
    expect(order(policy)).toEqual([0, 1, 2])
    expectLinked(policy)
  })

  it('touching the only entry keeps it', () => {
    const policy = filled(new ProbedLru(1), [0])
    policy.touch(0)
    expect(order(policy)).toEqual([0])
    expectLinked(policy)
  })

  it('touching the victim of two swaps them', () => {
    const policy = filled(new ProbedLru(2), [0, 1])
    policy.touch(0)
    expect(order(policy)).toEqual([1, 0])
    expectLinked(policy)
    policy.touch(1)
    expect(order(policy)).toEqual([0, 1])
    expectLinked(policy)
  })

  it('update counts as a use', () => {
    const policy = filled(new ProbedLru(4), [0, 1, 2])
    policy.update(0)
    expect(order(policy)).toEqual([1, 2, 0])
    expectLinked(policy)
  })

  it('touch after grow() moves slots across the old capacity', () => {
    const policy = filled(new ProbedLru(2), [0, 1])
    policy.grow(4)
    filled(policy, [2, 3])
    policy.touch(0)
    policy.touch(3)
    policy.touch(1)
    expect(order(policy)).toEqual([2, 0, 3, 1])
    expectLinked(policy)
  })

  it('matches a reference model over a long random run, with growth and slot reuse', () => {
    randomRun(new ProbedLru(1), 42, true)
  })
})

describe('FifoPolicy', () => {
  it('touch and update leave the order as inserted', () => {
    const policy = filled(new ProbedFifo(4), [0, 1, 2])
    policy.touch(0)
    policy.update(1)
    policy.touch(2)
    policy.update(0)
    expect(order(policy)).toEqual([0, 1, 2])
    expect(policy.victim()).toBe(0)
    expectLinked(policy)
  })

  it('matches a reference model over a long random run, with growth and slot reuse', () => {
    randomRun(new ProbedFifo(1), 7, false)
  })
})

describe('factories', () => {
  it('lru and fifo make a new, empty policy on every call', () => {
    const a = lru(10)
    const b = lru(10)
    expect(a).toBeInstanceOf(LruPolicy)
    expect(a.name).toBe('lru')
    expect(a).not.toBe(b)
    a.insert(3)
    expect(a.victim()).toBe(3)
    expect(order(b)).toEqual([])
    expect(b.victim()).toBe(NO_SLOT)

    const c = fifo(5)
    expect(c).toBeInstanceOf(FifoPolicy)
    expect(c.name).toBe('fifo')
    expect(c).not.toBe(fifo(5))
  })

  it('the policy takes slots up to the capacity it was made with, and more after grow()', () => {
    for (const factory of [lru, fifo]) {
      const policy = factory(3)
      filled(policy, [0, 1, 2])
      expect(order(policy)).toEqual([0, 1, 2])
      policy.grow(6)
      filled(policy, [5, 3, 4])
      expect(order(policy)).toEqual([0, 1, 2, 5, 3, 4])
      policy.remove(2)
      policy.remove(5)
      expect(order(policy)).toEqual([0, 1, 3, 4])
    }
  })
})
