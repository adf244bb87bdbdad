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
  /** Where the entry is in its queue (see TimerHeap); -1 while it is in none. */
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
/** Popped slots at the run's front past which (and past half the run) they are cut off. */
const RUN_COMPACT_ABOVE = 1024

/**
 * The timer queue: a 4-ary min-heap on (dueAt, seq), plus a run: entries pushed in order.
 *
 * Why the run: delayed jobs mostly arrive in the order they fall due (the same `after`
 * for a burst, the same retry delay), and a heap makes each of them pay a sift of log n
 * levels to leave, each level a cache miss when a hundred thousand are due: that was the
 * largest single cost of firing one. An entry due no earlier than the run's last one
 * (its seq is higher: it is later in the order) is appended to the run instead; the run
 * stays sorted, so its front is its minimum, and push and pop are O(1). Anything else goes
 * to the heap; `peek` takes the smaller of the two fronts. Cancelling an entry of the run
 * leaves a hole that pops skip.
 *
 * Why the heap's keys live here, in one Float64Array beside the entries (due time, then
 * push seq, per slot), and not only on the entries: a sift compares several children per
 * level and should read contiguous keys, touching an entry only to move it.
 *
 * INVARIANTS
 * - `timerIndex` says where an entry is: i >= 0 is heap slot i; -1 is nowhere; p <= -2
 *   is the run's absolute position -2 - p (`runStart` is the absolute position of
 *   `run[0]`, so positions survive the cut of popped slots). Membership is checked by
 *   identity at that place, so an entry of another queue is never taken for one of ours.
 * - `items[i].timerIndex === i` and `keys[2i], keys[2i+1]` are that entry's due time and
 *   seq, for every i < size of the heap.
 * - The run is sorted by (dueAt, seq); `runSeqs[k]` is `run[k]`'s seq; `run[runHead]` is
 *   live whenever `runLive > 0`; `runLastDue` is the due time of the last entry appended.
 * - seq only grows, so (dueAt, seq) is a total order and equal due times come out in
 *   insertion order (a rescheduled entry counts as newly inserted). dueAt is always
 *   finite: a NaN would make every comparison false and silently corrupt the order.
 * - An entry is in at most one queue at a time.
 */
export class TimerHeap<T extends TimerSlot> {
  private items: T[] = []
  private keys = new Float64Array(2 * MIN_CAPACITY)
  private seqCounter = 0
  private run: (T | undefined)[] = []
  private runSeqs: number[] = []
  private runHead = 0
  private runStart = 0
  private runLive = 0
  private runLastDue = -Infinity

  get size(): number {
    return this.items.length + this.runLive
  }

  /** The seq the next push will receive; entries with a lower seq were pushed before now. */
  get nextSeq(): number {
    return this.seqCounter
  }

  /** Adds `item` due at `dueAt`, or moves it there when it is in the queue already. */
  push(item: T, dueAt: number): void {
    if (typeof dueAt !== 'number' || !Number.isFinite(dueAt)) {
      throw new InvalidArgumentError(`'dueAt' must be a finite number, got ${String(dueAt)}`)
    }
    // A move is a removal and a new entry (a fresh seq among ties).
    if (item.timerIndex !== -1) this.remove(item)
    item.dueAt = dueAt
    const seq = this.seqCounter++
    if (this.runLive === 0 || dueAt >= this.runLastDue) {
      item.timerIndex = -2 - (this.runStart + this.run.length)
      this.run.push(item)
      this.runSeqs.push(seq)
      this.runLive++
      this.runLastDue = dueAt
      return
    }
    const index = this.items.length
    if (2 * index + 2 > this.keys.length) this.grow()
    this.items.push(item)
    this.siftUp(index, item, dueAt, seq)
  }

  remove(item: T): boolean {
    const at = item.timerIndex
    if (at >= 0) {
      if (this.items[at] !== item) return false
      this.removeAt(at)
      return true
    }
    const k = -2 - at - this.runStart
    if (at > -2 || this.run[k] !== item) return false
    this.run[k] = undefined
    item.timerIndex = -1
    this.afterRunTake(k)
    return true
  }

  has(item: T): boolean {
    const at = item.timerIndex
    if (at >= 0) return this.items[at] === item
    return at <= -2 && this.run[-2 - at - this.runStart] === item
  }

  peek(): T | undefined {
    return this.runFirst() ? this.run[this.runHead] : this.items[0]
  }

  /** The seq of the entry `peek` returns; meaningless on an empty queue. */
  peekSeq(): number {
    return this.runFirst() ? (this.runSeqs[this.runHead] as number) : (this.keys[1] as number)
  }

  pop(): T | undefined {
    if (this.runFirst()) {
      const k = this.runHead
      const item = this.run[k] as T
      this.run[k] = undefined
      item.timerIndex = -1
      this.afterRunTake(k)
      return item
    }
    if (this.items.length === 0) return undefined
    return this.removeAt(0)
  }

  clear(): void {
    for (const item of this.items) item.timerIndex = -1
    for (const item of this.run) if (item !== undefined) item.timerIndex = -1
    this.items = []
    this.keys = new Float64Array(2 * MIN_CAPACITY)
    this.resetRun()
  }

  /** Whether the minimum is the run's front rather than the heap's top. */
  private runFirst(): boolean {
    if (this.runLive === 0) return false
    if (this.items.length === 0) return true
    const front = this.run[this.runHead] as T
    return less(front.dueAt, this.runSeqs[this.runHead] as number, this.keys[0] as number, this.keys[1] as number)
  }

  /** Slot `k` of the run was just emptied: keep its front live and its popped part small. */
  private afterRunTake(k: number): void {
    if (--this.runLive === 0) {
      this.resetRun()
      return
    }
    if (k !== this.runHead) return
    const run = this.run
    let head = k + 1
    while (run[head] === undefined) head++
    this.runHead = head
    if (head > RUN_COMPACT_ABOVE && 2 * head > run.length) {
      run.splice(0, head)
      this.runSeqs.splice(0, head)
      this.runStart += head
      this.runHead = 0
    }
  }

  private resetRun(): void {
    this.runStart = 0
    this.run = []
    this.runSeqs = []
    this.runHead = 0
    this.runLive = 0
    this.runLastDue = -Infinity
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
