/**
 * Repairing a node's stored jobs by hand, as a library (the `jr` command is one user): which
 * stored jobs can be retried, cancelled or purged, and what each does to the store. The rules
 * are pure functions of a record or a status; `StoreAdmin` applies them to a store.
 *
 * It works on storage only. A running node learns of jobs from its distributors, and of stored
 * jobs only when it starts (it resumes the unfinished ones), so what `retryJob` and `cancelJob`
 * change reaches a node when it next starts.
 */

import { type Clock, systemClock } from '../scheduling/clock.js'
import {
  type FeedbackRecord,
  type JobPatch,
  type JobRecord,
  JobStatus,
  type ListJobsFilter,
  type Store,
  isUnfinished,
} from '../storage/store.js'

/** The store operations the rules act through; every `Store` has them. */
export type AdminStore = Pick<Store, 'getJob' | 'updateJob' | 'removeJob' | 'listJobs' | 'listFeedback'>

/** Statuses a node never resumes: purging them takes nothing a node would still run. */
export const FINISHED_STATUSES: readonly JobStatus[] = Object.values(JobStatus).filter((s) => !isUnfinished(s))

/** What a retry takes back: finished, but not successfully. */
const RETRYABLE: readonly JobStatus[] = [JobStatus.FAILED, JobStatus.CANCELLED]

/** Removals in flight at once in `purgeJobs`: sent without waiting (Redis gathers them in its write batch). */
const PURGE_BATCH = 500

// --- rules ---------------------------------------------------------------------------------

/** A rule's answer: allowed, or refused for a reason the caller can explain. */
export type Verdict<Reason extends string> = { ok: true } | { ok: false; reason: Reason }

const ALLOWED = { ok: true } as const

/**
 * `complete`: it succeeded, so running it again is a new job. `unfinished`: the node runs or
 * retries it itself (new, queued, in progress, error).
 */
export type RetryRefusal = 'complete' | 'unfinished'

export function canRetry(job: Pick<JobRecord, 'status'>): Verdict<RetryRefusal> {
  if (RETRYABLE.includes(job.status)) return ALLOWED
  return { ok: false, reason: job.status === JobStatus.COMPLETE ? 'complete' : 'unfinished' }
}

/** What a retry writes, every field set, so a caller can report the job as it is now. */
export type RetryPatch = Required<Pick<JobPatch, 'status' | 'attempt' | 'dueAt'>>

/**
 * A retried job starts its run over as if new, due at once. Its last error stays: it is the
 * only record of why the job needed a retry.
 */
export function retryPatch(now: number): RetryPatch {
  return { status: JobStatus.NEW, attempt: 0, dueAt: now }
}

/** A finished job has its outcome already: too late to cancel it. */
export type CancelRefusal = 'finished'

export function canCancel(job: Pick<JobRecord, 'status'>): Verdict<CancelRefusal> {
  return isUnfinished(job.status) ? ALLOWED : { ok: false, reason: 'finished' }
}

/** Jobs of an unfinished status are ones a node would resume: removing them needs `force`. */
export type PurgeRefusal = 'unfinished'

export function canPurge(status: JobStatus, force: boolean): Verdict<PurgeRefusal> {
  return isUnfinished(status) && !force ? { ok: false, reason: 'unfinished' } : ALLOWED
}

// --- results -------------------------------------------------------------------------------

/** No stored job of this node has the id. */
export interface NotFound {
  ok: false
  reason: 'not found'
}

/** The rule refused; the store is unchanged. */
export interface Refused<Reason extends string> {
  ok: false
  reason: Reason
  /** The record as found. */
  job: JobRecord
}

/** Done: `job` is the record as it was before the retry, `patch` what changed in it. */
export type RetryResult = { ok: true; job: JobRecord; patch: RetryPatch } | NotFound | Refused<RetryRefusal>

export interface CancelOptions {
  /** Delete the record instead of marking it cancelled. */
  remove?: boolean
}

/** Done: `job` is the record as it was before the cancel. */
export type CancelResult =
  | { ok: true; job: JobRecord; action: 'cancelled' | 'removed' }
  | NotFound
  | Refused<CancelRefusal>

export interface PurgeOptions {
  /** Purge an unfinished status too. */
  force?: boolean
}

export type PurgeResult = { ok: true; removed: number } | { ok: false; reason: PurgeRefusal }

const NOT_FOUND: NotFound = { ok: false, reason: 'not found' }

// --- effects -------------------------------------------------------------------------------

/** The rules applied to one node's store. The clock is injected so tests can fix "now". */
export class StoreAdmin {
  constructor(
    private readonly store: AdminStore,
    private readonly clock: Pick<Clock, 'now'> = systemClock,
  ) {}

  /** In due order (ties by id), so a listing reads as the node would run the jobs. */
  async listJobs(filter: ListJobsFilter = {}): Promise<JobRecord[]> {
    const jobs = await this.store.listJobs(filter)
    return jobs.sort((a, b) => a.dueAt - b.dueAt || compare(a.id, b.id))
  }

  getJob(id: string): Promise<JobRecord | undefined> {
    return this.store.getJob(id)
  }

  /** By job id, then run. */
  async listFeedback(): Promise<FeedbackRecord[]> {
    const items = await this.store.listFeedback()
    return items.sort((a, b) => compare(a.jobId, b.jobId) || a.run - b.run)
  }

  async retryJob(id: string): Promise<RetryResult> {
    const job = await this.store.getJob(id)
    if (job === undefined) return NOT_FOUND
    const verdict = canRetry(job)
    if (!verdict.ok) return { ...verdict, job }
    const patch = retryPatch(this.clock.now())
    await this.store.updateJob(id, patch)
    return { ok: true, job, patch }
  }

  async cancelJob(id: string, options: CancelOptions = {}): Promise<CancelResult> {
    const job = await this.store.getJob(id)
    if (job === undefined) return NOT_FOUND
    const verdict = canCancel(job)
    if (!verdict.ok) return { ...verdict, job }
    if (options.remove === true) {
      await this.store.removeJob(id)
      return { ok: true, job, action: 'removed' }
    }
    await this.store.updateJob(id, { status: JobStatus.CANCELLED })
    return { ok: true, job, action: 'cancelled' }
  }

  /** Removes every job of `status`; resolves with how many. */
  async purgeJobs(status: JobStatus, options: PurgeOptions = {}): Promise<PurgeResult> {
    const verdict = canPurge(status, options.force === true)
    if (!verdict.ok) return verdict
    const ids = (await this.store.listJobs({ status })).map((j) => j.id)
    for (let i = 0; i < ids.length; i += PURGE_BATCH) {
      await Promise.all(ids.slice(i, i + PURGE_BATCH).map((id) => this.store.removeJob(id)))
    }
    return { ok: true, removed: ids.length }
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
