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

/** A `done` made before the outcome, with what settles it. */
interface Waiting<R> {
  promise: Promise<R>
  resolve: (value: R) => void
  reject: (err: Error) => void
}
/** The outcome, once known; `done` made afterwards (if ever) is already settled. */
type Outcome<R> = { ok: true; value: R; promise?: Promise<R> } | { ok: false; error: Error; promise?: Promise<R> }

/**
 * `done` is made on first use. A JobReactor-style caller passes closures and never looks at
 * it, and a promise with its resolving functions costs several times the rest of what the
 * distributor keeps per job (a million delayed jobs: hundreds of megabytes). For the same
 * reason the handle is three fields: whatever `done` needs lives in the one `state`.
 *
 * INVARIANT: once settled, the outcome never changes; a `done` made after settling is
 * already settled the same way.
 */
export class Handle<R extends JobArgsObject = JobArgsObject> implements JobHandle<R> {
  private state: Waiting<R> | Outcome<R> | undefined = undefined

  constructor(
    readonly id: string,
    private readonly owner: Canceller,
  ) {}

  get done(): Promise<R> {
    const state = this.state
    if (state !== undefined && state.promise !== undefined) return state.promise
    let promise: Promise<R>
    if (state === undefined) {
      let resolve!: (value: R) => void
      let reject!: (err: Error) => void
      promise = new Promise<R>((res, rej) => {
        resolve = res
        reject = rej
      })
      this.state = { promise, resolve, reject }
    } else {
      const outcome = state as Outcome<R>
      promise = outcome.ok ? Promise.resolve(outcome.value) : Promise.reject(outcome.error)
      outcome.promise = promise
    }
    // A caller who looked at `done` but never awaited it must not crash on a failed job.
    promise.catch(ignore)
    return promise
  }

  cancel(): Promise<boolean> {
    return this.owner.cancel(this.id)
  }

  resolve(value: R): void {
    const state = this.state
    if (state !== undefined && !('resolve' in state)) return
    this.state = { ok: true, value, promise: state?.promise }
    state?.resolve(value)
  }

  reject(error: Error): void {
    const state = this.state
    if (state !== undefined && !('resolve' in state)) return
    this.state = { ok: false, error, promise: state?.promise }
    state?.reject(error)
  }
}
