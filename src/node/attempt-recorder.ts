import { serializeError, type SerializedError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { JobArgsObject } from '../protocol/args.js'
import { FeedbackKind, JobStatus, type FeedbackRecord, type JobPatch } from '../storage/store.js'
import { decideAfterAttempt, type AfterAttemptSettings, type AttemptDecision } from './after-attempt.js'
import type { Cancels } from './cancels.js'
import type { ChainOutcome } from './chain-runner.js'
import type { FeedbackBuilder } from './feedback-builder.js'
import type { FeedbackOutbox } from './feedback-outbox.js'
import type { LiveJob, LiveJobs } from './live-jobs.js'
import type { NodeJobStats } from './node-job-stats.js'
import type { NodeEvents } from './node-events.js'
import type { StoreOutage } from './store-outage.js'

/**
 * What the recorder needs of its node. The parts it calls on every job are handed over as
 * they are (an arrow in between costs a call per job on the hot path).
 */
export interface RecorderContext {
  readonly log: Logger
  /** Read live: `JR.configure` in a job file applies. */
  readonly config: AfterAttemptSettings
  /** Makes the feedback record of a run. */
  readonly builder: Pick<FeedbackBuilder, 'feedbackOf'>
  /** Files a stored result for its distributor. */
  readonly outbox: Pick<FeedbackOutbox, 'add'>
  /** Tells the job's distributor that it waits out a retry backoff (it leaves the node's window). */
  waiting(job: LiveJob): void
  /**
   * Tells the job's distributor that it pushed back: it waits here `seconds`, out of the
   * node's window, and the distributor holds back its name (or key) as long.
   */
  rateLimited(job: LiveJob, seconds: number): void
  /** Retries are counted here, per job name. */
  readonly stats: Pick<NodeJobStats, 'of'>
  /** Writes the job's last progress value into its record (ProgressReporter.keep). */
  keepProgress(job: LiveJob): void
}

/**
 * Carries out what follows an attempt: asks `decideAfterAttempt` (a pure function), then
 * writes the result, and only once it is stored sends the feedback, puts the job back on its
 * timer or answers a cancel (see docs/architecture.md#what-follows-an-attempt).
 */
export class AttemptRecorder {
  constructor(
    private readonly ctx: RecorderContext,
    private readonly live: LiveJobs<LiveJob>,
    private readonly cancels: Cancels,
    private readonly outage: StoreOutage,
    private readonly events: NodeEvents,
  ) {}

  /**
   * Records the end of an attempt, which ended at `now`; returns the store write it waits
   * for, if any. `progressUnkept`: the job's last progress value is not in its record yet; it
   * is written after the attempt's own write when the record stays, and not at all when the
   * attempt's end removes it.
   */
  afterAttempt(
    job: LiveJob,
    outcome: ChainOutcome,
    args: JobArgsObject,
    maxAttempt: number,
    now: number,
    progressUnkept: boolean,
  ): Promise<void> | undefined {
    const decision = decideAfterAttempt(job, outcome, maxAttempt, this.ctx.config, now)
    const recorded = this.carryOut(job, decision, outcome, args, now)
    if (progressUnkept && keepsRecord(decision)) this.ctx.keepProgress(job)
    return recorded
  }

  private carryOut(
    job: LiveJob,
    decision: AttemptDecision,
    outcome: ChainOutcome,
    args: JobArgsObject,
    now: number,
  ): Promise<void> | undefined {
    let error: SerializedError | undefined
    if (outcome.kind === 'error' && !outcome.cancelled) {
      error = serializeError(outcome.error)
      job.lastError = error
      if (decision.kind !== 'retry') {
        this.ctx.log.warn({ id: job.id, job: job.name, attempt: job.attempt, err: error.message }, 'job failed')
        this.events.emit('job:failed', { id: job.id, name: job.name, run: job.run, error })
      }
    }
    switch (decision.kind) {
      case 'retry':
        return this.retry(job, decision.delayMs, error as SerializedError, now)
      case 'rate-limited':
        return this.pushedBack(job, decision.delayMs, now)
      case 'cancelled': {
        // The application cancelled it while it ran. A periodic run that succeeded still
        // reports that run; otherwise there is no feedback, only the cancel.
        const last = decision.reportRun
          ? this.ctx.builder.feedbackOf(job, FeedbackKind.SUCCESS, false, false, args)
          : undefined
        return this.cancels.endCancelled(job, true, last, decision.remove)
      }
      case 'next-run':
        return this.nextRun(job, decision, outcome, args, now)
      case 'final':
        return this.end(job, decision, outcome, args, now)
    }
  }

  private retry(job: LiveJob, delayMs: number, error: SerializedError, now: number): Promise<void> | undefined {
    job.status = JobStatus.ERROR
    job.dueAt = now + delayMs
    this.ctx.stats.of(job.name).retries++
    this.events.emit('job:retry', { id: job.id, name: job.name, attempt: job.attempt, delayMs, error })
    this.ctx.log.debug(
      { id: job.id, job: job.name, attempt: job.attempt, delayMs, err: error.message },
      'attempt failed; retrying',
    )
    const patch: JobPatch = { status: job.status, dueAt: job.dueAt, lastError: error }
    return this.outage.persist(
      job.store,
      () => job.store.updateJob(job.id, patch),
      () => {
        if (this.cancels.reschedule(job)) this.ctx.waiting(job)
      },
    )
  }

  /** The attempt is given back: the job runs again after the pause, with the same number. */
  private pushedBack(job: LiveJob, delayMs: number, now: number): Promise<void> | undefined {
    job.status = JobStatus.ERROR
    job.attempt--
    job.dueAt = now + delayMs
    this.ctx.log.debug({ id: job.id, job: job.name, attempt: job.attempt, delayMs }, 'rate limited; paused')
    const patch: JobPatch = { status: job.status, dueAt: job.dueAt, attempt: job.attempt }
    return this.outage.persist(
      job.store,
      () => job.store.updateJob(job.id, patch),
      () => {
        if (this.cancels.reschedule(job)) this.ctx.rateLimited(job, delayMs / 1000)
      },
    )
  }

  private nextRun(
    job: LiveJob,
    next: Extract<AttemptDecision, { kind: 'next-run' }>,
    outcome: ChainOutcome,
    args: JobArgsObject,
    now: number,
  ): Promise<void> | undefined {
    // This run's result, made before the job moves on to the next run.
    const feedback = this.resultOf(job, outcome, false, args)
    const patch: JobPatch = {
      status: JobStatus.NEW,
      attempt: 0,
      run: next.run,
      runDueAt: next.runDueAt,
      dueAt: next.dueAt,
    }
    if (outcome.kind === 'error') {
      patch.failedAt = now
      if (job.lastError !== undefined) patch.lastError = job.lastError
    }
    Object.assign(job, patch)
    return this.outage.persist(
      job.store,
      () => job.store.finishRun(job.id, patch, feedback, false),
      () => {
        this.events.emit('job:complete', { id: job.id, name: job.name, run: feedback.run, cancelled: false })
        this.ctx.outbox.add(feedback, job.store)
        this.cancels.reschedule(job)
      },
    )
  }

  private end(
    job: LiveJob,
    final: Extract<AttemptDecision, { kind: 'final' }>,
    outcome: ChainOutcome,
    args: JobArgsObject,
    now: number,
  ): Promise<void> | undefined {
    const feedback = this.resultOf(job, outcome, true, args)
    const status = final.status
    job.phase = 'done'
    job.status = status
    this.live.delete(job)
    // The usual end of a job on a memory node: nothing to write (see StoreOutage.persist),
    // so no closures either.
    if (!job.store.durable) {
      this.finished(job, feedback, outcome.cancelled)
      return undefined
    }
    const patch: JobPatch = { status }
    if (status === JobStatus.FAILED) {
      patch.failedAt = now
      // The error that ended it, kept for an operator (jr show, the admin API), not the one before.
      if (job.lastError !== undefined) patch.lastError = job.lastError
    }
    return this.outage.persist(
      job.store,
      () => job.store.finishRun(job.id, patch, feedback, final.remove),
      () => this.finished(job, feedback, outcome.cancelled),
      job.distributor,
    )
  }

  /** The feedback record of the run that just ended, success or error as its chain ended. */
  private resultOf(job: LiveJob, outcome: ChainOutcome, final: boolean, args: JobArgsObject): FeedbackRecord {
    const kind = outcome.kind === 'success' ? FeedbackKind.SUCCESS : FeedbackKind.ERROR
    return this.ctx.builder.feedbackOf(job, kind, final, outcome.cancelled, args)
  }

  /** A job's end is stored: its feedback goes out. */
  private finished(job: LiveJob, feedback: FeedbackRecord, cancelled: boolean): void {
    if (job.status !== JobStatus.FAILED && this.events.wants('job:complete')) {
      this.events.emit('job:complete', { id: job.id, name: job.name, run: job.run, cancelled })
    }
    this.ctx.outbox.add(feedback, job.store)
    if (job.cancelRequested) this.cancels.answerCancel(job, 'finished')
  }
}

/** Whether the record stays after what `decision` writes (a job that ends may be removed). */
function keepsRecord(decision: AttemptDecision): boolean {
  return decision.kind === 'final' || decision.kind === 'cancelled' ? !decision.remove : true
}
