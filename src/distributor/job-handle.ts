import type { JobArgsObject } from '../protocol/args.js'

/** What `enqueue` returns. */
export interface JobHandle<R extends JobArgsObject = JobArgsObject> {
  readonly id: string
  /**
   * Resolves with the final args on success (for a periodic job: when its schedule ends);
   * rejects with JobFailedError after the last attempt failed. Never an unhandled rejection
   * when nobody awaits it.
   */
  readonly done: Promise<R>
  /** true when the job was cancelled before it finished, false when it had finished already. */
  cancel(): Promise<boolean>
}

/** The part of the distributor a handle calls. */
export interface Canceller {
  cancel(id: string): Promise<boolean>
}

const ignore = (): void => {}

/**
 * `done` is made on first use. A JobReactor-style caller passes closures and never looks at
 * it, and a promise with its resolving functions costs several times the rest of what the
 * distributor keeps per job (a million delayed jobs: hundreds of megabytes).
 *
 * INVARIANT: once settled, the outcome never changes; a `done` made after settling is
 * already settled the same way.
 */
export class Handle<R extends JobArgsObject = JobArgsObject> implements JobHandle<R> {
  private promise: Promise<R> | undefined
  private resolveFn: ((value: R) => void) | undefined
  private rejectFn: ((err: Error) => void) | undefined
  private outcome: { ok: true; value: R } | { ok: false; error: Error } | undefined

  constructor(
    readonly id: string,
    private readonly owner: Canceller,
  ) {}

  get done(): Promise<R> {
    if (this.promise !== undefined) return this.promise
    const outcome = this.outcome
    if (outcome === undefined) {
      this.promise = new Promise<R>((resolve, reject) => {
        this.resolveFn = resolve
        this.rejectFn = reject
      })
    } else {
      this.promise = outcome.ok ? Promise.resolve(outcome.value) : Promise.reject(outcome.error)
    }
    // A caller who looked at `done` but never awaited it must not crash on a failed job.
    this.promise.catch(ignore)
    return this.promise
  }

  cancel(): Promise<boolean> {
    return this.owner.cancel(this.id)
  }

  resolve(value: R): void {
    if (this.outcome !== undefined) return
    this.outcome = { ok: true, value }
    this.resolveFn?.(value)
  }

  reject(error: Error): void {
    if (this.outcome !== undefined) return
    this.outcome = { ok: false, error }
    this.rejectFn?.(error)
  }
}
