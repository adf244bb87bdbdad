import { Timer } from '../scheduling/timer-heap.js'
import type { TrackedJob } from './tracked-job.js'

/**
 * Where a distributor's unique keys live, as UniqueJobs uses them. LocalUniqueKeys keeps
 * them in this process (a distributor without a spool). A group-wide implementation over
 * the spool's Redis would claim a key in the same atomic write that spools the job, and
 * release it where the spool record goes.
 *
 * A key is scoped by job name: 'user:42' of one job name and of another are two keys.
 */
export interface UniqueKeys {
  /** The job holding `key` of job name `name`: unfinished, or finished while a throttle's ttl runs. */
  holder(name: string, key: string): TrackedJob | undefined
  /**
   * `job` holds the key from now on, in place of any holder: until it ends, or with `ttlMs`
   * for that long after now, whether it ended or not.
   */
  hold(name: string, key: string, job: TrackedJob, ttlMs: number | undefined): void
  /** `job` ended: a key it holds until its end is released. */
  ended(job: TrackedJob): void
  /** A key `job` holds is released, ttl or not (its claim in the group was lost). */
  forget(job: TrackedJob): void
  /** Every key is released (the distributor closed). */
  clear(): void
}

/** What LocalUniqueKeys needs: the distributor's one scheduler, for the ttls. */
export interface UniqueKeysContext {
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
}

/** One key held. `expiry` is set for a ttl: the key goes when it fires, not when the job ends. */
class HeldKey {
  expiry: Timer | undefined = undefined

  constructor(
    readonly scope: string,
    readonly job: TrackedJob,
  ) {}
}

/**
 * Unique keys in this process: by scope (name and key) and by the holding job's id, so that
 * a job's end finds its key without a field on the job. INVARIANT: `byJob` has an entry
 * exactly for the unfinished jobs that hold a key; `byScope` for every key held.
 */
export class LocalUniqueKeys implements UniqueKeys {
  private readonly byScope = new Map<string, HeldKey>()
  private readonly byJob = new Map<string, HeldKey>()

  constructor(private readonly ctx: UniqueKeysContext) {}

  /** Keys held now (tests, and what a close forgets). */
  get size(): number {
    return this.byScope.size
  }

  holder(name: string, key: string): TrackedJob | undefined {
    return this.byScope.get(scopeOf(name, key))?.job
  }

  hold(name: string, key: string, job: TrackedJob, ttlMs: number | undefined): void {
    const scope = scopeOf(name, key)
    const previous = this.byScope.get(scope)
    if (previous !== undefined) this.drop(previous)
    const held = new HeldKey(scope, job)
    this.byScope.set(scope, held)
    this.byJob.set(job.id, held)
    if (ttlMs !== undefined) {
      held.expiry = new Timer(() => this.drop(held))
      this.ctx.after(held.expiry, ttlMs)
    }
  }

  ended(job: TrackedJob): void {
    const held = this.byJob.get(job.id)
    if (held === undefined || held.job !== job) return
    this.byJob.delete(job.id)
    // A throttle's key outlives its job: its ttl releases it.
    if (held.expiry === undefined) this.byScope.delete(held.scope)
  }

  forget(job: TrackedJob): void {
    const held = this.byJob.get(job.id)
    if (held !== undefined && held.job === job) this.drop(held)
  }

  clear(): void {
    for (const held of this.byScope.values()) if (held.expiry !== undefined) this.ctx.cancelTimer(held.expiry)
    this.byScope.clear()
    this.byJob.clear()
  }

  private drop(held: HeldKey): void {
    if (this.byScope.get(held.scope) === held) this.byScope.delete(held.scope)
    if (this.byJob.get(held.job.id) === held) this.byJob.delete(held.job.id)
    if (held.expiry !== undefined) this.ctx.cancelTimer(held.expiry)
  }
}

function scopeOf(name: string, key: string): string {
  return `${name}\0${key}`
}
