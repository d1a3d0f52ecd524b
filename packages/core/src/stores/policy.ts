/**
 * Eviction policies for the memory store. A policy orders the entries and names the next victim; the store owns the
 * map, the bounds and the bookkeeping. Policies are pluggable so frequency-aware admission (W-TinyLFU) can be added
 * without touching the store: `admit` lets a policy refuse a newcomer that would push out a more valuable entry.
 */

/** The part of a memory-store node a policy may read and link. `prev`/`next` belong to the policy. */
export interface PolicyNode {
  readonly key: string
  prev: PolicyNode | undefined
  next: PolicyNode | undefined
}

export interface EvictionPolicy {
  readonly name: string
  /** A new entry entered the store. */
  insert(node: PolicyNode): void
  /** An entry was read. */
  touch(node: PolicyNode): void
  /** An existing entry got a new value. */
  update(node: PolicyNode): void
  /** An entry left the store (deleted, expired or evicted). */
  remove(node: PolicyNode): void
  /** The entry to evict next, or `undefined` when there is none. Must not remove it. */
  victim(): PolicyNode | undefined
  /**
   * Asked when inserting `key` would evict `victim`. Return false to refuse the newcomer (the store then keeps
   * `victim` and does not store `key`). Policies without admission leave it out.
   */
  admit?(key: string, victim: PolicyNode): boolean
  /** Iterates from the next victim towards the most valuable entry. */
  [Symbol.iterator](): Iterator<PolicyNode>
  clear(): void
}

/** Makes a policy for a store of the given capacity (entries; `Infinity` when only bytes bound the store). */
export type PolicyFactory = (capacity: number) => EvictionPolicy

/** A doubly linked list, most valuable at the head, next victim at the tail. */
abstract class ListPolicy implements EvictionPolicy {
  abstract readonly name: string
  protected head: PolicyNode | undefined = undefined
  protected tail: PolicyNode | undefined = undefined

  insert(node: PolicyNode): void {
    node.prev = undefined
    node.next = this.head
    if (this.head) this.head.prev = node
    else this.tail = node
    this.head = node
  }

  abstract touch(node: PolicyNode): void
  abstract update(node: PolicyNode): void

  remove(node: PolicyNode): void {
    const { prev, next } = node
    if (prev) prev.next = next
    else this.head = next
    if (next) next.prev = prev
    else this.tail = prev
    node.prev = undefined
    node.next = undefined
  }

  victim(): PolicyNode | undefined {
    return this.tail
  }

  protected moveToHead(node: PolicyNode): void {
    if (node === this.head) return
    // unlink: node has a prev because it is not the head
    const prev = node.prev!
    const next = node.next
    prev.next = next
    if (next) next.prev = prev
    else this.tail = prev
    node.prev = undefined
    node.next = this.head
    this.head!.prev = node
    this.head = node
  }

  *[Symbol.iterator](): Iterator<PolicyNode> {
    let node = this.tail
    while (node) {
      const prev = node.prev
      yield node
      node = prev
    }
  }

  clear(): void {
    this.head = undefined
    this.tail = undefined
  }
}

/** Least recently used: a read or a write moves the entry to the head. */
export class LruPolicy extends ListPolicy {
  readonly name = 'lru'
  touch(node: PolicyNode): void {
    this.moveToHead(node)
  }
  update(node: PolicyNode): void {
    this.moveToHead(node)
  }
}

/** First in, first out: reads and rewrites do not change the order. Cheapest; good for write-once data. */
export class FifoPolicy extends ListPolicy {
  readonly name = 'fifo'
  touch(_node: PolicyNode): void {}
  update(_node: PolicyNode): void {}
}

export const lru: PolicyFactory = () => new LruPolicy()
export const fifo: PolicyFactory = () => new FifoPolicy()
