import { createHash } from 'node:crypto'
import { DeduplicatedError, JobFailedError } from '../errors.js'
import type { JobArgsObject } from '../protocol/args.js'
import { isScheduled } from '../scheduling/cron.js'
import type { ClaimAnswer } from '../storage/redis/spool-script.js'
import type { ProgressCallback } from './progress-router.js'
import { UniqueHandle } from './unique-handle.js'
import { NO_JOB_OPTIONS, type JobOptions } from './job-options.js'
import type { ResolvedEnqueueOptions } from './options.js'
import type { FeedbackCallback, TrackedJob } from './tracked-job.js'
import { decideUnique, type ResolvedUniqueOptions } from './unique.js'
import type { UniqueKeys } from './unique-keys.js'

/** What UniqueJobs needs of the distributor. */
export interface UniqueJobsContext {
  /** A new job, made and counted as `enqueue` makes one, not yet waiting for a node. */
  create(
    name: string,
    args: Buffer,
    resolved: ResolvedEnqueueOptions,
    onSuccess: FeedbackCallback | undefined,
    onError: FeedbackCallback | undefined,
  ): TrackedJob
  /**
   * `job` waits for a node from now on. `claimed`: made a while ago, its record written
   * with its key's claim; else made just now (and spooled now, with a spool).
   */
  enter(job: TrackedJob, claimed: boolean): void
  /** `job`, made a while ago, will never wait for a node: another job holds its key. */
  discard(job: TrackedJob): void
  /** Cancels a job as `cancel(id)` does. */
  cancel(id: string): Promise<boolean>
  /** Runs a closure with a result, reporting what it throws as any feedback closure's. */
  runClosure(job: TrackedJob, closure: FeedbackCallback | undefined, args: JobArgsObject): void
  /** A joined caller's `onProgress` hears the shared job's progress too. */
  watchProgress(job: TrackedJob, onProgress: ProgressCallback): void
  /** The unfinished job this distributor tracks under `id`, if any. */
  tracked(id: string): TrackedJob | undefined
}

/**
 * The group's keys in Redis (with a spool): a claim rides on the spool's write of the job,
 * one atomic step (spool-script.ts); absent without a spool.
 */
export interface GroupClaims {
  /** Claims the key and spools `job` if it holds; UniqueJobs.claimed hears the answer. */
  claim(job: TrackedJob, scope: string, def: string, ttlMs: number, scheduled: boolean): void
  /** Job `id` ended: a key it holds until its end is released; resolves once that is written (see Spool.releaseKey). */
  releaseKey(id: string): Promise<void> | undefined
  /** Cancels job `id` wherever it is in the group (this member closed meanwhile). */
  cancel(id: string): void
  /** `job`'s spool record is written again (its args and due time were replaced). */
  rewrite(job: TrackedJob): void
}

/** The closures of every caller joined to one job: the job's own closures run them all. */
interface Joined {
  success: FeedbackCallback[]
  error: FeedbackCallback[]
}

/** A job whose key is being claimed in Redis, and the callers waiting to learn the outcome. */
class Claim {
  /** The caller who made the job first, then those joined to it meanwhile. */
  readonly handles: UniqueHandle[] = []
  /** The callers' `onProgress`: they follow the job that holds the key, if not this one. */
  readonly watchers: ProgressCallback[] = []
  /** `cancel()` calls made meanwhile: answered once it is known which job to cancel. */
  readonly cancels: ((cancelled: boolean) => void)[] = []
  /** A duplicate replaced the args meanwhile: the record is written again once the claim holds. */
  rewrite = false

  constructor(
    readonly job: TrackedJob,
    readonly key: string,
  ) {}
}

/**
 * Enqueues with a key (option `unique`): decides with decideUnique and carries the
 * decision out. The keys this process holds live in a UniqueKeys; the joined callers'
 * closures here, by job id, until the job ends. A job holding a key is marked `keyed`, so
 * that the end of every other job costs one bit test.
 *
 * With a spool (`group`), the key is the group's: a job that no job of this process holds
 * the key for is made, held back, and claimed in Redis with the spool write of its record
 * (`claimed` hears the answer); only then does it wait for a node, or, when another job
 * holds the key, its callers are joined to that one (or told where it runs). Its key held
 * here meanwhile, a duplicate in this process joins it without a round trip.
 */
