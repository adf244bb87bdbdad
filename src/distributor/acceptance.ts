import { AcceptTimeoutError, ProtocolError } from '../errors.js'
import type { Logger } from '../logger.js'
import { isScheduled } from '../scheduling/cron.js'
import type { Scheduler } from '../scheduling/scheduler.js'
import type { Timer } from '../scheduling/timer-heap.js'
import type { DistributorEvents } from './events.js'
import type { JobTable } from './job-table.js'
import type { NodeSession } from './node-session.js'
import type { PendingQueue } from './pending-queue.js'
import { assign, DELAYED_LOAD, holderOf, INSTANT_LOAD, setLoad, type TrackedJob } from './tracked-job.js'

/** What acceptance needs of the rest of the distributor. */
export interface AcceptanceContext {
  /** Something changed that may let jobs move: a dispatch pass is due. */
  scheduleDispatch(): void
  /** A `cancel()` waits on `job`: the answer of the node holding it settles it. */
  cancelWaits(job: TrackedJob): boolean
  /** Ends `job` as cancelled. */
  finishCancelled(job: TrackedJob): void
  /** Cancels a copy of a job on a node that should not run it (see Cancels.stopCopy). */
  stopCopy(session: NodeSession, id: string, job?: TrackedJob): void
  /** A durable node stored `job`: it survives this process there. */
  owned(job: TrackedJob): void
  /**
   * `job`, back in the queue, was stored by its node after all (answered late): it takes a
   * slot of its name's limit, if it has one, as its dispatch did. (An operator's retry
   * takes none: the operator asked for that run, and the node does not know the job's key.)
   */
  running(job: TrackedJob): void
}

/**
 * Whether nodes took the jobs they were sent (docs/architecture.md, "Dispatch is
 * acknowledged"): `accepted` and `rejected` for a dispatch frame, `waiting` for jobs in a
 * retry backoff, the acceptance deadline that takes unanswered jobs back, and what a lost
 * connection gives back.
 *
 * A job is `sent` from dispatch until its frame's answer, on its session's `held` list; then
 * `accepted` (off the list when the node is durable: it owns the job now) or back to
 * `pending`. Load units (node-session.ts) follow: a delayed job stops counting once accepted.
 */
export class Acceptance {
  private closed = false

  constructor(
    private readonly ctx: AcceptanceContext,
    private readonly jobs: JobTable,
    private readonly queue: PendingQueue,
    private readonly events: DistributorEvents,
    private readonly log: Logger,
    private readonly timeoutMs: number,
    /** The distributor's timers: one acceptance deadline per session with unanswered frames. */
    private readonly timers: Pick<Scheduler<Timer>, 'schedule' | 'cancel'>,
  ) {}

  /** Dispatch frames went to `session` at `now`: its deadline runs, unless older frames' runs already. */
  sent(session: NodeSession, now: number): void {
    if (session.acceptTimer.timerIndex === -1) this.timers.schedule(session.acceptTimer, now + this.timeoutMs)
  }

  onAccepted(session: NodeSession, seq: number): void {
    const frame = session.answered(seq)
    if (frame === undefined) {
      session.connection.close(new ProtocolError(`'accepted' for dispatch frame ${seq}, which awaits no answer`))
      return
    }
    if (session.unresponsive) {
      session.unresponsive = false
      this.log.info({ node: session.name }, 'node answers again; dispatching to it')
    }
    const now = Date.now()
    if (frame.late) this.onLateAccepted(session, frame.jobs, now)
    else {
      for (const job of frame.jobs) {
        // Rejected, or back in the queue after a cancel: not this answer's to take.
        if (job === undefined || job.state !== 'sent' || job.session !== session) continue
        this.acceptedBy(session, job, now)
      }
    }
    this.ctx.scheduleDispatch()
  }

  /**
   * `job`, which had failed, runs again on `session`'s node (an operator's retry): it is that
   * node's as if the node had just accepted it.
   */
  retriedOn(session: NodeSession, job: TrackedJob): void {
    const now = Date.now()
    assign(job, session, now)
    this.acceptedBy(session, job, now)
  }

  private acceptedBy(session: NodeSession, job: TrackedJob, now: number): void {
    job.state = 'accepted'
    job.owner = session.name
    // A durable node owns it now; a memory node's drop would still send it back.
    if (session.durable) {
      session.held.remove(job)
      this.ctx.owned(job)
    }
    // A job that will wait on the node's timer does not hold a slot of its window; one that
    // was delayed when sent but is due by now runs at once, and counts whole.
    if (isScheduled(job.opts) || job.dueAt > now) setLoad(job, 0)
    else if (job.load === DELAYED_LOAD) setLoad(job, INSTANT_LOAD)
    if (this.events.wants('job:accepted'))
      this.events.emit('job:accepted', { id: job.id, name: job.name, node: session.name })
  }

