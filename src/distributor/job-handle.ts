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
 * A caller who looked at `done` but never awaited it must not crash on a failed job. The
 * handler is added when the promise rejects (Node reports a rejection only if it is still
 * unhandled once the microtasks ran), not when it is made: most jobs succeed, and a handler
 * made up front is one more promise held per job.
 */
function handled<R>(promise: Promise<R>): Promise<R> {
  promise.catch(ignore)
  return promise
}

/** A `done` made before the outcome, with what settles it. */
interface Waiting<R> {
  promise: Promise<R>
  resolve: (value: R) => void
  reject: (err: Error) => void
}
/** The outcome, when it came before anyone asked for `done`. */
type Outcome<R> = { ok: true; value: R } | { ok: false; error: Error }

/**
 * `done` is made on first use. A JobReactor-style caller passes closures and never looks at
 * it, and a promise with its resolving functions costs several times the rest of what the
 * distributor keeps per job (a million delayed jobs: hundreds of megabytes). For the same
 * reason the handle is three fields: whatever `done` needs lives in the one `state`:
 * nothing yet, a waiting `done`, an outcome nobody asked for yet, or a settled `done`.
 *
 * INVARIANT: once settled, the outcome never changes; a `done` made after settling is
 * already settled the same way.
 */
export class Handle<R extends JobArgsObject = JobArgsObject> implements JobHandle<R> {
  private state: Waiting<R> | Outcome<R> | Promise<R> | undefined = undefined

  constructor(
    readonly id: string,
    private readonly owner: Canceller,
  ) {}

  get done(): Promise<R> {
    const state = this.state
    if (state instanceof Promise) return state
    if (state !== undefined && 'promise' in state) return state.promise
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
      promise = state.ok ? Promise.resolve(state.value) : handled(Promise.reject(state.error))
      this.state = promise
    }
    return promise
  }

  cancel(): Promise<boolean> {
    return this.owner.cancel(this.id)
  }

  resolve(value: R): void {
    const state = this.state
    if (state === undefined) this.state = { ok: true, value }
    else if ('resolve' in state) {
      state.resolve(value)
      this.state = state.promise
    }
  }

  reject(error: Error): void {
    const state = this.state
    if (state === undefined) this.state = { ok: false, error }
    else if ('reject' in state) {
      state.reject(error)
      this.state = handled(state.promise)
    }
  }
}
