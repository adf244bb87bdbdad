import { FRAME_ENVELOPE_BYTES } from '../config.js'
import type { Logger } from '../logger.js'
import type { WireJob } from '../protocol/messages.js'
import { afterMicrotasks } from '../scheduling/clock.js'
import type { DistributorEvents } from './events.js'
import type { NodePool } from './node-pool.js'
import type { NodeSession } from './node-session.js'
import { LimitedRoute } from './limited-route.js'
import { keyOf, type NameLimit } from './limits.js'
import type { AnyRoute, PendingQueue, Route } from './pending-queue.js'
import { assign, toWireJob, wireSize, type TrackedJob } from './tracked-job.js'

/** What a dispatch pass needs of the rest of the distributor. */
export interface DispatchContext {
  /** The distributor closed: no pass is queued any more. */
  isClosed(): boolean
  /** No connected node that runs `job` takes a frame that large: it fails, naming `largest`. */
  failOversized(job: TrackedJob, largest: NodeSession): void
  /** Dispatch frames went to `session` at `now`: their acceptance deadline runs. */
  sent(session: NodeSession, now: number): void
}

/**
 * The dispatch pass: moves waiting jobs to nodes with room, route by route, and sends each
 * node its share as numbered dispatch frames. Where each job goes is the pool's decision
 * (routing.ts); this carries it out.
 *
 * A pass runs only when something changed that could let a job move (an enqueue, a node
 * with room), queued after the microtasks so that a burst of enqueues makes one pass; never
 * on a timer, so an idle distributor costs nothing.
 */
export class Dispatcher {
  /** Sessions given jobs by the pass under way. */
  private readonly given: NodeSession[] = []
  private readonly unroutableNames = new Set<string>()
  private queued = false

  constructor(
    private readonly ctx: DispatchContext,
    private readonly queue: PendingQueue,
    private readonly pool: NodePool,
    private readonly events: DistributorEvents,
    private readonly log: Logger,
    /** alwaysUseSpecifiedNode: a job with `node` waits for that node. */
    private readonly strict: boolean,
    /** Job names an operator paused: their jobs stay in the queue. */
    private readonly paused: ReadonlySet<string>,
    /** Job names a job pushed back (Limits.pushBack): their jobs stay in the queue until the pause ends. */
    private readonly pushedBack: ReadonlyMap<string, unknown>,
  ) {}

  /** Queues a pass, unless one is queued already, nothing waits, or the distributor closed. */
  schedule(): void {
    if (this.queued || this.queue.size === 0 || this.ctx.isClosed()) return
    this.queued = true
    afterMicrotasks(this.passLater)
  }

  /** `job`'s name is known to no connected node: it waits, said once per name. */
  unroutable(job: TrackedJob): void {
    this.events.emit('job:unroutable', { id: job.id, name: job.name })
    if (!this.unroutableNames.has(job.name)) {
      // One line per name until a node that knows it connects: a burst must not flood the log.
      this.unroutableNames.add(job.name)
      this.log.warn({ job: job.name }, `no connected node knows job '${job.name}'; jobs wait until one connects`)
    }
  }

  /** A node that runs `names` connected: their jobs are routable again. */
  known(names: Iterable<string>): void {
    for (const name of names) this.unroutableNames.delete(name)
  }

  // One function for the distributor's lifetime: a pass is queued per enqueue burst.
  private readonly passLater = (): void => this.pass()

  /** One pass over the routes: moves every job that has an eligible node with room. */
  private pass(): void {
    this.queued = false
    // Each session's jobs of this pass gather in its `outgoing` (which becomes the frame's
    // record of its jobs); `given` lists the sessions that got some: no Map per pass.
    const given = this.given
    const now = Date.now()
    const paused = this.paused
    const pushedBack = this.pushedBack
    for (const route of this.queue.routes.values()) {
      if (paused.size > 0 && paused.has(route.name)) continue
      if (pushedBack.size > 0 && pushedBack.has(route.name)) {
        this.pausedRoute(route)
        continue
      }
      const limited = route instanceof LimitedRoute
      if (route.asideRoute !== undefined && route.asideRoute.length > 0)
        this.passAside(route.asideRoute, now, limited ? route.limit : undefined)
      if (limited) this.passLimited(route, now)
      else this.passRoute(route, now)
      this.queue.dropEmpty(route)
    }
    for (const session of given) {
      const batch = session.outgoing
      session.outgoing = []
      this.sendBatch(session, batch, now)
    }
    given.length = 0
  }

