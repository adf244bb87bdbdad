import type { NameStats } from './job-stats.js'
import type { TrackedJob } from './tracked-job.js'

/**
 * Jobs with the same (name, node, notNode) can go to the same nodes, so they share one
 * FIFO "route". A dispatch pass asks the pool once per route instead of once per job: with
 * a million jobs waiting for a busy or absent node, a pass costs one lookup per route, not
 * a scan of the queue.
 */
export class Route {
  private items: TrackedJob[] = []
  private head = 0

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
    return this.items.length - this.head
  }

  push(job: TrackedJob): void {
    this.items.push(job)
  }

  /** Puts jobs back at the front, oldest first (they were enqueued before the rest). */
  unshift(jobs: TrackedJob[]): void {
    this.items = jobs.concat(this.items.slice(this.head))
    this.head = 0
  }

  /** Next job still waiting, left in place; cancelled jobs before it are dropped here. */
  peek(): TrackedJob | undefined {
    while (this.head < this.items.length) {
      const job = this.items[this.head] as TrackedJob
      if (job.state === 'pending') return job
      this.drop()
    }
    return undefined
  }

  /**
   * Jobs `offset` to `offset + limit` in line (with those set aside from it after), and how
   * many are in line: for the admin API, a slice, never a walk of the route. A cancelled job
   * not yet dropped holds its place in the count and is left out of the page.
   */
  page(offset: number, limit: number): { jobs: TrackedJob[]; total: number } {
    const aside = this.asideRoute?.length ?? 0
    const total = this.length + aside
    const own = this.items.slice(this.head + offset, this.head + offset + limit)
    const rest = limit - own.length
    const more =
      rest > 0 && this.asideRoute !== undefined
        ? this.asideRoute.page(Math.max(0, offset - this.length), rest).jobs
        : []
    return { jobs: own.concat(more).filter((job) => job.state === 'pending'), total }
  }

  /** Takes every job still waiting, in order. */
  takeAll(): TrackedJob[] {
    const jobs: TrackedJob[] = []
    for (let job = this.shift(); job !== undefined; job = this.shift()) jobs.push(job)
    return jobs
  }

  /** Takes the next job still waiting (the one `peek` returns). */
  shift(): TrackedJob | undefined {
    const job = this.peek()
    if (job !== undefined) this.drop()
    return job
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
