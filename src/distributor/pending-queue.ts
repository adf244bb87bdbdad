import type { JobStats, NameStats } from './job-stats.js'
import { pendingStamp, type TrackedJob } from './tracked-job.js'

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

/** Routes kept when empty (see PendingQueue.dropEmpty). */
const KEPT_ROUTES = 64

export function routeKey(name: string, node: string | undefined, notNode: string | undefined): string {
  // The common case, no node preference, needs no new string per job.
  if (node === undefined && notNode === undefined) return name
  return `${name}\0${node ?? ''}\0${notNode ?? ''}`
}

/**
 * Every job waiting for a node. INVARIANT: `size` counts jobs in state 'pending' only, and
 * each name's `stats.pending` those of its name; a cancel marks the job and decrements at
 * once, its slot is dropped lazily by `shift`.
 */
export class PendingQueue {
  readonly routes = new Map<string, Route>()
  private count = 0

  constructor(private readonly stats: JobStats) {}

  get size(): number {
    return this.count
  }

  /** Adds a job that enters the queue at `now`; returns the stats of its name. */
  push(job: TrackedJob, now: number): NameStats {
    const route = this.routeOf(job)
    job.pendingSince = pendingStamp(now)
    route.push(job)
    route.stats.pending++
    this.count++
    return route.stats
  }

  /** Returns jobs a node did not keep; they go before anything enqueued after them. */
  requeue(jobs: TrackedJob[]): void {
    const byRoute = new Map<Route, TrackedJob[]>()
    const since = pendingStamp(Date.now())
    for (const job of jobs.sort((a, b) => a.seq - b.seq)) {
      const route = this.routeOf(job)
      job.pendingSince = since
      let list = byRoute.get(route)
      if (list === undefined) byRoute.set(route, (list = []))
      list.push(job)
    }
    for (const [route, list] of byRoute) {
      route.unshift(list)
      route.stats.pending += list.length
    }
    this.count += jobs.length
  }

  /**
   * A job that only some of its route's nodes take, for its size, none of them with room
   * now: it waits beside `from`, in order with others set aside there, so that the jobs
   * behind it go on to the nodes that take them; a pass serves those set aside first, so
   * that they are not overtaken for good. Taken off `from` already; still counted.
   */
  setAside(job: TrackedJob, from: Route): void {
    from.asideRoute ??= new Route(`${from.key}\0aside`, from.name, from.node, from.notNode, from.stats)
    from.asideRoute.push(job)
  }

  /** Every job left (the distributor closed). */
  clear(): void {
    this.routes.clear()
    this.count = 0
    for (const stats of this.stats.values()) stats.pending = 0
  }

  /** A job of `route` left the queue for a node. */
  takenFrom(route: Route): void {
    this.count--
    route.stats.pending--
  }

  /** `job` left the queue otherwise (cancelled, ended, or taken by a node that answered late). */
  taken(job: TrackedJob): void {
    this.count--
    this.stats.of(job.name).pending--
  }

  /**
   * Per job name, when the job that has waited longest at the head of one of its routes
   * (the next to be dispatched there) entered the queue, as a `pendingStamp`. One look per
   * route, never a walk of the queue: the same as Sidekiq's queue latency.
   */
  oldestHeads(): Map<string, number> {
    const oldest = new Map<string, number>()
    const look = (route: Route): void => {
      const head = route.peek()
      if (head === undefined) return
      const seen = oldest.get(route.name)
      if (seen === undefined || head.pendingSince < seen) oldest.set(route.name, head.pendingSince)
    }
    for (const route of this.routes.values()) {
      look(route)
      if (route.asideRoute !== undefined) look(route.asideRoute)
    }
    return oldest
  }

  /**
   * Empty routes are kept while there are few: at one job in flight a route would be made
   * and dropped per job. Past KEPT_ROUTES (jobs pinned to many different nodes, say) an
   * empty one goes, so that a dispatch pass never walks a long list of empty routes.
   */
  dropEmpty(route: Route): void {
    if (route.length === 0 && (route.asideRoute?.length ?? 0) === 0 && this.routes.size > KEPT_ROUTES)
      this.routes.delete(route.key)
  }

  private routeOf(job: TrackedJob): Route {
    let route = this.routes.get(job.routeKey)
    if (route === undefined) {
      route = new Route(job.routeKey, job.name, job.opts.node, job.opts.notNode, this.stats.of(job.name))
      this.routes.set(job.routeKey, route)
    }
    return route
  }
}