  /** Moves the jobs of one route, in order, while nodes with room take them. */
  private passRoute(route: Route, now: number): void {
    for (;;) {
      const job = route.peek()
      if (job === undefined) return
      const decision = this.pool.decide(route, wireSize(job), this.strict)
      if (decision.kind === 'wait') return
      route.shift()
      if (decision.kind === 'give') this.give(job, route, decision.node, now)
      else if (decision.kind === 'aside') this.queue.setAside(job, route)
      // Still 'pending': finishing it takes it off the queue's count.
      else this.ctx.failOversized(job, decision.node)
    }
  }

  /**
   * Moves the jobs of a limited name's route (limited-route.ts): keys take turns, a key
   * whose slots are taken leaves the turns until one frees, and a name whose slots are all
   * taken (a limit in total) stops the route at once: a blocked key costs one look.
   */
  private passLimited(route: LimitedRoute, now: number): void {
    const limit = route.limit
    for (;;) {
      const line = route.turn()
      if (line === undefined) return
      const job = route.peekLine(line) as TrackedJob
      if (!limit.mayStart(line.key, now)) {
        this.heldBack(job, line.key)
        if (!limit.perKey) return
        route.park()
        continue
      }
      const decision = this.pool.decide(route, wireSize(job), this.strict)
      if (decision.kind === 'wait') return
      route.take()
      if (decision.kind === 'give') {
        this.give(job, route, decision.node, now)
        limit.take(job, now)
      } else if (decision.kind === 'aside') this.queue.setAside(job, route)
      else this.ctx.failOversized(job, decision.node)
    }
  }

  /** A route whose name is pushed back: its next job is held back, as by a limit. */
  private pausedRoute(route: AnyRoute): void {
    if (!this.events.wants('job:limited')) return
    const job = route.peek()
    if (job !== undefined) this.heldBack(job, keyOf(job))
  }

  /** `job` is next of its key, and its limit holds it back: said once per job, to whoever listens. */
  private heldBack(job: TrackedJob, key: string): void {
    if (job.limitNoticed || !this.events.wants('job:limited')) return
    job.limitNoticed = true
    this.events.emit('job:limited', { id: job.id, name: job.name, key })
  }

  /**
   * Jobs set aside for their size: each is looked at, in order, since each may wait for
   * other nodes (a job that only a node whose store is down takes must not hold back one a
   * smaller node with room takes); those that still wait keep their order. Of a limited
   * name (`limit`), one whose key has no free slot waits too.
   */
  private passAside(route: Route, now: number, limit: NameLimit | undefined): void {
    const jobs = route.takeAll()
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i] as TrackedJob
      // A closure run by a failure below may have cancelled it, or closed the distributor.
      if (job.state !== 'pending' || this.ctx.isClosed()) continue
      if (limit !== undefined && !limit.mayStart(keyOf(job), now)) {
        route.push(job)
        continue
      }
      const decision = this.pool.decide(route, wireSize(job), this.strict)
      if (decision.kind === 'give') {
        this.give(job, route, decision.node, now)
        limit?.take(job, now)
        continue
      }
      if (decision.kind === 'fail') {
        this.ctx.failOversized(job, decision.node)
        continue
      }
      route.push(job)
      // No node has room for any job: the rest wait, in order, without a look each.
      if (decision.kind === 'wait') {
        for (let k = i + 1; k < jobs.length; k++) route.push(jobs[k] as TrackedJob)
        return
      }
    }
  }

  /** A job of `route` leaves the queue for `session`'s next dispatch frame. */
  private give(job: TrackedJob, route: AnyRoute, session: NodeSession, now: number): void {
    this.queue.takenFrom(route)
    route.stats.dispatched++
    assign(job, session, now)
    if (session.outgoing.length === 0) this.given.push(session)
    session.outgoing.push(job)
  }

  /** Sends a batch as dispatch frames that each stay under the frame limit. */
  private sendBatch(session: NodeSession, batch: TrackedJob[], now: number): void {
    // wireSize is an estimate: keep batches to half the limit so that no sum of estimates
    // can produce a frame over it (a lone job always fits: its size was checked).
    const limit = (session.maxFrameSize - FRAME_ENVELOPE_BYTES) / 2
    let jobs: TrackedJob[] = []
    let frame: WireJob[] = []
    let bytes = 0
    for (const job of batch) {
      const size = wireSize(job)
      if (frame.length > 0 && bytes + size > limit) {
        session.dispatch(jobs, frame, now)
        jobs = []
        frame = []
        bytes = 0
      }
      jobs.push(job)
      frame.push(toWireJob(job))
      bytes += size
      if (this.events.wants('job:dispatch'))
        this.events.emit('job:dispatch', { id: job.id, name: job.name, node: session.name, at: now })
    }
    if (frame.length > 0) session.dispatch(jobs, frame, now)
    this.ctx.sent(session, now)
  }
}
