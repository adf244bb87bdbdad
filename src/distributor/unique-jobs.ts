import { JobFailedError } from '../errors.js'
import type { ProgressValue } from '../protocol/messages.js'
import type { JobArgsObject } from '../protocol/args.js'
import { isScheduled } from '../scheduling/cron.js'
import type { JobHandle } from './job-handle.js'
import type { ProgressCallback } from './progress-router.js'
import { NO_JOB_OPTIONS, type JobOptions, type ResolvedEnqueueOptions } from './options.js'
import type { FeedbackCallback, TrackedJob } from './tracked-job.js'
import { decideUnique, type ResolvedUniqueOptions, type UniqueResult } from './unique.js'
import type { UniqueKeys } from './unique-keys.js'

/** What UniqueJobs needs of the distributor. */
export interface UniqueJobsContext {
  /** Enqueues a new job as `enqueue` does without a key. */
  admit(
    name: string,
    args: Buffer,
    resolved: ResolvedEnqueueOptions,
    onSuccess: FeedbackCallback | undefined,
    onError: FeedbackCallback | undefined,
  ): TrackedJob
  /** Cancels a job as `cancel(id)` does. */
  cancel(id: string): Promise<boolean>
  /** Runs a closure with a result, reporting what it throws as any feedback closure's. */
  runClosure(job: TrackedJob, closure: FeedbackCallback | undefined, args: JobArgsObject): void
  /** A joined caller's `onProgress` hears the shared job's progress too. */
  watchProgress(job: TrackedJob, onProgress: ProgressCallback): void
}

/** The closures of every caller joined to one job: the job's own closures run them all. */
interface Joined {
  success: FeedbackCallback[]
  error: FeedbackCallback[]
}

/**
 * Enqueues with a key (option `unique`): decides with decideUnique and carries the
 * decision out. The keys live in a UniqueKeys; the joined callers' closures here, by job id,
 * until the job ends. A job holding a key is marked `keyed`, so that the end of every other
 * job costs one bit test.
 */
export class UniqueJobs {
  private readonly joined = new Map<string, Joined>()

  constructor(
    private readonly ctx: UniqueJobsContext,
    private readonly keys: UniqueKeys,
  ) {}

  enqueue(
    name: string,
    args: Buffer,
    resolved: ResolvedEnqueueOptions,
    unique: ResolvedUniqueOptions,
    onSuccess: FeedbackCallback | undefined,
    onError: FeedbackCallback | undefined,
  ): UniqueHandle {
    const { key, mode, ttlMs } = unique
    const holder = this.keys.holder(name, key)
    const scheduled = isScheduled(resolved.job)
    const holderScheduled = holder !== undefined && isScheduled(holder.opts)
    const decision = decideUnique(
      holder === undefined
        ? undefined
        : {
            state: holder.state,
            scheduled: holderScheduled,
            sameDefinition: (scheduled || holderScheduled) && sameDefinition(holder, args, resolved.job),
          },
      mode,
      scheduled,
    )
    if (holder === undefined || decision === 'create' || decision === 'reschedule') {
      const job = this.ctx.admit(name, args, resolved, onSuccess, onError)
      job.keyed = true
      // Held by the new job before the old one is cancelled: the old one's end releases nothing.
      this.keys.hold(name, key, job, ttlMs)
      if (holder === undefined) return new UniqueHandle(job, key, 'created')
      void this.ctx.cancel(holder.id)
      return new UniqueHandle(job, key, 'replaced')
    }
    this.join(holder, onSuccess, onError)
    if (resolved.onProgress !== undefined) this.ctx.watchProgress(holder, resolved.onProgress)
    if (decision === 'join') return new UniqueHandle(holder, key, 'deduplicated')
    holder.args = args
    holder.dueAt = resolved.dueAt
    return new UniqueHandle(holder, key, 'replaced')
  }

  /** `job` ended: its key goes (unless a ttl holds it), and its joined closures with it. */
  ended(job: TrackedJob): void {
    this.keys.ended(job)
    this.joined.delete(job.id)
  }

  /** The distributor closed: every key and joined closure goes. */
  clear(): void {
    this.keys.clear()
    this.joined.clear()
  }

