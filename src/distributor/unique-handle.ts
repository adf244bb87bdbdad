import type { DeduplicatedError } from '../errors.js'
import type { JobArgsObject } from '../protocol/args.js'
import type { ProgressValue } from '../protocol/messages.js'
import type { TrackedJob } from './tracked-job.js'
import type { JobHandle, UniqueResult } from './job-handle.js'

/**
 * What an enqueue with a key returns: the handle of the job that runs (`id`, `done`,
 * `persisted`, `cancel()` are that job's: a joined caller's cancel cancels the shared job),
 * and `unique`, what the enqueue did: known at once without a spool, once the claim is
 * written with one. Until then `id` is the job this enqueue made or joined here.
 */
export class UniqueHandle<R extends JobArgsObject = JobArgsObject> implements JobHandle<R> {
  /**
   * What the enqueue did once known (or why it never will be), and the promise `unique`
   * handed out, made on first read as `done` is: most callers never look.
   */
  private result: UniqueResult | Error | undefined = undefined
  private promise: Promise<UniqueResult> | undefined = undefined
  private answer: ((result: UniqueResult) => void) | undefined = undefined
  private refuse: ((error: Error) => void) | undefined = undefined
  /** The key is held by a job this process does not track. */
  private elsewhere: DeduplicatedError | undefined = undefined

  constructor(
    private job: TrackedJob,
    private readonly key: string,
    private readonly outcome: UniqueResult['outcome'],
    private readonly cancelById: (id: string) => Promise<boolean>,
  ) {}

  get unique(): Promise<UniqueResult> {
    if (this.promise !== undefined) return this.promise
    const result = this.result
    if (result instanceof Error) this.promise = Promise.reject(result)
    else if (result !== undefined) this.promise = Promise.resolve(result)
    else
      this.promise = new Promise<UniqueResult>((resolve, reject) => {
        this.answer = resolve
        this.refuse = reject
      })
    // Never an unhandled rejection: a caller may never await it.
    this.promise.catch(() => {})
    return this.promise
  }

  /** What the enqueue did is known: `job` is the one that runs. */
  settle(job: TrackedJob, outcome: UniqueResult['outcome'] = this.outcome): void {
    this.job = job
    this.known(Object.freeze({ key: this.key, outcome, id: job.id }))
  }

  /** Another member's job (or one this process holds no closure for) has the key. */
  settleElsewhere(error: DeduplicatedError): void {
    this.elsewhere = error
    this.known(Object.freeze({ key: this.key, outcome: 'deduplicated' as const, id: error.id }))
  }

  /** The distributor closed before the claim was answered. */
  fail(error: Error): void {
    this.job.reject(error)
    this.result = error
    this.refuse?.(error)
  }

  private known(result: UniqueResult): void {
    this.result = result
    this.answer?.(result)
  }

  get id(): string {
    return this.elsewhere?.id ?? this.job.id
  }

  get done(): Promise<R> {
    return this.job.done as Promise<JobArgsObject> as Promise<R>
  }

  get persisted(): Promise<void> {
    return this.job.persisted
  }

  cancel(): Promise<boolean> {
    return this.elsewhere === undefined ? this.job.cancel() : this.cancelById(this.elsewhere.id)
  }

  /** The shared job's last progress value (none for a job of another member). */
  get progress(): ProgressValue | undefined {
    return this.elsewhere === undefined ? this.job.progress : undefined
  }
}
