/**
 * Values by (job id, run) without building a key string per lookup. A `${id}:${run}` key
 * is a new string to concatenate, flatten and hash on every add, send and ack; keyed by
 * the id alone, a lookup reuses the id's cached hash. Nearly every job has one value at a
 * time; the rare periodic job with several runs unacknowledged keeps them in an array, in
 * the order they were added.
 *
 * Iteration yields each job's values in the order they were added, jobs in the order
 * they first appeared: per job, runs stay in order (what feedback delivery needs).
 * Values must not be arrays (an array marks a job with several).
 */
export class RunIndex<V> {
  private readonly byId = new Map<string, V | V[]>()
  private count = 0

  constructor(private readonly runOf: (value: V) => number) {}

  get size(): number {
    return this.count
  }

  /** Adds `value` under (id, its run), replacing a value of the same run. */
  set(id: string, value: V): void {
    const run = this.runOf(value)
    const slot = this.byId.get(id)
    if (slot === undefined) {
      this.byId.set(id, value)
      this.count++
    } else if (Array.isArray(slot)) {
      const i = slot.findIndex((v) => this.runOf(v) === run)
      if (i >= 0) slot[i] = value
      else {
        slot.push(value)
        this.count++
      }
    } else if (this.runOf(slot) === run) {
      this.byId.set(id, value)
    } else {
      this.byId.set(id, [slot, value])
      this.count++
    }
  }

  /** Removes the value of (id, run); returns it, or undefined when there was none. */
  delete(id: string, run: number): V | undefined {
    const slot = this.byId.get(id)
    if (slot === undefined) return undefined
    if (!Array.isArray(slot)) {
      if (this.runOf(slot) !== run) return undefined
      this.byId.delete(id)
      this.count--
      return slot
    }
    const i = slot.findIndex((v) => this.runOf(v) === run)
    if (i < 0) return undefined
    const [removed] = slot.splice(i, 1)
    if (slot.length === 1) this.byId.set(id, slot[0] as V)
    this.count--
    return removed
  }

  values(): V[] {
    const out: V[] = []
    for (const slot of this.byId.values()) {
      if (Array.isArray(slot)) out.push(...slot)
      else out.push(slot)
    }
    return out
  }

  clear(): void {
    this.byId.clear()
    this.count = 0
  }
}
