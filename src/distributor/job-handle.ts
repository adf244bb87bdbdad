import type { JobArgsObject } from '../protocol/args.js'
import type { ProgressValue } from '../protocol/messages.js'

/** What an enqueue with a key did; `id` is the job that runs (also `handle.id`). */
export interface UniqueResult {
  readonly key: string
  readonly outcome: 'created' | 'deduplicated' | 'replaced'
  readonly id: string
}

/** What `enqueue` returns. */
export interface JobHandle<R extends JobArgsObject = JobArgsObject> {
  readonly id: string
  /**
   * Resolves with the final args on success (for a periodic job: when its schedule ends);
   * rejects with JobFailedError after the last attempt failed. Never an unhandled rejection
   * when nobody awaits it.
   */
  readonly done: Promise<R>
  /**
   * Resolves once the job would survive a crash of this process: written to the
   * distributor's spool (option `storage`), or accepted by a durable node; never before.
   * Also resolves when the job ended before either (nothing is left to lose). Rejects with
   * DistributorClosedError when a distributor without a spool closes first. Never an
   * unhandled rejection.
   */
  readonly persisted: Promise<void>
  /** true when the job was cancelled before it finished, false when it had finished already. */
  cancel(): Promise<boolean>
  /** The last progress value the job reported (ctx.progress) that reached here; undefined before any. */
  readonly progress: ProgressValue | undefined
  /**
   * With option `unique` only: what the enqueue did (`created`, `deduplicated`: joined to
   * the job holding the key, or `replaced`), and the id of the job that runs. Resolves at
   * once without a spool; with one, once the key's claim is written with the spool (the key
   * is the group's). Rejects only when the distributor closes before that.
   */
  readonly unique?: Promise<UniqueResult>
}

/** The part of the distributor a handle calls. */
export interface Canceller {
  cancel(id: string): Promise<boolean>
  /** Where a handle's progress is kept (none for a handle made without a distributor). */
  progressOf?(handle: object): ProgressValue | undefined
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

/** The outcome, when it came before anyone asked for `done`. */
type Outcome<R> = { ok: true; value: R } | { ok: false; error: Error }

type Settle<R> = (value: R | PromiseLike<R>) => void

interface PersistWait {
  promise: Promise<void>
  resolve: () => void
  reject: (error: Error) => void
}

/**
 * `new Promise(capture)` hands its resolve function over here: one shared executor instead
 * of a closure (and its context) made per `done`.
 */
let captured: Settle<unknown> | undefined
const capture = (resolve: Settle<never>): void => {
  captured = resolve as Settle<unknown>
}

/**
 * `done` is made on first use. A JobReactor-style caller passes closures and never looks at
 * it, and a promise with its resolving functions costs several times the rest of what the
 * distributor keeps per job (a million delayed jobs: hundreds of megabytes). For the same
 * reason a `done` made before the outcome keeps only its resolve function: a failure
 * resolves it with a rejected promise, which rejects it in turn.
 *
 * INVARIANT: once settled, the outcome never changes; a `done` made after settling is
 * already settled the same way. `settle` is set exactly while `outcome` is a `done`
 * that waits.
 */
export class Handle<R extends JobArgsObject = JobArgsObject> implements JobHandle<R> {
  private outcome: Outcome<R> | Promise<R> | undefined = undefined
  private settle: Settle<R> | undefined = undefined
  /**
   * `persisted`, made on first use like `done`: true once persisted, the error when it
   * never will be, a waiting promise and its settle functions, or undefined (neither, and
   * nobody asked).
   */
  private persist: true | Error | PersistWait | undefined = undefined

  constructor(
    readonly id: string,
    private readonly canceller: Canceller,
  ) {}

  get done(): Promise<R> {
    const outcome = this.outcome
    if (outcome instanceof Promise) return outcome
    let promise: Promise<R>
    if (outcome === undefined) {
      promise = new Promise<R>(capture)
      this.settle = captured
      captured = undefined
    } else {
      promise = outcome.ok ? Promise.resolve(outcome.value) : handled(Promise.reject(outcome.error))
    }
    this.outcome = promise
    return promise
  }

  cancel(): Promise<boolean> {
    return this.canceller.cancel(this.id)
  }

  get progress(): ProgressValue | undefined {
    return this.canceller.progressOf?.(this)
  }

  get persisted(): Promise<void> {
    const p = this.persist
    if (p === true) return Promise.resolve()
    if (p instanceof Error) return handled(Promise.reject(p))
    if (p !== undefined) return p.promise
    let resolve!: () => void
    let reject!: (error: Error) => void
    const promise = handled(
      new Promise<void>((res, rej) => {
        resolve = res
        reject = rej
      }),
    )
    this.persist = { promise, resolve, reject }
    return promise
  }

  /** True once `persisted` resolved (or would, when asked). */
  get isPersisted(): boolean {
    return this.persist === true
  }

  /** The job would survive this process now (or ended): `persisted` resolves. Once. */
  markPersisted(): void {
    const p = this.persist
    if (p === true || p instanceof Error) return
    this.persist = true
    p?.resolve()
  }

  /** The job will never be persisted: `persisted` rejects, unless it resolved already. */
  failPersisted(error: Error): void {
    const p = this.persist
    if (p === true || p instanceof Error) return
    this.persist = error
    p?.reject(error)
  }

  resolve(value: R): void {
    if (this.outcome === undefined) this.outcome = { ok: true, value }
    else this.take()?.(value)
  }

  reject(error: Error): void {
    if (this.outcome === undefined) this.outcome = { ok: false, error }
    else {
      const settle = this.take()
      if (settle === undefined) return
      // Handled before it rejects: nobody may ever await it.
      handled(this.outcome as Promise<R>)
      settle(handled(Promise.reject(error)))
    }
  }

  /** The waiting `done`'s resolve function, once: an outcome never changes. */
  private take(): Settle<R> | undefined {
    const settle = this.settle
    if (settle === undefined) return undefined
    this.settle = undefined
    return settle
  }
}