export class UniqueJobs {
  private readonly joined = new Map<string, Joined>()
  /** Jobs whose claim is on its way, by id. */
  private readonly claims = new Map<string, Claim>()

  constructor(
    private readonly ctx: UniqueJobsContext,
    private readonly keys: UniqueKeys,
    private readonly group: GroupClaims | undefined,
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
            sameDefinition:
              (scheduled || holderScheduled) &&
              definitionOf(holder.args, holder.opts) === definitionOf(args, resolved.job),
          },
      mode,
      scheduled,
    )
    if (holder === undefined || decision === 'create' || decision === 'reschedule') {
      const job = this.ctx.create(name, args, resolved, onSuccess, onError)
      job.keyed = true
      // Held by the new job before the old one is cancelled: the old one's end releases nothing.
      this.keys.hold(name, key, job, ttlMs)
      const handle = new UniqueHandle(job, key, holder === undefined ? 'created' : 'replaced', this.cancelById)
      if (this.group !== undefined) {
        // The old schedule (if any) is cancelled when Redis says the claim took the key from it.
        const claim = new Claim(job, key)
        claim.handles.push(handle)
        if (resolved.onProgress !== undefined) claim.watchers.push(resolved.onProgress)
        this.claims.set(job.id, claim)
        const def = scheduled ? definitionOf(args, resolved.job) : ''
        this.group.claim(job, scopeOf(name, key), def, ttlMs ?? 0, scheduled)
        return handle
      }
      this.ctx.enter(job, false)
      if (holder !== undefined) void this.ctx.cancel(holder.id)
      handle.settle(job)
      return handle
    }
    const claim = this.claims.get(holder.id)
    this.join(holder, onSuccess, onError)
    if (resolved.onProgress !== undefined) {
      this.ctx.watchProgress(holder, resolved.onProgress)
      claim?.watchers.push(resolved.onProgress)
    }
    if (decision === 'replace') {
      holder.args = args
      holder.dueAt = resolved.dueAt
      if (claim !== undefined) claim.rewrite = true
      else if (holder.spooled) this.group?.rewrite(holder)
    }
    const handle = new UniqueHandle(holder, key, decision === 'join' ? 'deduplicated' : 'replaced', this.cancelById)
    if (claim !== undefined) claim.handles.push(handle)
    else handle.settle(holder)
    return handle
  }

  /**
   * The claim of `job`'s key was written (Spool): undefined, the key is its own; rescheduled,
   * its own too, taken from a schedule defined otherwise (cancelled now); deduplicated,
   * another job holds it: the callers are joined to that one when this process tracks it,
   * else `done` rejects with DeduplicatedError naming where it runs.
   */
  claimed(job: TrackedJob, answer: ClaimAnswer | undefined): void {
    const claim = this.claims.get(job.id)
    // Written, it is persisted: spooled, or another job holds the key.
    job.markPersisted()
    if (claim === undefined) {
      // The distributor closed meanwhile (the callers heard so): the job lives on in the
      // spool, and the schedule its claim replaced must still go.
      if (answer?.outcome === 'rescheduled') this.group?.cancel(answer.holder)
      return
    }
    this.claims.delete(job.id)
    if (answer?.outcome !== 'deduplicated') {
      this.ctx.enter(job, true)
      if (claim.rewrite) this.group?.rewrite(job)
      if (answer !== undefined) void this.ctx.cancel(answer.holder)
      // The maker's enqueue replaced a schedule when Redis says so, whether this process knew it or not.
      const [maker, ...joined] = claim.handles
      maker?.settle(job, answer === undefined ? undefined : 'replaced')
      for (const handle of joined) handle.settle(job)
      this.answerCancels(claim, job.id)
      return
    }
    this.keys.forget(job)
    this.ctx.discard(job)
    const joined = this.joined.get(job.id)
    this.joined.delete(job.id)
    const holder = this.ctx.tracked(answer.holder)
    if (holder === undefined) {
      const err = new DeduplicatedError(answer.holder, answer.member, claim.key)
      job.reject(err)
      for (const handle of claim.handles) handle.settleElsewhere(err)
    } else {
      const onSuccess = joined === undefined ? job.onSuccess : runAll(joined.success)
      const onError = joined === undefined ? job.onError : runAll(joined.error)
      // A job read back from a spool runs the named handlers, not closures: the callers' run as its `done` settles.
      if (holder.viaHandler) this.afterEnd(holder, onSuccess, onError)
      else this.join(holder, onSuccess, onError)
      for (const watcher of claim.watchers) this.ctx.watchProgress(holder, watcher)
      holder.done.then(
        (args) => job.resolve(args),
        (err: unknown) => job.reject(err as Error),
      )
      for (const handle of claim.handles) handle.settle(holder, 'deduplicated')
    }
    this.answerCancels(claim, answer.holder)
  }

  /** `cancel(id)` of a job whose claim is on its way: answered once the claim is; undefined for any other id. */
  cancelClaiming(id: string): Promise<boolean> | undefined {
    const claim = this.claims.get(id)
    if (claim === undefined) return undefined
    return new Promise((resolve) => claim.cancels.push(resolve))
  }

  /** Jobs whose claim is on its way: they count against maxPending. */
  get claimingCount(): number {
    return this.claims.size
  }

  /** The jobs whose claim is on its way (the distributor is closing). */
  claiming(): TrackedJob[] {
    return [...this.claims.values()].map((claim) => claim.job)
  }

  /**
   * `job` ended (one holding a key, or, with a group, one read back from a spool): its key
   * goes, unless a ttl holds it. With a group, resolves once the release is written.
   */
  ended(job: TrackedJob): Promise<void> | undefined {
    if (job.keyed) {
      this.keys.ended(job)
      this.joined.delete(job.id)
    }
    return this.group?.releaseKey(job.id)
  }

  /**
   * A job this distributor does not track ended (its result came for the named handlers):
   * with a group, a key it holds goes; resolves once that is written.
   */
  endedElsewhere(id: string): Promise<void> | undefined {
    return this.group?.releaseKey(id)
  }

  /**
   * The distributor closed: every key and joined closure goes; a caller whose claim was
   * not answered yet hears `error` from `done` and `unique` (with a spool the job lives on
   * if its claim lands, as every spooled job).
   */
  clear(error: Error): void {
    for (const [id, claim] of this.claims) {
      for (const handle of claim.handles) handle.fail(error)
      for (const answer of claim.cancels) answer(false)
      this.claims.delete(id)
    }
    this.keys.clear()
    this.joined.clear()
  }

  private readonly cancelById = (id: string): Promise<boolean> => this.ctx.cancel(id)

  private answerCancels(claim: Claim, id: string): void {
    for (const answer of claim.cancels) void this.ctx.cancel(id).then(answer)
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
   * Joined to a job that finished while a throttle's ttl holds its key (or one whose
   * results go to the named handlers): the closures run with its outcome as `done` settles
   * it (none for a cancel, as for the job's own).
   */
  private afterEnd(
    job: TrackedJob,
    onSuccess: FeedbackCallback | undefined,
    onError: FeedbackCallback | undefined,
  ): void {
    if (onSuccess === undefined && onError === undefined) return
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

/**
 * What makes a schedule the same one again: its args and every option sent to the node (the
 * name is the key's scope). A string, compared here and stored with the key in Redis.
 */
function definitionOf(args: Buffer, opts: JobOptions): string {
  const hash = createHash('sha1').update(args)
  for (const field of Object.keys(NO_JOB_OPTIONS) as (keyof JobOptions)[])
    hash.update(`\0${field}=${JSON.stringify(opts[field]) ?? ''}`)
  return hash.digest('base64')
}

/** A key's scope in Redis: one key per job name. */
function scopeOf(name: string, key: string): string {
  return `${name}\0${key}`
}
