import { StoreTimeoutError } from '../errors.js'
import { Timer } from '../scheduling/timer-heap.js'
import { type JobPage, type NodeLeases, type Store, failedJobsPage, hasLeases } from './store.js'

/** What the guard needs of its owner: a clock and a one-shot timer on the owner's scheduler. */
export interface StoreGuardContext {
  now(): number
  /** Fires `timer` once, `ms` from now. */
  after(timer: Timer, ms: number): void
}

/**
 * Puts a deadline on every store operation a node waits on, so that a store that stops
 * answering (a hung server, a network black hole: the connection stays up and commands
 * just wait) counts as down exactly like one that refuses connections.
 *
 * HOW IT TELLS A SLOW STORE FROM A HUNG ONE: the deadline is on silence, not on each
 * operation's latency. The store is hung when operations are outstanding and NONE of them
 * has answered for `deadlineMs` (from the last answer, or from the moment the first of them
 * was issued after a quiet spell). A store that answers slowly but answers keeps making
 * progress, however long its queue of pipelined commands, and is never declared down; one
 * stall shorter than the deadline (a fork for a snapshot, `DEBUG SLEEP`) is not either.
 *
 * When the deadline passes, every outstanding operation is rejected with a
 * StoreTimeoutError, in the order they were issued (callers that replay failed writes in
 * order rely on it). The store itself may still carry a rejected command out later, when
 * it wakes: callers must treat a timed-out write as "may or may not have happened".
 *
 * Cost: one Set entry and one promise per operation, one clock read per answer, and one
 * timer that fires at most once per deadline while operations are outstanding (never when
 * the store is idle).
 */
export class StoreGuard {
  /** Rejecters of the operations waiting for an answer, in the order they were issued. */
  private readonly outstanding = new Set<(err: Error) => void>()
  private lastProgressAt = 0
  /** One wrapper per store: callers tell stores apart by identity (a peer's, adopted again). */
  private readonly wrapped = new WeakMap<Store, Store>()
  private readonly timer = new Timer(() => this.check())

  constructor(
    private readonly ctx: StoreGuardContext,
    readonly deadlineMs: number,
  ) {}

  /** Operations waiting for the store now. */
  get waiting(): number {
    return this.outstanding.size
  }

  /** Runs one store operation under the deadline. */
  run<T>(operation: () => Promise<T>): Promise<T> {
    let answer: Promise<T>
    try {
      answer = operation()
    } catch (err) {
      return Promise.reject(err)
    }
    if (this.outstanding.size === 0) this.lastProgressAt = this.ctx.now()
    return new Promise<T>((resolve, reject) => {
      this.outstanding.add(reject)
      this.arm()
      answer.then(
        (value) => {
          if (this.outstanding.delete(reject)) {
            this.lastProgressAt = this.ctx.now()
            resolve(value)
          }
        },
        (err: unknown) => {
          // An error is an answer too: a store that refuses at once is down, not hung.
          if (this.outstanding.delete(reject)) {
            this.lastProgressAt = this.ctx.now()
            reject(err)
          }
        },
      )
    })
  }

  /** Part of an answer arrived (a page of a long listing): the store is not silent. */
  readonly progress = (): void => {
    if (this.outstanding.size > 0) this.lastProgressAt = this.ctx.now()
  }

  /** `store`, with every operation under this guard's deadline (lease operations too). */
  wrap(store: Store): Store {
    let guarded = this.wrapped.get(store)
    if (guarded === undefined) {
      guarded = hasLeases(store) ? new GuardedLeaseStore(store, this) : new GuardedStore(store, this)
      this.wrapped.set(store, guarded)
    }
    return guarded
  }

  private arm(): void {
    // In no timer queue (never armed, fired, or dropped by its scheduler's close): arm it.
    if (this.timer.timerIndex !== -1) return
    this.ctx.after(this.timer, this.lastProgressAt + this.deadlineMs - this.ctx.now())
  }

  private check(): void {
    if (this.outstanding.size === 0) return
    const silentMs = this.ctx.now() - this.lastProgressAt
    if (silentMs < this.deadlineMs) {
      this.arm()
      return
    }
    const error = new StoreTimeoutError(this.deadlineMs, this.outstanding.size)
    const waiting = [...this.outstanding]
    this.outstanding.clear()
    for (const reject of waiting) reject(error)
  }
}

class GuardedStore implements Store {
  constructor(
    protected readonly inner: Store,
    protected readonly guard: StoreGuard,
  ) {}

  get durable(): boolean {
    return this.inner.durable
  }

  open(): Promise<void> {
    return this.guard.run(() => this.inner.open())
  }

  ping(): Promise<void> {
    return this.guard.run(() => this.inner.ping())
  }

  saveJobs(...a: Parameters<Store['saveJobs']>): Promise<void> {
    return this.guard.run(() => this.inner.saveJobs(...a))
  }

  updateJob(...a: Parameters<Store['updateJob']>): Promise<void> {
    return this.guard.run(() => this.inner.updateJob(...a))
  }

  finishRun(...a: Parameters<Store['finishRun']>): Promise<void> {
    return this.guard.run(() => this.inner.finishRun(...a))
  }

  getJob(...a: Parameters<Store['getJob']>): ReturnType<Store['getJob']> {
    return this.guard.run(() => this.inner.getJob(...a))
  }

  removeJob(...a: Parameters<Store['removeJob']>): Promise<void> {
    return this.guard.run(() => this.inner.removeJob(...a))
  }

  listUnfinished(): ReturnType<Store['listUnfinished']> {
    return this.guard.run(() => this.inner.listUnfinished(this.guard.progress))
  }

  listJobs(filter?: Parameters<Store['listJobs']>[0]): ReturnType<Store['listJobs']> {
    return this.guard.run(() => this.inner.listJobs(filter, this.guard.progress))
  }

  // Always present, whether the inner store has its own or not: failedJobsPage falls back.
  listFailedPage(cursor: string | undefined, count: number): Promise<JobPage> {
    return this.guard.run(() => failedJobsPage(this.inner, cursor, count, this.guard.progress))
  }

  listFeedback(): ReturnType<Store['listFeedback']> {
    return this.guard.run(() => this.inner.listFeedback())
  }

  ackFeedback(...a: Parameters<Store['ackFeedback']>): Promise<void> {
    return this.guard.run(() => this.inner.ackFeedback(...a))
  }

  close(): Promise<void> {
    return this.guard.run(() => this.inner.close())
  }
}

class GuardedLeaseStore extends GuardedStore implements NodeLeases {
  constructor(
    private readonly leases: Store & NodeLeases,
    guard: StoreGuard,
  ) {
    super(leases, guard)
  }

  acquireLease(...a: Parameters<NodeLeases['acquireLease']>): Promise<string> {
    return this.guard.run(() => this.leases.acquireLease(...a))
  }

  releaseLease(...a: Parameters<NodeLeases['releaseLease']>): Promise<void> {
    return this.guard.run(() => this.leases.releaseLease(...a))
  }

  listNodes(): Promise<string[]> {
    return this.guard.run(() => this.leases.listNodes())
  }

  forNode(node: string): Store {
    return this.guard.wrap(this.leases.forNode(node))
  }
}
