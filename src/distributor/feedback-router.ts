import { FRAME_ENVELOPE_BYTES } from '../config.js'
import {
  FrameTooLargeError,
  JobFailedError,
  coerceError,
  serializeError,
  type JobsError,
  type SerializedError,
} from '../errors.js'
import type { Logger } from '../logger.js'
import { decodeArgs, type JobArgsObject } from '../protocol/args.js'
import type { WireFeedback } from '../protocol/messages.js'
import { isScheduled, nextRun, runDueAtOf } from '../scheduling/cron.js'
import type { DistributorEvents } from './events.js'
import type { FeedbackAcks, PendingClosure } from './feedback-acks.js'
import type { FeedbackHandlers, FeedbackInfo } from './feedback-handlers.js'
import type { JobStats, NameStats } from './job-stats.js'
import type { JobTable } from './job-table.js'
import type { NodeSession } from './node-session.js'
import type { PendingQueue } from './pending-queue.js'
import type { Failure } from './recent-failures.js'
import { RecentIds } from './recent-ids.js'
import { holderOf, setLoad, wireSize, type FeedbackCallback, type TrackedJob } from './tracked-job.js'

/** Ids of jobs finished over links that dropped since, to tell a re-sent feedback from an orphan. */
const RECENT_LIMIT = 100_000

/** What the feedback router needs of the rest of the distributor. */
export interface FeedbackContext {
  /** The distributor closed (a closure may close it mid-frame). */
  isClosed(): boolean
  /** Something changed that may let jobs move: a dispatch pass is due. */
  scheduleDispatch(): void
  /**
   * `job` left every table: the `cancel()` calls waiting on it learn whether it ended
   * `cancelled`. What it returns (a unique key's release being written), the ack of the
   * feedback that ended the job waits for.
   */
  ended(job: TrackedJob, cancelled: boolean): Promise<void> | undefined
  /** A job this distributor does not track ended (its final result ran the named handlers, or was an orphan): as `ended`. */
  endedElsewhere(id: string): Promise<void> | undefined
  /** A scheduled job (`period` or `cron`) moved on to its next run: its spool record follows. */
  advanced(job: TrackedJob): void
  /** A node reported a run that failed for good (the admin API keeps the last ones). */
  failed(failure: Failure): void
}

/** How the router deals with a node that reports on a job it does not hold (Cancels). */
export interface SecondCopies {
  reportedByOther(
    session: NodeSession,
    job: TrackedJob,
    holder: string | undefined,
    final: boolean,
    stale: boolean,
  ): void
  stopCopy(session: NodeSession, id: string, job?: TrackedJob): void
}

/**
 * Results on their way to the caller: node feedback to the job's closures and `done`
 * (docs/architecture.md, "Feedback is never silently lost"), orphans and duplicates, and the
 * ends a job meets here (cancelled, too large for every node, the distributor closing).
 * A closure that throws is caught and reported; it never takes the distributor down.
 */
export class FeedbackRouter {
  /** Jobs finished over links that dropped since, or cancelled: a result of them again is no orphan. */
  private readonly recent = new RecentIds(RECENT_LIMIT)

  constructor(
    private readonly ctx: FeedbackContext,
    private readonly copies: SecondCopies,
    private readonly jobs: JobTable,
    private readonly queue: PendingQueue,
    private readonly events: DistributorEvents,
    private readonly log: Logger,
    /** Named feedback handlers by job name (Distributor.onFeedback). */
    private readonly handlers: ReadonlyMap<string, FeedbackHandlers>,
    private readonly acks: FeedbackAcks,
    /** Results and orphans per job name (metrics). */
    private readonly stats: JobStats,
  ) {}

