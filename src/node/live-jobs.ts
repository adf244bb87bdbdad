import { SLOT_TABLE_SHRINK_ABOVE, slotOf } from '../protocol/job-id.js'
import type { ProgressValue } from '../protocol/messages.js'
import type { Timer, TimerSlot } from '../scheduling/timer-heap.js'
import type { JobRecord, Store } from '../storage/store.js'
import type { DistributorLink } from './distributor-link.js'

/**
 * A job this node holds: its record, plus what is only meaningful while the process lives.
 * One object rather than a wrapper around the record: a node may hold a million of them.
 */
export interface LiveJob extends JobRecord, TimerSlot {
  /** Where it is in this process; 'saving' until the store holds it. */
  phase: 'saving' | 'scheduled' | 'queued' | 'running' | 'done'
  /** The application asked to cancel it while it ran: act when the attempt ends. */
  cancelRequested: boolean
  /**
   * The link the cancel came by, when not the job's own distributor's (another member of its
   * group asked): the answer goes there too.
   */
  cancelledBy?: DistributorLink | undefined
  /**
   * Its distributor took it back while it ran (a memory node's link dropped): the running
   * attempt is its last here, unless the distributor sends it here again meanwhile.
   */
  released?: boolean
  /** Where it is stored: this node's store, or a dead peer's after a takeover. */
  store: Store
  /**
   * The last value it reported (ctx.progress), for the admin API. Set only on a job that
   * reports (or resumed with one from its record): the others keep their shape. A durable
   * store keeps it in the record too (ProgressReporter), so a restarted node has it.
   */
  progress?: ProgressValue
}

/** A stored job taken back in (resumed at start, taken over, retried by an operator): held, waiting for its time. */
export function liveJobOf(record: JobRecord, store: Store): LiveJob {
  return Object.assign(record, { phase: 'scheduled' as const, cancelRequested: false, store, timerIndex: -1 })
}

/**
 * What the node's one scheduler holds: jobs' due times, and as `Timer`s the attempts'
 * timeouts, lease upkeep, the store probe and the store deadline.
 */
export type TimerItem = LiveJob | Timer

/** What the table needs of a job. */
export interface Identified {
  readonly id: string
}

/**
 * Slots past which a job goes to the map: the array grows to the highest slot it holds, and
 * a distributor's slots stay below its maxPending (a million by default).
 */
const MAX_ARRAY_SLOT = 1 << 21
/**
 * The jobs a node holds, by id. Most ids name their distributor's slot (see newJobId): such
 * a job is filed in an array at that slot, so that taking a job in, finding it and letting
 * it go read no hash of its id. With a hundred thousand delayed jobs, the Map's has, set
 * and delete cost ~0.7 µs per job here, mostly cache misses on the keys it compares.
 *
 * Slots are unique per distributor only: a job whose slot is taken by another (a second
 * distributor, a job resumed from storage after its distributor restarted), or whose id
 * has no slot (another format), goes to the map. Lookups try the array, then the map.
 */
export class LiveJobs<T extends Identified> {
  private readonly slots: (T | undefined)[] = []
  private readonly others = new Map<string, T>()
  private count = 0
  /** Jobs per owner key (see the constructor); a key is here only while it has jobs. */
  private readonly owners = new Map<string, number>()

  /**
   * @param ownerOf the key jobs are counted by (the node: the distributor a job came from),
   *   so that "does this node hold anything for X" costs one lookup, not a scan of a million
   *   jobs; it must not change while the job is filed. Without it nothing is counted.
   * @param onLastOf called when the last job of an owner leaves the table.
   */
  constructor(
    private readonly ownerOf?: (job: T) => string,
    private readonly onLastOf?: (owner: string) => void,
  ) {}

  /** The owners of the jobs filed now. */
  ownerKeys(): IterableIterator<string> {
    return this.owners.keys()
  }

  get size(): number {
    return this.count
  }

  get(id: string): T | undefined {
    const slot = slotOf(id)
    if (slot >= 0 && slot < this.slots.length) {
      const job = this.slots[slot]
      if (job !== undefined && job.id === id) return job
    }
    return this.others.size === 0 ? undefined : this.others.get(id)
  }

  has(id: string): boolean {
    return this.get(id) !== undefined
  }

  /** Files a job; its id must not be filed already (check with `has`). */
  add(job: T): void {
    this.count++
    if (this.ownerOf !== undefined) {
      const owner = this.ownerOf(job)
      this.owners.set(owner, (this.owners.get(owner) ?? 0) + 1)
    }
    const slot = slotOf(job.id)
    if (slot < 0 || slot >= MAX_ARRAY_SLOT) {
      this.others.set(job.id, job)
      return
    }
    const slots = this.slots
    // Grown by push, so the array stays packed (an index past its end would make it sparse).
    while (slots.length <= slot) slots.push(undefined)
    if (slots[slot] === undefined) slots[slot] = job
    else this.others.set(job.id, job)
  }

  delete(job: T): void {
    const slot = slotOf(job.id)
    if (slot >= 0 && slot < this.slots.length && this.slots[slot] === job) this.slots[slot] = undefined
    else if (!this.others.delete(job.id)) return
    this.count--
    if (this.ownerOf !== undefined) this.forget(this.ownerOf(job))
    if (this.count === 0 && this.slots.length > SLOT_TABLE_SHRINK_ABOVE) this.slots.length = 0
  }

  private forget(owner: string): void {
    const left = (this.owners.get(owner) ?? 1) - 1
    if (left > 0) {
      this.owners.set(owner, left)
      return
    }
    this.owners.delete(owner)
    this.onLastOf?.(owner)
  }

  /**
   * Calls `visit` with each job until it returns false: a plain loop, for walks of every job
   * (an admin page deep into a million), several times faster than `values()`' generator.
   */
  each(visit: (job: T) => boolean): void {
    for (const job of this.slots) if (job !== undefined && !visit(job)) return
    for (const job of this.others.values()) if (!visit(job)) return
  }

  *values(): IterableIterator<T> {
    for (const job of this.slots) if (job !== undefined) yield job
    yield* this.others.values()
  }
}