  /**
   * `session`'s node stored the jobs of a frame after all, past the acceptance deadline
   * that took them back. One still waiting here is its again; one that went elsewhere
   * meanwhile (or ended) runs there, and this node's copy is stopped, as any second copy.
   */
  private onLateAccepted(session: NodeSession, jobs: readonly (TrackedJob | undefined)[], now: number): void {
    for (const job of jobs) {
      if (job === undefined) continue
      if (job.state === 'pending') {
        this.queue.taken(job)
        assign(job, session, now)
        this.ctx.running(job)
        this.acceptedBy(session, job, now)
      } else if (job.state === 'sent' && job.session === session) {
        this.acceptedBy(session, job, now)
      } else if (job.state === 'done' || job.state === 'cancelled') {
        this.ctx.stopCopy(session, job.id)
      } else if (holderOf(job) !== session.name) {
        this.ctx.stopCopy(session, job.id, job)
      }
    }
  }

  /**
   * The acceptance deadline of `session`'s oldest frame passed: the jobs of every frame
   * that old go back to the queue, for other nodes, and the node gets no more until it
   * answers. A node that answers late is handled by onLateAccepted.
   */
  readonly onDeadline = (session: NodeSession): void => {
    if (session.state !== 'ready' || this.closed) return
    const now = Date.now()
    const timeoutMs = this.timeoutMs
    const back: TrackedJob[] = []
    for (const job of session.expire(now - timeoutMs)) {
      // Rejected or cancelled meanwhile; or a cancel waits on it, which the node's answer settles.
      if (job === undefined || job.state !== 'sent' || job.session !== session || this.ctx.cancelWaits(job)) continue
      session.held.remove(job)
      setLoad(job, 0)
      job.session = undefined
      job.state = 'pending'
      back.push(job)
      this.events.emit('job:requeue', { id: job.id, name: job.name, node: session.name })
    }
    if (back.length > 0) {
      session.unresponsive = true
      this.log.warn(
        { node: session.name, jobs: back.length },
        new AcceptTimeoutError(session.name, back.length, timeoutMs).message,
      )
      this.events.emit('node:unresponsive', { node: session.name, jobs: back.length })
      this.queue.requeue(back)
      this.ctx.scheduleDispatch()
    }
    const oldest = session.oldestUnansweredAt()
    if (oldest !== undefined) this.timers.schedule(session.acceptTimer, oldest + timeoutMs)
  }

  /** Jobs of `session`'s node wait out a retry backoff there: they leave its window. */
  onWaiting(session: NodeSession, ids: string[]): void {
    for (const id of ids) {
      const job = this.jobs.get(id)
      if (job !== undefined && job.state === 'accepted' && job.session === session) setLoad(job, 0)
    }
    this.ctx.scheduleDispatch()
  }

  onRejected(session: NodeSession, seq: number, ids: string[]): void {
    const back: TrackedJob[] = []
    for (const id of ids) {
      const job = this.sentTo(session, id)
      if (job === undefined) continue
      session.held.remove(job)
      setLoad(job, 0)
      job.session = undefined
      // Not stored there, and a cancel is waiting: it ends here instead of going elsewhere
      // (still 'sent': it is not in the queue, nor counted there).
      if (this.ctx.cancelWaits(job)) {
        this.ctx.finishCancelled(job)
        continue
      }
      job.state = 'pending'
      back.push(job)
    }
    session.forget(seq, ids)
    // A node that refuses work is not a candidate until it says it accepts again.
    session.accepting = false
    this.queue.requeue(back)
    this.ctx.scheduleDispatch()
  }

  /** The job `id` if it is in a dispatch to `session` that was not answered yet. */
  private sentTo(session: NodeSession, id: string): TrackedJob | undefined {
    const job = this.jobs.get(id)
    return job !== undefined && job.state === 'sent' && job.session === session ? job : undefined
  }

  /**
   * A durable node that reconnects still runs the instant jobs it accepted before: count
   * them against its new session's window, and let their feedback release it there. A scan
   * of every held job, but only when a durable node connects.
   */
  adopt(session: NodeSession): void {
    for (const job of this.jobs.values()) {
      if (job.state !== 'accepted' || job.owner !== session.name || job.load === 0 || job.session === session) continue
      job.session = session
      session.load += job.load
      session.inFlight++
    }
  }

  /** `session` is gone: its deadline with it. */
  disarm(session: NodeSession): void {
    this.timers.cancel(session.acceptTimer)
  }

  /** Puts back in the queue what `session`'s node, whose connection was lost, did not keep. */
  takeBack(session: NodeSession): void {
    const back: TrackedJob[] = []
    for (const job of session.held.drain()) {
      if (this.ctx.cancelWaits(job)) {
        if (session.durable) {
          // It may be stored there (its `accepted` lost with the link), and a durable node
          // runs what it stored: the cancel goes again when that node is back, and its
          // answer (cancelled, finished, or unknown there) settles the job.
          job.state = 'accepted'
          job.owner = session.name
          job.session = undefined
          job.load = 0
          continue
        }
        // A memory node drops every job of a lost link (Cancels.dropJobsOf, at the node): it is cancelled.
        this.ctx.finishCancelled(job)
        continue
      }
      back.push(job)
      job.state = 'pending'
      job.session = undefined
      job.owner = undefined
      job.load = 0
      this.events.emit('job:requeue', { id: job.id, name: job.name, node: session.name })
    }
    if (back.length > 0) {
      this.log.warn({ node: session.name, jobs: back.length }, 'node dropped; its unfinished jobs go back to the queue')
      this.queue.requeue(back)
    }
  }

  close(): void {
    this.closed = true
  }
}
