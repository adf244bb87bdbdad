import type { JobStats, NameStats } from './job-stats.js'
import { LimitedRoute } from './limited-route.js'
import { keyOf, type Limits } from './limits.js'
import { Route } from './route.js'
import { pendingStamp, type TrackedJob } from './tracked-job.js'

export { Route } from './route.js'

/** A route of the queue: a plain FIFO, or the key-by-key lines of a limited job name. */
export type AnyRoute = Route | LimitedRoute

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
  readonly routes = new Map<string, AnyRoute>()
  private count = 0

  constructor(
    private readonly stats: JobStats,
    private readonly limits: Limits,
  ) {}

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
    const byRoute = new Map<AnyRoute, TrackedJob[]>()
    const since = pendingStamp(Date.now())
    for (const job of jobs.sort((a, b) => a.seq - b.seq)) {
      if (job.holdsSlot) this.limits.release(job)
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
  setAside(job: TrackedJob, from: AnyRoute): void {
    from.asideRoute ??= new Route(`${from.key}\0aside`, from.name, from.node, from.notNode, from.stats)
    from.asideRoute.push(job)
  }

  /** Every job left (the distributor closed). */
  clear(): void {
    for (const route of this.routes.values()) if (route instanceof LimitedRoute) route.detach()
    this.routes.clear()
    this.count = 0
    for (const stats of this.stats.values()) stats.pending = 0
  }

  /** A job of `route` left the queue for a node. */
  takenFrom(route: AnyRoute): void {
    this.count--
    route.stats.pending--
  }

  /** `job` left the queue otherwise (cancelled, ended, or taken by a node that answered late). */
  taken(job: TrackedJob): void {
    this.count--
    this.stats.of(job.name).pending--
    this.limits.of(job.name)?.leftUnsent(keyOf(job))
  }

  /**
   * Per job name, when the job that has waited longest at the head of one of its routes
   * (the next to be dispatched there) entered the queue, as a `pendingStamp`. One look per
   * route, never a walk of the queue: the same as Sidekiq's queue latency.
   */
  oldestHeads(): Map<string, number> {
    const oldest = new Map<string, number>()
    const look = (route: AnyRoute): void => {
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
  dropEmpty(route: AnyRoute): void {
    if (route.length === 0 && (route.asideRoute?.length ?? 0) === 0 && this.routes.size > KEPT_ROUTES) this.drop(route)
  }

  /**
   * Job name `name` was limited, unlimited or counted otherwise (Limits.set): its waiting
   * jobs are filed again, in enqueue order, into routes of the new kind. Rare; a walk of
   * that name's jobs.
   */
  refile(name: string): void {
    let jobs: TrackedJob[] = []
    for (const route of [...this.routes.values()]) {
      if (route.name !== name) continue
      jobs = jobs.concat(route.takeAll(), route.asideRoute?.takeAll() ?? [])
      this.drop(route)
    }
    for (const job of jobs.sort((a, b) => a.seq - b.seq)) this.routeOf(job).push(job)
  }

  /**
   * Jobs held back by their name's limit or by a push-back, and their keys, by name (metrics,
   * admin API). A name pushed back as a whole counts its waiting jobs under one key, ''.
   */
  limited(): Map<string, { jobs: number; keys: number }> {
    const byName = new Map<string, { jobs: number; keys: number }>()
    for (const limit of this.limits.values()) byName.set(limit.name, { jobs: 0, keys: 0 })
    const pushedBack = this.limits.pausedNames
    for (const name of pushedBack.keys()) byName.set(name, { jobs: 0, keys: 1 })
    const now = Date.now()
    for (const route of this.routes.values()) {
      const sum = byName.get(route.name)
      if (sum === undefined) continue
      if (pushedBack.has(route.name)) {
        sum.jobs += route.length + (route.asideRoute?.length ?? 0)
        continue
      }
      if (!(route instanceof LimitedRoute)) continue
      const held = route.held(now)
      sum.jobs += held.jobs
      sum.keys += held.keys
    }
    return byName
  }

  private drop(route: AnyRoute): void {
    this.routes.delete(route.key)
    if (route instanceof LimitedRoute) route.detach()
  }

  private routeOf(job: TrackedJob): AnyRoute {
    let route = this.routes.get(job.routeKey)
    if (route === undefined) {
      const limit = this.limits.of(job.name)
      const stats = this.stats.of(job.name)
      const { node, notNode } = job.opts
      route =
        limit === undefined
          ? new Route(job.routeKey, job.name, node, notNode, stats)
          : new LimitedRoute(job.routeKey, job.name, node, notNode, stats, limit)
      this.routes.set(job.routeKey, route)
    }
    return route
  }
}
