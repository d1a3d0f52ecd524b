/**
 * Eviction policies for the memory store. The store keeps its entries in numbered slots (columns of typed arrays,
 * so a hit allocates nothing and touches little memory); a policy orders the slots and names the next victim. The
 * store owns the index, the bounds and the bookkeeping. Policies are pluggable so frequency-aware admission
 * (W-TinyLFU) can be added without touching the store: `admit` lets a policy refuse a newcomer that would push out a
 * more valuable entry.
 */

/** Marks "no slot" in policies' links and in `victim()`. */
export const NO_SLOT = -1

export interface EvictionPolicy {
  readonly name: string
  /** The store now uses slots `0 .. capacity - 1`; grow whatever per-slot state the policy keeps. */
  grow(capacity: number): void
  /** A new entry took `slot`. */
  insert(slot: number): void
  /** The entry in `slot` was read. */
  touch(slot: number): void
  /** The entry in `slot` got a new value. */
  update(slot: number): void
  /** The entry in `slot` left the store (deleted, expired or evicted); the slot may be reused. */
  remove(slot: number): void
  /** The slot to evict next, or `NO_SLOT` when there is none. Must not remove it. */
  victim(): number
  /**
   * Asked when inserting `key` would evict `victim`. Return false to refuse the newcomer (the store then keeps the
   * victim and does not store `key`). Policies without admission leave it out.
   */
  admit?(key: string, victim: number): boolean
  /** The slots from the next victim towards the most valuable. */
  slots(): IterableIterator<number>
  clear(): void
}

/** Makes a policy; `capacity` is the number of slots the store starts with (it calls `grow` for more). */
export type PolicyFactory = (capacity: number) => EvictionPolicy

/** A doubly linked list over slots in two Int32Arrays: most valuable at the head, next victim at the tail. */
abstract class ListPolicy implements EvictionPolicy {
  abstract readonly name: string
  protected prev: Int32Array
  protected next: Int32Array
  protected head = NO_SLOT
  protected tail = NO_SLOT

  constructor(capacity: number) {
    this.prev = new Int32Array(capacity)
    this.next = new Int32Array(capacity)
  }

  grow(capacity: number): void {
    if (capacity <= this.prev.length) return
    const prev = new Int32Array(capacity)
    const next = new Int32Array(capacity)
    prev.set(this.prev)
    next.set(this.next)
    this.prev = prev
    this.next = next
  }

  insert(slot: number): void {
    this.prev[slot] = NO_SLOT
    this.next[slot] = this.head
    if (this.head !== NO_SLOT) this.prev[this.head] = slot
    else this.tail = slot
    this.head = slot
  }

  abstract touch(slot: number): void
  abstract update(slot: number): void

  remove(slot: number): void {
    const prev = this.prev[slot]!
    const next = this.next[slot]!
    if (prev !== NO_SLOT) this.next[prev] = next
    else this.head = next
    if (next !== NO_SLOT) this.prev[next] = prev
    else this.tail = prev
  }

  victim(): number {
    return this.tail
  }

  protected moveToHead(slot: number): void {
    if (slot === this.head) return
    // Not the head, so it has a predecessor.
    const prev = this.prev[slot]!
    const next = this.next[slot]!
    this.next[prev] = next
    if (next !== NO_SLOT) this.prev[next] = prev
    else this.tail = prev
    this.prev[slot] = NO_SLOT
    this.next[slot] = this.head
    this.prev[this.head] = slot
    this.head = slot
  }

  *slots(): IterableIterator<number> {
    let slot = this.tail
    while (slot !== NO_SLOT) {
      const prev = this.prev[slot]!
      yield slot
      slot = prev
    }
  }

  clear(): void {
    this.head = NO_SLOT
    this.tail = NO_SLOT
  }
}

/** Least recently used: a read or a write moves the entry to the head. */
export class LruPolicy extends ListPolicy {
  readonly name = 'lru'
  touch(slot: number): void {
    this.moveToHead(slot)
  }
  update(slot: number): void {
    this.moveToHead(slot)
  }
}

/** First in, first out: reads and rewrites do not change the order. Cheapest; good for write-once data. */
export class FifoPolicy extends ListPolicy {
  readonly name = 'fifo'
  touch(_slot: number): void {}
  update(_slot: number): void {}
}

export const lru: PolicyFactory = (capacity) => new LruPolicy(capacity)
export const fifo: PolicyFactory = (capacity) => new FifoPolicy(capacity)
