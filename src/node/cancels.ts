import type { Config } from '../config.js'
import { MessageType } from '../protocol/messages.js'
import { JobStatus, type FeedbackRecord } from '../storage/store.js'
import type { DistributorLink } from './distributor-link.js'
import type { FeedbackOutbox } from './feedback-outbox.js'
import type { LiveJob, LiveJobs } from './live-jobs.js'
import type { NodeEvents } from './node-events.js'
import type { StoreOutage } from './store-outage.js'

/** What cancels need of their node. */
export interface CancelContext {
  /** The ready link that receives what is filed under distributor identity `identity`. */
  linkFor(identity: string): DistributorLink | undefined
  /** Puts a job on its timer, or in the ready queue when it is due. */
  schedule(job: LiveJob): void
  /** Takes a job off its timer. */
  unschedule(job: LiveJob): void
}

/**
 * The ways a job leaves a node other than by its own end: a cancel from its distributor,
 * and a memory node's link that drops (its distributor takes the jobs back).
 *
 * A job being saved, scheduled or queued is cancelled at once; a running one is marked
 * (`cancelRequested`) and the end of its attempt decides (see after-attempt.ts). A job
 * that ended meanwhile (its phase is 'done') is never put back on a timer.
 */
export class Cancels {
  constructor(
    private readonly ctx: CancelContext,
    private readonly live: LiveJobs<LiveJob>,
    private readonly outage: StoreOutage,
    private readonly outbox: FeedbackOutbox,
    private readonly events: NodeEvents,
    private readonly config: Pick<Config, 'removeCancelledJobs'>,
  ) {}

  onCancel(link: DistributorLink, id: string): void {
    const job = this.live.get(id)
    if (job === undefined) {
      // Finished, and its result not yet acknowledged: that result settles it. Otherwise
      // nothing here will ever run it or report on it.
      link.send({
        type: MessageType.CANCEL_RESULT,
        id,
        outcome: this.outbox.holdsFinal(link.identity, id) ? 'finished' : 'unknown',
      })
      return
    }
    if (link.identity !== job.distributor) job.cancelledBy = link
    if (job.phase === 'running') {
      // Let the attempt end; a success then is reported as finished, anything else cancels.
      job.cancelRequested = true
      return
    }
    this.ctx.unschedule(job)
    const wasSaving = job.phase === 'saving'
    job.phase = 'done'
    this.live.delete(job)
    const finish = wasSaving ? undefined : this.endCancelled(job, false)
    if (finish === undefined) this.answerCancel(job, 'cancelled')
    else void finish.then(() => this.answerCancel(job, 'cancelled'))
  }

  /**
   * Ends a job as cancelled: stored (or removed: `remove`, per removeCancelledJobs), then
   * reported. `lastFeedback`: the result of the run that was running (a periodic run that
   * succeeded), written in the same step and sent first. `answer`: answer the cancel once
   * stored.
   */
  endCancelled(
    job: LiveJob,
    answer = true,
    lastFeedback?: FeedbackRecord,
    remove = this.config.removeCancelledJobs,
  ): Promise<void> | undefined {
    job.phase = 'done'
    job.status = JobStatus.CANCELLED
    this.live.delete(job)
    return this.outage.persist(
      job.store,
      () => {
        if (lastFeedback !== undefined)
          return job.store.finishRun(job.id, { status: JobStatus.CANCELLED }, lastFeedback, remove)
        return remove ? job.store.removeJob(job.id) : job.store.updateJob(job.id, { status: JobStatus.CANCELLED })
      },
      () => {
        if (lastFeedback !== undefined) this.outbox.add(lastFeedback, job.store)
        this.events.emit('job:cancelled', { id: job.id, name: job.name })
        if (answer) this.answerCancel(job, 'cancelled')
      },
      job.distributor,
    )
  }

  answerCancel(job: LiveJob, outcome: 'cancelled' | 'finished'): void {
    // The job's last result (a periodic run that ended as it was cancelled) goes first: the
    // distributor forgets the job on this answer and would take the result for an orphan.
    this.outbox.flushNow()
    const message = { type: MessageType.CANCEL_RESULT, id: job.id, outcome } as const
    const own = this.ctx.linkFor(job.distributor)
    own?.send(message)
    // Another member of the group asked (cancel from any member): it waits for this answer.
    if (job.cancelledBy !== undefined && job.cancelledBy !== own) job.cancelledBy.send(message)
  }

  /**
   * A memory node's link dropped: its distributor takes back every unfinished job it sent
   * here and dispatches it again (it cannot tell a dropped link from a dead node). So they
   * end here: those not running now never run, and a running one's attempt is its last
   * here (no retry, no next run), its result still sent if the link comes back. Kept, they
   * would run twice, and a cancel would stop only one of the two.
   */
  dropJobsOf(link: DistributorLink): void {
    for (const job of this.live.values()) {
      if (job.distributor !== link.identity) continue
      if (job.phase === 'running') {
        // Still held while it runs: one id is never run twice at once here (a copy sent
        // back meanwhile is "already ours", and its own again).
        job.released = true
        continue
      }
      this.ctx.unschedule(job)
      // The ready queue skips it.
      job.phase = 'done'
      this.live.delete(job)
    }
  }

  /**
   * After an attempt that leaves the job here (a retry, a periodic job's next run): puts it
   * on the timer, unless it ended meanwhile or its distributor took it back. True when put.
   */
  reschedule(job: LiveJob): boolean {
    if (job.phase === 'done') return false
    if (job.released === true) {
      job.phase = 'done'
      this.live.delete(job)
      return false
    }
    this.ctx.schedule(job)
    return true
  }
}
