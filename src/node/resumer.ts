import type { Logger } from '../logger.js'
import type { FeedbackRecord, Store } from '../storage/store.js'
import type { FeedbackOutbox } from './feedback-outbox.js'
import { type LiveJob, type LiveJobs, liveJobOf } from './live-jobs.js'

/** What resuming needs of its node. */
export interface ResumeContext {
  readonly log: Logger
  /** Puts a resumed job on its timer, or in the ready queue when it is due. */
  schedule(job: LiveJob): void
  /** A stored result made safe to send (see FeedbackBuilder.readable). */
  readable(feedback: FeedbackRecord): FeedbackRecord
}

/**
 * Takes a store's unfinished jobs and unacknowledged results back in: this node's own store
 * at start (after a crash, see docs/architecture.md#at-least-once), or a dead peer's after
 * the LeaseKeeper adopted it (takeover). Jobs keep their absolute due times.
 */
export class Resumer {
  /** Stores of dead peers whose jobs this node took over. */
  private readonly adopted = new Map<string, Store>()

  constructor(
    private readonly ctx: ResumeContext,
    private readonly live: LiveJobs<LiveJob>,
    private readonly outbox: FeedbackOutbox,
  ) {}

  /**
   * Re-arms every unfinished job of `store` at its absolute due time (unless `jobs` is
   * false: retryJobsAtStart) and reloads its outbox, whatever `jobs` says. Resolves with the
   * number of jobs read.
   */
  async resume(store: Store, jobs: boolean): Promise<number> {
    this.outbox.restore(
      (await store.listFeedback()).map((f) => this.ctx.readable(f)),
      store,
    )
    if (!jobs) return 0
    const records = await store.listUnfinished()
    for (const record of records) {
      if (this.live.has(record.id)) continue
      const job = liveJobOf(record, store)
      this.live.add(job)
      this.ctx.schedule(job)
    }
    if (records.length > 0) this.ctx.log.info({ jobs: records.length }, 'resumed unfinished jobs from storage')
    return records.length
  }

  /** Takes over the jobs of `peer`, whose lease this node won. */
  adopt(peer: string, store: Store): Promise<number> {
    this.adopted.set(peer, store)
    return this.resume(store, true)
  }

  /** Jobs of an adopted `peer` this node still holds unfinished. */
  heldFor(peer: string): number {
    const store = this.adopted.get(peer)
    let n = 0
    for (const job of this.live.values()) if (job.store === store) n++
    return n
  }
}