  /** The caller's closures run with `job`'s results from now on, beside its own. */
  private join(job: TrackedJob, onSuccess: FeedbackCallback | undefined, onError: FeedbackCallback | undefined): void {
    if (onSuccess === undefined && onError === undefined) return
    if (job.state === 'done' || job.state === 'cancelled') return this.afterEnd(job, onSuccess, onError)
    let joined = this.joined.get(job.id)
    if (joined === undefined) {
      joined = { success: listOf(job.onSuccess), error: listOf(job.onError) }
      this.joined.set(job.id, joined)
      job.onSuccess = runAll(joined.success)
      job.onError = runAll(joined.error)
    }
    if (onSuccess !== undefined) joined.success.push(onSuccess)
    if (onError !== undefined) joined.error.push(onError)
  }

  /**
   * Joined to a job that finished while a throttle's ttl holds its key: the closures run
   * with its outcome as `done` settled it (none for a cancel, as for the job's own).
   */
  private afterEnd(
    job: TrackedJob,
    onSuccess: FeedbackCallback | undefined,
    onError: FeedbackCallback | undefined,
  ): void {
    job.done.then(
      (args) => {
        if (job.state !== 'cancelled') this.ctx.runClosure(job, onSuccess, args)
      },
      (err: unknown) => {
        if (err instanceof JobFailedError) this.ctx.runClosure(job, onError, err.args as JobArgsObject)
      },
    )
  }
}

/**
 * What an enqueue with a key returns: the handle of the job that runs (`id`, `done`,
 * `persisted`, `cancel()` are that job's: a joined caller's cancel cancels the shared job),
 * and `unique`, what the enqueue did.
 */
export class UniqueHandle<R extends JobArgsObject = JobArgsObject> implements JobHandle<R> {
  readonly unique: UniqueResult

  constructor(
    private readonly job: TrackedJob,
    key: string,
    outcome: UniqueResult['outcome'],
  ) {
    this.unique = Object.freeze({ key, outcome, id: job.id })
  }

  get id(): string {
    return this.job.id
  }

  get done(): Promise<R> {
    return this.job.done as Promise<JobArgsObject> as Promise<R>
  }

  get persisted(): Promise<void> {
    return this.job.persisted
  }

  cancel(): Promise<boolean> {
    return this.job.cancel()
  }

  /** The shared job's last progress value. */
  get progress(): ProgressValue | undefined {
    return this.job.progress
  }
}

function listOf(closure: FeedbackCallback | undefined): FeedbackCallback[] {
  return closure === undefined ? [] : [closure]
}

/**
 * One closure that runs every closure of `list` (as it is when called) with the same args:
 * one that throws does not keep the others from running; what they threw is thrown after
 * (or rejected, once every promise settled), to be reported as a feedback closure's error.
 */
function runAll(list: FeedbackCallback[]): FeedbackCallback {
  return (args) => {
    const errors: unknown[] = []
    const waits: Promise<void>[] = []
    for (const closure of list) {
      try {
        const result = closure(args)
        if (result instanceof Promise) waits.push(result)
      } catch (err) {
        errors.push(err)
      }
    }
    if (waits.length === 0) {
      if (errors.length > 0) throw oneOf(errors)
      return undefined
    }
    return Promise.allSettled(waits).then((results) => {
      for (const result of results) if (result.status === 'rejected') errors.push(result.reason)
      if (errors.length > 0) throw oneOf(errors)
    })
  }
}

function oneOf(errors: unknown[]): unknown {
  return errors.length === 1 ? errors[0] : new AggregateError(errors, `${errors.length} joined feedback closures threw`)
}

/** The same job again: name (the key's scope), args and every option sent to the node. */
function sameDefinition(job: TrackedJob, args: Buffer, opts: JobOptions): boolean {
  if (!job.args.equals(args)) return false
  for (const field of Object.keys(NO_JOB_OPTIONS) as (keyof JobOptions)[]) {
    const a = job.opts[field]
    const b = opts[field]
    // `retry` is a policy object, made per enqueue.
    if (a !== b && JSON.stringify(a) !== JSON.stringify(b)) return false
  }
  return true
}
