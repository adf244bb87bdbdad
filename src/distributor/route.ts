import type { NameStats } from './job-stats.js'
import type { TrackedJob } from './tracked-job.js'

/**
 * Jobs with the same (name, node, notNode) can go to the same nodes, so they share one
 * "route". A dispatch pass asks the pool once per route instead of once per job: with
 * a million jobs waiting for a busy or absent node, a pass costs one lookup per route, not
 * a scan of the queue.
 *
 * A route is one FIFO while its jobs have no `priority` (the usual case, and its whole
 * cost). The first job with a non-zero priority gives it lanes: one FIFO per priority
 * seen, highest first, the jobs without one in the lane 0; a route keeps its lanes until
 * it is dropped.
 */
export class Route {
  /** The lane of priority 0: the only one until a job with another priority comes. */
  private readonly base = new Fifo(0)
  /** Every lane, highest priority first, `base` among them; undefined while `base` is alone. */
  private lanes: Fifo[] | undefined = undefined

  constructor(
    readonly key: string,
    readonly name: string,
    readonly node: string | undefined,
    readonly notNode: string | undefined,
    /** The stats of its job name: a job that enters or leaves the route is counted without a lookup. */
    readonly stats: NameStats,
  ) {}

  /** Jobs set aside from this route for their size; a dispatch pass serves them first. */
  asideRoute: Route | undefined = undefined

  get length(): number {
    const lanes = this.lanes
    if (lanes === undefined) return this.base.length
    let n = 0
    for (const lane of lanes) n += lane.length
    return n
  }

  push(job: TrackedJob): void {
    const priority = job.opts.priority
    if (priority === undefined) this.base.push(job)
    else this.laneOf(priority).push(job)
  }

  /** Puts jobs back at the front of their lanes, oldest first (they were enqueued before the rest). */
  unshift(jobs: TrackedJob[]): void {
    if (this.lanes === undefined && jobs.every((job) => job.opts.priority === undefined)) {
      this.base.unshift(jobs)
      return
    }
    const byLane = new Map<Fifo, TrackedJob[]>()
    for (const job of jobs) {
      const lane = this.laneOf(job.opts.priority ?? 0)
      let list = byLane.get(lane)
      if (list === undefined) byLane.set(lane, (list = []))
      list.push(job)
    }
    for (const [lane, list] of byLane) lane.unshift(list)
  }

  /** Next job still waiting, left in place; cancelled jobs before it are dropped here. */
  peek(): TrackedJob | undefined {
    const lanes = this.lanes
    if (lanes === undefined) return this.base.peek()
    for (const lane of lanes) {
      const job = lane.peek()
      if (job !== undefined) return job
    }
    return undefined
  }

  /** Takes the next job still waiting (the one `peek` returns). */
  shift(): TrackedJob | undefined {
    const lanes = this.lanes
    if (lanes === undefined) return this.base.shift()
    for (const lane of lanes) {
      const job = lane.shift()
      if (job !== undefined) return job
    }
    return undefined
  }

  /**
   * Jobs `offset` to `offset + limit` in line (with those set aside from it after), and how
   * many are in line: for the admin API, a slice per lane, never a walk of the route. A
   * cancelled job not yet dropped holds its place in the count and is left out of the page.
   */
  page(offset: number, limit: number): { jobs: TrackedJob[]; total: number } {
    const own: TrackedJob[] = []
    let skip = offset
    let total = 0
    for (const lane of this.lanes ?? [this.base]) {
      total += lane.length
      if (own.length >= limit) continue
      if (skip >= lane.length) {
        skip -= lane.length
        continue
      }
      for (const job of lane.slice(skip, limit - own.length)) own.push(job)
      skip = 0
    }
    const rest = limit - own.length
    const aside = this.asideRoute
    const more = rest > 0 && aside !== undefined ? aside.page(skip, rest).jobs : []
    return { jobs: own.concat(more).filter((job) => job.state === 'pending'), total: total + (aside?.length ?? 0) }
  }

  /** Takes every job still waiting, in order. */
  takeAll(): TrackedJob[] {
    const jobs: TrackedJob[] = []
    for (let job = this.shift(); job !== undefined; job = this.shift()) jobs.push(job)
    return jobs
  }

  private laneOf(priority: number): Fifo {
    if (priority === 0) return this.base
    const lanes = (this.lanes ??= [this.base])
    let i = 0
    while (i < lanes.length && (lanes[i] as Fifo).priority > priority) i++
    const found = lanes[i]
    if (found !== undefined && found.priority === priority) return found
    const lane = new Fifo(priority)
    lanes.splice(i, 0, lane)
    return lane
  }
}

/** One lane of a route: the jobs of one priority, in order. */
class Fifo {
  private items: TrackedJob[] = []
  private head = 0

  constructor(readonly priority: number) {}

  get length(): number {
    return this.items.length - this.head
  }

  push(job: TrackedJob): void {
    this.items.push(job)
  }

  unshift(jobs: TrackedJob[]): void {
    this.items = jobs.concat(this.items.slice(this.head))
    this.head = 0
  }

  peek(): TrackedJob | undefined {
    while (this.head < this.items.length) {
      const job = this.items[this.head] as TrackedJob
      if (job.state === 'pending') return job
      this.drop()
    }
    return undefined
  }

  shift(): TrackedJob | undefined {
    const job = this.peek()
    if (job !== undefined) this.drop()
    return job
  }

  /** Up to `limit` jobs from `offset` in line, cancelled ones not yet dropped included. */
  slice(offset: number, limit: number): TrackedJob[] {
    return this.items.slice(this.head + offset, this.head + offset + limit)
  }

  private drop(): void {
    this.items[this.head] = undefined as unknown as TrackedJob
    this.head++
    if (this.head === this.items.length) {
      // Drained: start over in place (a kept route stays small).
      this.items.length = 0
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
  }
}
