import { InvalidArgumentError } from '../errors.js'

/**
 * The fields an entry carries for the heap. The heap keeps no object of its own per entry
 * and no key index: a node holds a million delayed jobs, and a wrapper object plus a Map
 * slot each cost more than the rest of the heap. `timerSeq` and `timerIndex` belong to
 * the heap; outside code only reads `dueAt`.
 */
export interface TimerSlot {
  /** Epoch ms; set by `push`. */
  dueAt: number
  /** Insertion counter: among equal due times the lower seq comes first. */
  timerSeq: number
  /** Position in the heap's array; -1 while the entry is in no heap. */
  timerIndex: number
}

/** A callback as a heap entry, for timers that are not jobs (timeouts, lease upkeep). */
export class Timer implements TimerSlot {
  dueAt = 0
  timerSeq = 0
  timerIndex = -1

  constructor(readonly fire: () => void) {}
}

/**
 * Binary min-heap on (dueAt, timerSeq) with removal and rescheduling of an entry in O(log n).
 *
 * INVARIANTS: `items[i].timerIndex === i` for every i, and an entry not in `items` has
 * timerIndex -1, so removal needs no search. seq only grows, so (dueAt, seq) is a total
 * order and equal due times come out in insertion order (a rescheduled entry counts as
 * newly inserted). dueAt is always finite: a NaN would make every comparison false and
 * silently corrupt the order. An entry is in at most one heap at a time.
 */
export class TimerHeap<T extends TimerSlot> {
  private items: T[] = []
  private seqCounter = 0

  get size(): number {
    return this.items.length
  }

  /** The seq the next push will receive; entries with a lower seq were pushed before now. */
  get nextSeq(): number {
    return this.seqCounter
  }

  /** Adds `item` due at `dueAt`, or moves it there when it is in the heap already. */
  push(item: T, dueAt: number): void {
    if (typeof dueAt !== 'number' || !Number.isFinite(dueAt)) {
      throw new InvalidArgumentError(`'dueAt' must be a finite number, got ${String(dueAt)}`)
    }
    item.dueAt = dueAt
    item.timerSeq = this.seqCounter++
    if (this.has(item)) {
      // One sift instead of remove + insert.
      this.restore(item.timerIndex)
      return
    }
    item.timerIndex = this.items.length
    this.items.push(item)
    this.siftUp(item.timerIndex)
  }

  remove(item: T): boolean {
    if (!this.has(item)) return false
    this.removeAt(item.timerIndex)
    return true
  }

  has(item: T): boolean {
    return item.timerIndex >= 0 && this.items[item.timerIndex] === item
  }

  peek(): T | undefined {
    return this.items[0]
  }

  pop(): T | undefined {
    if (this.items.length === 0) return undefined
    return this.removeAt(0)
  }

  clear(): void {
    for (const item of this.items) item.timerIndex = -1
    this.items = []
  }

  private removeAt(index: number): T {
    const items = this.items
    const item = items[index] as T
    const last = items.pop() as T
    if (last !== item) {
      items[index] = last
      last.timerIndex = index
      this.restore(index)
    }
    item.timerIndex = -1
    return item
  }

  /** The entry at `index` changed (or was moved in) and may be out of place either way. */
  private restore(index: number): void {
    const parent = (index - 1) >> 1
    if (index > 0 && less(this.items[index] as T, this.items[parent] as T)) {
      this.siftUp(index)
    } else {
      this.siftDown(index)
    }
  }

  private siftUp(index: number): void {
    const items = this.items
    const item = items[index] as T
    while (index > 0) {
      const parentIndex = (index - 1) >> 1
      const parent = items[parentIndex] as T
      if (!less(item, parent)) break
      items[index] = parent
      parent.timerIndex = index
      index = parentIndex
    }
    items[index] = item
    item.timerIndex = index
  }

  private siftDown(index: number): void {
    const items = this.items
    const length = items.length
    const item = items[index] as T
    for (;;) {
      let child = 2 * index + 1
      if (child >= length) break
      const right = child + 1
      if (right < length && less(items[right] as T, items[child] as T)) child = right
      const smaller = items[child] as T
      if (!less(smaller, item)) break
      items[index] = smaller
      smaller.timerIndex = index
      index = child
    }
    items[index] = item
    item.timerIndex = index
  }
}

function less(a: TimerSlot, b: TimerSlot): boolean {
  return a.dueAt < b.dueAt || (a.dueAt === b.dueAt && a.timerSeq < b.timerSeq)
}
