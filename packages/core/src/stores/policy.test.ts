import { describe, expect, it } from 'vitest'
import { type EvictionPolicy, FifoPolicy, fifo, LruPolicy, lru, type PolicyNode } from './policy.js'

function node(key: string): PolicyNode {
  return { key, prev: undefined, next: undefined }
}

/** Keys from the next victim to the most valuable entry. */
function order(policy: EvictionPolicy): string[] {
  return [...policy].map((n) => n.key)
}

/** A policy with `keys` inserted in that order; returns the nodes by key. */
function filled<P extends EvictionPolicy>(policy: P, keys: readonly string[]): [P, Map<string, PolicyNode>] {
  const nodes = new Map<string, PolicyNode>()
  for (const key of keys) {
    const n = node(key)
    nodes.set(key, n)
    policy.insert(n)
  }
  return [policy, nodes]
}

function get(nodes: Map<string, PolicyNode>, key: string): PolicyNode {
  const n = nodes.get(key)
  if (n === undefined) throw new Error(`no node ${key}`)
  return n
}

/** The list must be consistent both ways: every `next` mirrors a `prev`, and the ends point nowhere. */
function expectLinked(policy: EvictionPolicy): void {
  const nodes = [...policy]
  expect(policy.victim()).toBe(nodes[0])
  if (nodes.length === 0) return
  expect(nodes[0]?.next).toBeUndefined()
  expect(nodes.at(-1)?.prev).toBeUndefined()
  for (let i = 0; i + 1 < nodes.length; i++) {
    expect(nodes[i]?.prev).toBe(nodes[i + 1])
    expect(nodes[i + 1]?.next).toBe(nodes[i])
  }
}

// Deterministic PRNG (mulberry32) so the randomized check is reproducible.
function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const kinds = [
  ['LruPolicy', () => new LruPolicy(), 'lru'],
  ['FifoPolicy', () => new FifoPolicy(), 'fifo'],
] as const

