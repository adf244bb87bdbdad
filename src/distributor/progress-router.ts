import type { ProgressValue, WireProgress } from '../protocol/messages.js'
import type { DistributorEvents } from './events.js'
import type { FeedbackHandlers, FeedbackInfo } from './feedback-handlers.js'
import type { JobTable } from './job-table.js'
import type { NodeSession } from './node-session.js'
import type { TrackedJob } from './tracked-job.js'

/** The enqueue option `onProgress`: a job's progress, as its node sends it (about ten a second at most). */
export type ProgressCallback = (value: ProgressValue, info: FeedbackInfo) => void | Promise<void>

/** What the distributor keeps of a job's progress: its closure, and the last value seen. */
interface Kept {
  onProgress: ProgressCallback | undefined
  value: ProgressValue | undefined
}

/** What the router needs of the rest of the distributor. */
export interface ProgressContext {
  /** A closure or handler threw (or its promise rejected): logged and reported, never fatal. */
  closureFailed(id: string, name: string, thrown: unknown): void
}

/**
 * Progress on its way to the caller: the job's `onProgress`, or, for a job this distributor
 * holds no closure for (it restarted, or adopted the job from a spool), the named handler's
 * `progress`; and the `job:progress` event. Nothing is acknowledged: progress is a hint, and
 * the run's feedback follows it on the same link.
 *
 * Kept beside the jobs, not on them: a distributor may hold a million jobs, few of which
 * report progress. A WeakMap keyed by the job (its handle) needs no removal when the job
 * ends, and `handle.progress` still reads the last value after it did.
 */
export class ProgressRouter {
  private readonly kept = new WeakMap<TrackedJob, Kept>()

  constructor(
    private readonly ctx: ProgressContext,
    private readonly jobs: JobTable,
    private readonly events: DistributorEvents,
    /** Named feedback handlers by job name (Distributor.onFeedback). */
    private readonly handlers: ReadonlyMap<string, FeedbackHandlers>,
  ) {}

  /**
   * `job` was enqueued with `onProgress`, or a caller joined to it (a unique key) gave one:
   * each is called, in the order they came.
   */
  watch(job: TrackedJob, onProgress: ProgressCallback): void {
    const kept = this.kept.get(job)
    const before = kept?.onProgress
    const callback: ProgressCallback =
      before === undefined
        ? onProgress
        : (value, info) => {
            try {
              before(value, info)
            } finally {
              onProgress(value, info)
            }
          }
    this.kept.set(job, { onProgress: callback, value: kept?.value })
  }

  /** The last value seen of `job`, undefined before any. */
  valueOf(job: TrackedJob): ProgressValue | undefined {
    return this.kept.get(job)?.value
  }

  onProgress(session: NodeSession, items: readonly WireProgress[]): void {
    for (const item of items) {
      const job = this.jobs.get(item.id)
      // A run whose feedback came already: its progress is stale.
      if (job !== undefined && item.run < job.run) continue
      let closure: ProgressCallback | undefined
      if (job !== undefined) {
        let kept = this.kept.get(job)
        if (kept === undefined) this.kept.set(job, (kept = { onProgress: undefined, value: item.value }))
        else kept.value = item.value
        closure = job.viaHandler ? this.handlers.get(job.name)?.progress : kept.onProgress
      } else {
        closure = this.handlers.get(item.name)?.progress
      }
      const name = job?.name ?? item.name
      if (closure !== undefined) {
        const info: FeedbackInfo = { id: item.id, name, node: session.name, run: item.run, final: false }
        this.run(closure, item.value, info)
      }
      if (this.events.wants('job:progress')) {
        this.events.emit('job:progress', { id: item.id, name, node: session.name, run: item.run, value: item.value })
      }
    }
  }

  private run(closure: ProgressCallback, value: ProgressValue, info: FeedbackInfo): void {
    try {
      const result = closure(value, info)
      if (result instanceof Promise) result.catch((err: unknown) => this.ctx.closureFailed(info.id, info.name, err))
    } catch (err) {
      this.ctx.closureFailed(info.id, info.name, err)
    }
  }
}
