import { InvalidArgumentError } from '../errors.js'

/** One scheduled item as the heap hands it out. */
export interface TimerEntry<T> {
  readonly key: string
  /** Epoch ms. */
  readonly dueAt: number
  /** Insertion counter: among equal due times the lower seq comes first. */
  readonly seq: number
  readonly item: T
}

/**
 * Mutable internal form. Five fields and no closures: the heap must hold a million delayed
 * jobs, so the per-entry cost is this object plus one Map slot.
 */
interface Node<T> {
  key: string
  dueAt: number
  seq: number
  item: T
  /** Position in `nodes`; -1 once the entry has left the heap. */
  index: number
}

/**
 * Binary min-heap on (dueAt, seq) with removal and rescheduling by key in O(log n).
 *
 * INVARIANTS: `nodes[i].index === i` for every i, and `byKey` holds exactly the nodes in
 * `nodes`, so a key lookup yields the slot to sift from without a search. seq only grows,
 * so (dueAt, seq) is a total order and equal due times come out in insertion order (a
 * rescheduled entry counts as newly inserted). dueAt is always finite: a NaN would make
 * every comparison false and silently corrupt the order.
 */
export class TimerHeap<T> {
  private nodes: Node<T>[] = []
  private byKey = new Map<string, Node<T>>()
  private seqCounter = 0

  get size(): number {
    return this.nodes.length
  }

  /** The seq the next push will receive; entries with a lower seq were pushed before now. */
  get nextSeq(): number {
    return this.seqCounter
  }

  /** Adds an entry, or replaces the entry with the same key (due time, item and seq). */
  push(key: string, dueAt: number, item: T): void {
    if (typeof dueAt !== 'number' || !Number.isFinite(dueAt)) {
      throw new InvalidArgumentError(`'dueAt' must be a finite number, got ${String(dueAt)}`)
    }
    const seq = this.seqCounter++
    const existing = this.byKey.get(key)
    if (existing !== undefined) {
      // Reuse the node rather than remove + insert: one sift instead of two.
      existing.dueAt = dueAt
      existing.seq = seq
      existing.item = item
      this.restore(existing.index)
      return
    }
    const node: Node<T> = { key, dueAt, seq, item, index: this.nodes.length }
    this.nodes.push(node)
    this.byKey.set(key, node)
    this.siftUp(node.index)
  }

  remove(key: string): boolean {
    const node = this.byKey.get(key)
    if (node === undefined) return false
    this.removeAt(node.index)
    return true
  }

  has(key: string): boolean {
    return this.byKey.has(key)
  }

  get(key: string): TimerEntry<T> | undefined {
    return this.byKey.get(key)
  }

  peek(): TimerEntry<T> | undefined {
    return this.nodes[0]
  }

  pop(): TimerEntry<T> | undefined {
    if (this.nodes.length === 0) return undefined
    return this.removeAt(0)
  }

  clear(): void {
    for (const node of this.nodes) node.index = -1
    this.nodes = []
    this.byKey = new Map()
  }

  private removeAt(index: number): Node<T> {
    const nodes = this.nodes
    const node = nodes[index] as Node<T>
    const last = nodes.pop() as Node<T>
    if (last !== node) {
      nodes[index] = last
      last.index = index
      this.restore(index)
    }
    this.byKey.delete(node.key)
    node.index = -1
    return node
  }

  /** The node at `index` changed (or was moved in) and may be out of place either way. */
  private restore(index: number): void {
    const parent = (index - 1) >> 1
    if (index > 0 && less(this.nodes[index] as Node<T>, this.nodes[parent] as Node<T>)) {
      this.siftUp(index)
    } else {
      this.siftDown(index)
    }
  }

  private siftUp(index: number): void {
    const nodes = this.nodes
    const node = nodes[index] as Node<T>
    while (index > 0) {
      const parentIndex = (index - 1) >> 1
      const parent = nodes[parentIndex] as Node<T>
      if (!less(node, parent)) break
      nodes[index] = parent
      parent.index = index
      index = parentIndex
    }
    nodes[index] = node
    node.index = index
  }

  private siftDown(index: number): void {
    const nodes = this.nodes
    const length = nodes.length
    const node = nodes[index] as Node<T>
    for (;;) {
      let child = 2 * index + 1
      if (child >= length) break
      const right = child + 1
      if (right < length && less(nodes[right] as Node<T>, nodes[child] as Node<T>)) child = right
      const smaller = nodes[child] as Node<T>
      if (!less(smaller, node)) break
      nodes[index] = smaller
      smaller.index = index
      index = child
    }
    nodes[index] = node
    node.index = index
  }
}

function less<T>(a: Node<T>, b: Node<T>): boolean {
  return a.dueAt < b.dueAt || (a.dueAt === b.dueAt && a.seq < b.seq)
}
