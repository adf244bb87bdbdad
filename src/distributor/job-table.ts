import { QueueFullError } from '../errors.js'
import { MAX_SLOTS, SLOT_TABLE_SHRINK_ABOVE, newJobId, slotOf } from '../protocol/job-id.js'
import type { TrackedJob } from './tracked-job.js'

/**
 * Every unfinished job of a distributor, by id. A job's id names its slot here (see
 * newJobId), so a lookup is an array read and a string compare: no hashing of the id, no
 * probing of a table of a hundred thousand entries on every enqueue and every feedback.
 *
 * A freed slot is reused by a later job; an id that names a slot held by another job (a
 * feedback from before a restart, a duplicate after the job finished) finds nothing,
 * because the ids differ in their random part.
 */
export class JobTable {
  private readonly slots: (TrackedJob | undefined)[] = []
  private readonly free: number[] = []
  private count = 0
  /** The slot of the last id handed out: `add` fills it without reading the id again. */
  private reserved = -1
  /**
   * Jobs read back from a spool whose slot another job holds (an adopted member numbered
   * its slots on its own): by id. Undefined, and never looked at, until one comes.
   */
  private others: Map<string, TrackedJob> | undefined

  get size(): number {
    return this.count
  }

  /** A new id naming a free slot; `add` the job that gets it before calling this again. */
  newId(): string {
    let slot = this.slots.length
    // A slot on the free list may have been filled since (fill, restoreAll): skipped.
    while (this.free.length > 0) {
      const free = this.free.pop() as number
      if (this.slots[free] === undefined) {
        slot = free
        break
      }
    }
    if (slot >= MAX_SLOTS)
      throw new QueueFullError(
        MAX_SLOTS,
        `the distributor holds ${MAX_SLOTS} unfinished jobs, as many as job ids can name`,
      )
    if (slot === this.slots.length) this.slots.push(undefined)
    this.reserved = slot
    return newJobId(slot)
  }

  /** Files the job that got the last id from `newId`. */
  add(job: TrackedJob): void {
    this.slots[this.reserved] = job
    this.reserved = -1
    this.count++
  }

  /**
   * Files a job whose id came from `newId` a while ago (a unique key's claim was on its way
   * meanwhile): in its slot if that is still free, else aside.
   */
  fill(job: TrackedJob): void {
    const slot = slotOf(job.id)
    // WHY the reserved slot may be filled: a claim is answered from a callback, never between
    // a plain enqueue's newId and its add; reserved is then this job's own slot (no newId since).
    if (slot < this.slots.length && this.slots[slot] === undefined) {
      this.slots[slot] = job
      if (this.reserved === slot) this.reserved = -1
    } else {
      ;(this.others ??= new Map()).set(job.id, job)
    }
    this.count++
  }

  /** The job that got `id` from `newId` a while ago will never be filed: its slot is free again. */
  release(id: string): void {
    const slot = slotOf(id)
    if (slot < this.slots.length && this.slots[slot] === undefined) this.free.push(slot)
  }

  /**
   * Files jobs read back from a spool under the ids they had: each in its slot when that is
   * free, else aside. Returns those filed (an id here already is skipped). The free list is
   * made again once, after: a million restored jobs must not each search it.
   */
  restoreAll(jobs: readonly TrackedJob[]): TrackedJob[] {
    const filed: TrackedJob[] = []
    // A slot far past any this table could need (a spool written by a much busier member)
    // would grow the array to it: such a job goes aside.
    const reach = 2 * Math.max(this.slots.length, jobs.length) + 1024
    for (const job of jobs) {
      if (this.get(job.id) !== undefined) continue
      const slot = slotOf(job.id)
      if (slot >= 0 && slot < reach && this.slots[slot] === undefined && this.reserved !== slot) {
        while (this.slots.length <= slot) this.slots.push(undefined)
        this.slots[slot] = job
      } else {
        ;(this.others ??= new Map()).set(job.id, job)
      }
      this.count++
      filed.push(job)
    }
    this.free.length = 0
    for (let slot = this.slots.length - 1; slot >= 0; slot--) {
      if (this.slots[slot] === undefined && slot !== this.reserved) this.free.push(slot)
    }
    return filed
  }

  get(id: string): TrackedJob | undefined {
    const job = this.slots[slotOf(id)]
    if (job !== undefined && job.id === id) return job
    return this.others?.get(id)
  }

  delete(job: TrackedJob): void {
    const slot = slotOf(job.id)
    if (this.slots[slot] !== job) {
      if (this.others?.delete(job.id) === true) this.count--
      return
    }
    this.slots[slot] = undefined
    this.count--
    // Once a burst is over, its peak's arrays go (a million slots hold 16 MB): empty is
    // the moment every slot is free without a scan. Small tables keep theirs.
    if (this.count === 0 && this.slots.length > SLOT_TABLE_SHRINK_ABOVE) this.clear()
    else this.free.push(slot)
  }

  *values(): IterableIterator<TrackedJob> {
    for (const job of this.slots) if (job !== undefined) yield job
    if (this.others !== undefined) yield* this.others.values()
  }

  clear(): void {
    this.slots.length = 0
    this.free.length = 0
    this.count = 0
    this.others = undefined
  }
}