for (const [label, create, name] of kinds) {
  describe(`${label}: what both list policies share`, () => {
    it(`is named ${name}`, () => {
      expect(create().name).toBe(name)
    })

    it('is empty at first: no victim, nothing to iterate', () => {
      const policy = create()
      expect(policy.victim()).toBeUndefined()
      expect(order(policy)).toEqual([])
    })

    it('insert: the first entry in is the first victim; iteration runs oldest to newest', () => {
      const [policy] = filled(create(), ['a', 'b', 'c'])
      expect(policy.victim()?.key).toBe('a')
      expect(order(policy)).toEqual(['a', 'b', 'c'])
      expectLinked(policy)
    })

    it('a single entry is both ends', () => {
      const [policy, nodes] = filled(create(), ['only'])
      expect(policy.victim()).toBe(get(nodes, 'only'))
      expectLinked(policy)
      policy.remove(get(nodes, 'only'))
      expect(policy.victim()).toBeUndefined()
      expect(order(policy)).toEqual([])
    })

    it('remove the victim (tail): the next one becomes the victim', () => {
      const [policy, nodes] = filled(create(), ['a', 'b', 'c'])
      policy.remove(get(nodes, 'a'))
      expect(policy.victim()?.key).toBe('b')
      expect(order(policy)).toEqual(['b', 'c'])
      expectLinked(policy)
    })

    it('remove the newest (head)', () => {
      const [policy, nodes] = filled(create(), ['a', 'b', 'c'])
      policy.remove(get(nodes, 'c'))
      expect(order(policy)).toEqual(['a', 'b'])
      expectLinked(policy)
      policy.insert(node('d'))
      expect(order(policy)).toEqual(['a', 'b', 'd'])
      expectLinked(policy)
    })

    it('remove one in the middle', () => {
      const [policy, nodes] = filled(create(), ['a', 'b', 'c', 'd'])
      policy.remove(get(nodes, 'b'))
      expect(order(policy)).toEqual(['a', 'c', 'd'])
      policy.remove(get(nodes, 'c'))
      expect(order(policy)).toEqual(['a', 'd'])
      expectLinked(policy)
    })

    it('a removed node is unlinked and can be inserted again as the newest', () => {
      const [policy, nodes] = filled(create(), ['a', 'b', 'c'])
      const b = get(nodes, 'b')
      policy.remove(b)
      expect(b.prev).toBeUndefined()
      expect(b.next).toBeUndefined()
      policy.insert(b)
      expect(order(policy)).toEqual(['a', 'c', 'b'])
      expectLinked(policy)
    })

    it('removing victims one by one yields every entry, in order', () => {
      const keys = ['k0', 'k1', 'k2', 'k3', 'k4']
      const [policy] = filled(create(), keys)
      const evicted: string[] = []
      for (let victim = policy.victim(); victim !== undefined; victim = policy.victim()) {
        evicted.push(victim.key)
        policy.remove(victim)
      }
      expect(evicted).toEqual(keys)
      expect(order(policy)).toEqual([])
    })

    it('the node just yielded may be removed while iterating', () => {
      const [policy] = filled(create(), ['a', 'b', 'c', 'd'])
      const seen: string[] = []
      for (const n of policy) {
        seen.push(n.key)
        if (n.key !== 'c') policy.remove(n)
      }
      expect(seen).toEqual(['a', 'b', 'c', 'd'])
      expect(order(policy)).toEqual(['c'])
      expectLinked(policy)
    })

    it('clear() empties it, and it works afterwards', () => {
      const [policy] = filled(create(), ['a', 'b', 'c'])
      policy.clear()
      expect(policy.victim()).toBeUndefined()
      expect(order(policy)).toEqual([])
      filled(policy, ['x', 'y'])
      expect(order(policy)).toEqual(['x', 'y'])
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
    const [policy, nodes] = filled(new LruPolicy(), ['a', 'b', 'c'])
    policy.touch(get(nodes, 'a'))
    expect(order(policy)).toEqual(['b', 'c', 'a'])
    expect(policy.victim()?.key).toBe('b')
    expectLinked(policy)
  })

  it('touch moves one from the middle', () => {
    const [policy, nodes] = filled(new LruPolicy(), ['a', 'b', 'c', 'd'])
    policy.touch(get(nodes, 'b'))
    expect(order(policy)).toEqual(['a', 'c', 'd', 'b'])
    expectLinked(policy)
  })

  it('touching the newest changes nothing', () => {
    const [policy, nodes] = filled(new LruPolicy(), ['a', 'b', 'c'])
    policy.touch(get(nodes, 'c'))
    expect(order(policy)).toEqual(['a', 'b', 'c'])
    expectLinked(policy)
  })

  it('touching the only entry keeps it', () => {
    const [policy, nodes] = filled(new LruPolicy(), ['a'])
    policy.touch(get(nodes, 'a'))
    expect(order(policy)).toEqual(['a'])
    expectLinked(policy)
  })

  it('touching the victim of two swaps them', () => {
    const [policy, nodes] = filled(new LruPolicy(), ['a', 'b'])
    policy.touch(get(nodes, 'a'))
    expect(order(policy)).toEqual(['b', 'a'])
    expectLinked(policy)
  })

  it('update counts as a use', () => {
    const [policy, nodes] = filled(new LruPolicy(), ['a', 'b', 'c'])
    policy.update(get(nodes, 'a'))
    expect(order(policy)).toEqual(['b', 'c', 'a'])
    expectLinked(policy)
  })

  it('matches a reference model over a long random run', () => {
    const next = random(42)
    const policy = new LruPolicy()
    const model: PolicyNode[] = []
    let created = 0
    for (let step = 0; step < 5000; step++) {
      const roll = next()
      const pick = model[Math.floor(next() * model.length)]
      if (roll < 0.35 || pick === undefined) {
        const n = node(`n${created++}`)
        policy.insert(n)
        model.push(n)
      } else if (roll < 0.7) {
        policy.touch(pick)
        model.splice(model.indexOf(pick), 1)
        model.push(pick)
      } else if (roll < 0.8) {
        policy.update(pick)
        model.splice(model.indexOf(pick), 1)
        model.push(pick)
      } else {
        policy.remove(pick)
        model.splice(model.indexOf(pick), 1)
      }
      if (step % 250 === 0) expectLinked(policy)
      expect(policy.victim()).toBe(model[0])
    }
    expect(order(policy)).toEqual(model.map((n) => n.key))
    expectLinked(policy)
  })
})

describe('FifoPolicy', () => {
  it('touch and update leave the order as inserted', () => {
    const [policy, nodes] = filled(new FifoPolicy(), ['a', 'b', 'c'])
    policy.touch(get(nodes, 'a'))
    policy.update(get(nodes, 'b'))
    policy.touch(get(nodes, 'c'))
    expect(order(policy)).toEqual(['a', 'b', 'c'])
    expect(policy.victim()?.key).toBe('a')
    expectLinked(policy)
  })

  it('matches a reference model over a long random run', () => {
    const next = random(7)
    const policy = new FifoPolicy()
    const model: PolicyNode[] = []
    let created = 0
    for (let step = 0; step < 5000; step++) {
      const roll = next()
      const pick = model[Math.floor(next() * model.length)]
      if (roll < 0.4 || pick === undefined) {
        const n = node(`n${created++}`)
        policy.insert(n)
        model.push(n)
      } else if (roll < 0.75) {
        if (roll < 0.6) policy.touch(pick)
        else policy.update(pick)
      } else {
        policy.remove(pick)
        model.splice(model.indexOf(pick), 1)
      }
      expect(policy.victim()).toBe(model[0])
    }
    expect(order(policy)).toEqual(model.map((n) => n.key))
    expectLinked(policy)
  })
})

describe('factories', () => {
  it('lru and fifo make a new, empty policy on every call', () => {
    const a = lru(10)
    const b = lru(10)
    expect(a).toBeInstanceOf(LruPolicy)
    expect(a).not.toBe(b)
    a.insert(node('x'))
    expect(order(b)).toEqual([])

    const c = fifo(Number.POSITIVE_INFINITY)
    expect(c).toBeInstanceOf(FifoPolicy)
    expect(c).not.toBe(fifo(5))
  })
})
