import { InvalidArgumentError } from '../errors.js'

/**
 * The fields an entry carries for the heap. The heap keeps no object of its own per entry
 * and no key index: a node holds a million delayed jobs, and a wrapper object plus a Map
 * slot each cost more than the rest of the heap. `timerIndex` belongs to the heap; outside
 * code only reads `dueAt`.
 */
export interface TimerSlot {
  /** Epoch ms; set by `push`. */
  dueAt: number
  /** Position in the heap's array; -1 while the entry is in no heap. */
  timerIndex: number
}

/** A callback as a heap entry, for timers that are not jobs (timeouts, lease upkeep). */
export class Timer implements TimerSlot {
  dueAt = 0
  timerIndex = -1

  constructor(readonly fire: () => void) {}
}

/** Children per node: half the depth of a binary heap, so half the entries moved per pop. */
const ARITY = 4
/** Entries the keys have room for at least; the room doubles and halves from there. */
const MIN_CAPACITY = 64

/**
 * 4-ary min-heap on (dueAt, seq) with removal and rescheduling of an entry in O(log n).
 *
 * Why the keys live here, in one Float64Array beside the entries (due time, then push
 * seq, per slot), and not only on the entries: a sift compares several children per level,
 * and with a hundred thousand jobs due the entries are cold in memory; reading their keys
 * was the largest cost of firing a delayed job. Now a sift reads contiguous keys and
 * touches an entry only to move it.
 *
 * INVARIANTS: `items[i].timerIndex === i` and `keys[2i], keys[2i+1]` are that entry's due
 * time and seq, for every i < size; an entry not in `items` has timerIndex -1, so removal
 * needs no search. seq only grows, so (dueAt, seq) is a total order and equal due times
 * come out in insertion order (a rescheduled entry counts as newly inserted). dueAt is
 * always finite: a NaN would make every comparison false and silently corrupt the order.
 * An entry is in at most one heap at a time.
 */
export class TimerHeap<T extends TimerSlot> {
  private items: T[] = []
  private keys = new Float64Array(2 * MIN_CAPACITY)
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
    const seq = this.seqCounter++
    if (this.has(item)) {
      // One sift instead of remove + insert.
      this.restore(item.timerIndex, item, dueAt, seq)
      return
    }
    const index = this.items.length
    if (2 * index + 2 > this.keys.length) this.grow()
    this.items.push(item)
    this.siftUp(index, item, dueAt, seq)
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

  /** The seq of the entry `peek` returns; meaningless on an empty heap. */
  peekSeq(): number {
    return this.keys[1] as number
  }

  pop(): T | undefined {
    if (this.items.length === 0) return undefined
    return this.removeAt(0)
  }

  clear(): void {
    for (const item of this.items) item.timerIndex = -1
    this.items = []
    this.keys = new Float64Array(2 * MIN_CAPACITY)
  }

  private grow(): void {
    const keys = new Float64Array(this.keys.length * 2)
    keys.set(this.keys)
    this.keys = keys
  }

  /** A heap that held a million jobs once does not keep their room for ever. */
  private shrink(): void {
    this.keys = this.keys.slice(0, this.keys.length / 2)
  }

  private removeAt(index: number): T {
    const items = this.items
    const item = items[index] as T
    const last = items.pop() as T
    if (last !== item) {
      const from = 2 * items.length
      this.restore(index, last, this.keys[from] as number, this.keys[from + 1] as number)
    }
    item.timerIndex = -1
    if (this.keys.length > 2 * MIN_CAPACITY && 8 * items.length < this.keys.length) this.shrink()
    return item
  }

  /** Puts `item` with key (due, seq) at `index`, where it may be out of place either way. */
  private restore(index: number, item: T, due: number, seq: number): void {
    const parent = (index - 1) >> 2
    if (index > 0 && less(due, seq, this.keys[2 * parent] as number, this.keys[2 * parent + 1] as number)) {
      this.siftUp(index, item, due, seq)
    } else {
      this.siftDown(index, item, due, seq)
    }
  }

  private siftUp(index: number, item: T, due: number, seq: number): void {
    const items = this.items
    const keys = this.keys
    while (index > 0) {
      const parentIndex = (index - 1) >> 2
      const parentDue = keys[2 * parentIndex] as number
      const parentSeq = keys[2 * parentIndex + 1] as number
      if (!less(due, seq, parentDue, parentSeq)) break
      this.place(index, items[parentIndex] as T, parentDue, parentSeq)
      index = parentIndex
    }
    this.place(index, item, due, seq)
  }

  private siftDown(index: number, item: T, due: number, seq: number): void {
    const items = this.items
    const keys = this.keys
    const length = items.length
    for (;;) {
      const first = ARITY * index + 1
      if (first >= length) break
      let child = first
      let childDue = keys[2 * first] as number
      let childSeq = keys[2 * first + 1] as number
      const end = Math.min(first + ARITY, length)
      for (let k = first + 1; k < end; k++) {
        const d = keys[2 * k] as number
        const q = keys[2 * k + 1] as number
        if (less(d, q, childDue, childSeq)) {
          child = k
          childDue = d
          childSeq = q
        }
      }
      if (!less(childDue, childSeq, due, seq)) break
      this.place(index, items[child] as T, childDue, childSeq)
      index = child
    }
    this.place(index, item, due, seq)
  }

  private place(index: number, item: T, due: number, seq: number): void {
    this.items[index] = item
    this.keys[2 * index] = due
    this.keys[2 * index + 1] = seq
    item.timerIndex = index
  }
}

function less(dueA: number, seqA: number, dueB: number, seqB: number): boolean {
  return dueA < dueB || (dueA === dueB && seqA < seqB)
}