  onFeedback(session: NodeSession, seq: number, items: WireFeedback[]): void {
    // Closures that returned a promise: the frame's ack waits for them. Undefined (nothing
    // allocated) while every closure is synchronous, the common case.
    let pending: PendingClosure[] | undefined
    for (const item of items) {
      // A closure closed the distributor: the rest stays with the node (unacknowledged), for
      // whichever distributor listens here next.
      if (this.ctx.isClosed()) return
      const job = this.jobs.get(item.id)
      if (job === undefined) {
        if (!this.recent.has(item.id) && !session.finished.has(item.id)) {
          const args = argsOf(item)
          if (item.kind === 'error') this.failed(session, item, args)
          const running = this.runHandler(session, item, args)
          if (running !== undefined) (pending ??= []).push(running)
          const releasing = item.final ? this.ctx.endedElsewhere(item.id) : undefined
          if (releasing !== undefined) (pending ??= []).push(released(item.id, item.name ?? '', releasing))
        } else if (!item.final) {
          // It ended here, yet this node still runs a schedule of it: a second copy (see below).
          this.copies.stopCopy(session, item.id)
        }
        continue
      }
      const holder = holderOf(job)
      // At-least-once: a feedback re-sent after a reconnect is delivered once. Except that
      // the holder's final result of a run a second copy reported first still ends the job
      // (dropped, no node would hold it), though it is not delivered again.
      const stale = item.run < job.run
      if (holder !== session.name) this.copies.reportedByOther(session, job, holder, item.final, stale)
      if (stale && !(item.final && holder === session.name)) continue
      const args = argsOf(item)
      if (item.final) {
        // Out of the table before its closure runs: a closure that closes the distributor
        // must not find the job unfinished and fail it a second time.
        const releasing = this.finish(job)
        if (releasing !== undefined) (pending ??= []).push(released(job.id, job.name, releasing))
        session.finished.push(job.id)
      }
      if (!stale) {
        countResult(this.stats.of(job.name), item)
        if (item.kind === 'error') this.failed(session, item, args, job.name)
        const event = item.kind === 'success' ? 'job:success' : 'job:failed'
        const running = job.viaHandler
          ? this.runHandler(session, item, args)
          : this.runClosure(job, item.kind === 'success' ? job.onSuccess : job.onError, args)
        if (running !== undefined) (pending ??= []).push(running)
        if (this.events.wants(event))
          this.events.emit(event, { id: job.id, name: job.name, run: item.run, node: session.name, args })
      }
      if (item.final) {
        if (item.kind === 'success') job.resolve(args)
        else job.reject(new JobFailedError(job.name, job.id, args))
      } else if (isScheduled(job.opts)) {
        // One step on from the run reported, on the schedule (no drift), for a re-dispatch
        // should its node be lost. Runs the node skipped since, its next feedback shows.
        const reportedDueAt = runDueAtOf(job.opts, item.run, job.run, job.dueAt)
        const next = nextRun(job.opts, item.run, reportedDueAt, reportedDueAt)
        job.dueAt = next.runDueAt
        job.run = next.run
        this.ctx.advanced(job)
      }
    }
    this.acks.handled(session, seq, pending)
    this.ctx.scheduleDispatch()
  }

  private failed(session: NodeSession, item: WireFeedback, args: JobArgsObject, name = item.name): void {
    if (item.cancelled) return
    const error = args['error'] as SerializedError | undefined
    this.ctx.failed({ id: item.id, name: name ?? '', node: session.name, run: item.run, at: Date.now(), error, args })
  }

  /**
   * A result for a job this distributor holds no closure for (it restarted since the
   * enqueue, or took the job over from a spool): the handler registered for its name runs
   * it; without one, `feedback:orphan`. Returns what the frame's ack waits for when the
   * handler returned a promise.
   */
  private runHandler(session: NodeSession, item: WireFeedback, args: JobArgsObject): PendingClosure | undefined {
    const name = item.name
    const handlers = name === undefined ? undefined : this.handlers.get(name)
    const handler = item.kind === 'success' ? handlers?.success : handlers?.error
    if (handler === undefined || name === undefined) {
      this.stats.of(name ?? '').orphans++
      this.events.emit('feedback:orphan', {
        id: item.id,
        ...(name === undefined ? {} : { name }),
        run: item.run,
        kind: item.kind,
        node: session.name,
        args,
      })
      return undefined
    }
    countResult(this.stats.of(name), item)
    const info: FeedbackInfo = { id: item.id, name, node: session.name, run: item.run, final: item.final }
    try {
      return this.watch(item.id, name, handler(args, info))
    } catch (err) {
      this.closureFailed(item.id, name, err)
      return undefined
    }
  }

  /**
   * `session`'s link dropped. Our last acks on it may be lost with it, and the node will send
   * those results again: remember them so that they are dropped as duplicates, not reported
   * as orphans.
   */
  linkLost(session: NodeSession): void {
    for (const id of session.finished.drain()) this.recent.add(id)
  }

  /**
   * The job leaves every table, no more feedback expected; `cancelled`: what waiting
   * `cancel()` calls learn. Returns what the ack of a feedback that ended it waits for (see
   * FeedbackContext.ended).
   */
  finish(job: TrackedJob, cancelled = false): Promise<void> | undefined {
    // A durable node may finish a job the distributor had put back in the queue (its
    // acceptance was lost with the connection): the queue slot is dropped lazily.
    if (job.state === 'pending') this.queue.taken(job)
    job.state = 'done'
    setLoad(job, 0)
    job.list?.remove(job)
    this.jobs.delete(job)
    return this.ctx.ended(job, cancelled)
  }

  finishCancelled(job: TrackedJob): void {
    this.finish(job, true)
    this.stats.of(job.name).cancelled++
    // A result a node sent before it heard of the cancel (a periodic run's, re-sent after a
    // reconnect) may still come: it is dropped, not reported as an orphan.
    this.recent.add(job.id)
    job.state = 'cancelled'
    this.events.emit('job:cancelled', { id: job.id, name: job.name })
    job.resolve(decodeArgs(job.args))
  }

  /**
   * A node with a smaller frame limit than ours would drop the link on this job and get it
   * again after redialling, forever. A job too large for every connected node that runs it
   * fails instead, naming the one with the largest limit (`session`).
   */
  failOversized(job: TrackedJob, session: NodeSession): void {
    const err = new FrameTooLargeError(
      wireSize(job),
      session.maxFrameSize - FRAME_ENVELOPE_BYTES,
      `job '${job.name}' (${job.id}) is too large for every connected node that runs it (the largest limit is node '${session.name}')`,
    )
    this.log.error({ id: job.id, job: job.name, node: session.name }, err.message)
    this.finish(job)
    this.stats.of(job.name).failed++
    const args = { ...decodeArgs(job.args), error: serializeError(err) }
    this.runClosure(job, job.onError, args)
    this.events.emit('job:failed', { id: job.id, name: job.name, run: job.run, node: session.name, args })
    job.reject(new JobFailedError(job.name, job.id, args))
  }

  /**
   * A distributor with a spool closes: every unfinished job lives on (in the spool, or with
   * the durable node that holds it), so no closure runs; its `done` rejects with `err`,
   * which says so, and the `cancel()` calls waiting on it resolve false.
   */
  handOverAll(err: JobsError): void {
    for (const job of this.jobs.values()) {
      job.state = 'cancelled'
      job.reject(err)
      this.ctx.ended(job, false)
    }
  }

  /**
   * The distributor closes: every unfinished job's error closure gets `err`, its `done`
   * rejects with it, and the `cancel()` calls waiting on it resolve false. The caller
   * empties the table after.
   */
  failAll(err: JobsError): void {
    for (const job of this.jobs.values()) {
      const args = { ...decodeArgs(job.args), error: serializeError(err) }
      this.runClosure(job, job.onError, args)
      job.state = 'cancelled'
      job.reject(err)
      this.ctx.ended(job, false)
    }
  }

  /** Runs a job's closure; returns what the frame's ack waits for when it returned a promise. */
  runClosure(job: TrackedJob, closure: FeedbackCallback | undefined, args: JobArgsObject): PendingClosure | undefined {
    if (closure === undefined) return undefined
    try {
      return this.watch(job.id, job.name, closure(args))
    } catch (err) {
      this.closureFailed(job.id, job.name, err)
      return undefined
    }
  }

  /** What a closure returned: a promise is watched until it settles (a rejection is reported). */
  private watch(id: string, name: string, result: unknown): PendingClosure | undefined {
    if (!(result instanceof Promise)) return undefined
    const promise = result.then(
      () => undefined,
      (err: unknown) => this.closureFailed(id, name, err),
    )
    return { id, name, promise, settled: false }
  }

  /** A closure or handler threw (or its promise rejected): logged and reported as `feedback:error`. */
  closureFailed(id: string, name: string, thrown: unknown): void {
    const error = coerceError(thrown)
    this.log.error({ err: error, job: name, id }, 'feedback closure threw')
    this.events.emit('feedback:error', { id, name, error })
  }
}

/** The write of a unique key's release, as something the ack of a feedback frame waits for. */
function released(id: string, name: string, writing: Promise<void>): PendingClosure {
  return { id, name: `${name} (its unique key's release)`, promise: writing, settled: false }
}

/** A result delivered here, counted by its outcome: a job that cancelled itself counts as cancelled. */
function countResult(stats: NameStats, item: WireFeedback): void {
  if (item.cancelled) stats.cancelled++
  else if (item.kind === 'success') stats.succeeded++
  else stats.failed++
}

/** A feedback's args as an object: decoded with its frame when it came over the wire. */
function argsOf(item: WireFeedback): JobArgsObject {
  return item.args instanceof Uint8Array ? decodeArgs(item.args) : item.args
}
