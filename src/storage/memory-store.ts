import { InvalidArgumentError, StoreError } from '../errors.js'
import type { ProgressValue } from '../protocol/messages.js'
import {
  type FeedbackId,
  type FeedbackRecord,
  type JobPage,
  type JobPatch,
  type JobRecord,
  JobStatus,
  type ListJobsFilter,
  type Store,
  isUnfinished,
} from './store.js'
import { RunIndex } from './run-index.js'

/**
 * Jobs and the feedback outbox in process memory. Not durable: the distributor keeps every
 * job it sent to a node with this store until the final feedback (see docs/architecture.md#at-least-once).
 *
 * Lifecycle: created → open → closed. Calls before open() or after close() reject with a
 * StoreError, as RedisStore's do, so code that forgets open() fails the same way on both.
 *
 * Records are copied in and out, so a caller mutating a record it saved or got cannot change
 * what is stored. `args` bytes are shared: they are immutable by convention and copying them
 * would cost a payload-sized allocation per job.
 */
export class MemoryStore implements Store {
  readonly durable = false
  private state: 'created' | 'open' | 'closed' = 'created'
  private readonly jobs = new Map<string, JobRecord>()
  private readonly outbox = new RunIndex<FeedbackRecord>((f) => f.run)
  /**
   * The failed jobs' ids → the number of their failure, in that order (a Map keeps insertion
   * order, and an id that fails again is deleted first, so the numbers only grow along it).
   * INVARIANT: an id is here exactly when its job is stored with status failed.
   */
  private readonly failed = new Map<string, number>()
  private failures = 0

  async open(): Promise<void> {
    if (this.state === 'closed') throw new StoreError('memory store is closed')
    this.state = 'open'
  }

  async ping(): Promise<void> {
    this.check()
  }

  async saveJobs(jobs: readonly JobRecord[]): Promise<void> {
    this.check()
    for (const job of jobs) {
      this.jobs.set(job.id, copyJob(job))
      this.indexFailed(job.id, job.status)
    }
  }

  async updateJob(id: string, patch: JobPatch): Promise<void> {
    this.check()
    const job = this.jobs.get(id)
    if (job !== undefined) this.patch(job, patch)
  }

  async finishRun(id: string, patch: JobPatch, feedback: FeedbackRecord, remove: boolean): Promise<void> {
    this.check()
    this.outbox.set(feedback.jobId, { ...feedback })
    if (remove) {
      this.jobs.delete(id)
      this.failed.delete(id)
      return
    }
    const job = this.jobs.get(id)
    if (job !== undefined) this.patch(job, patch)
  }

  async getJob(id: string): Promise<JobRecord | undefined> {
    this.check()
    const job = this.jobs.get(id)
    return job === undefined ? undefined : copyJob(job)
  }

  async removeJob(id: string): Promise<void> {
    this.check()
    this.jobs.delete(id)
    this.failed.delete(id)
  }

  // A scan rather than a second index: this runs once at start-up, and a memory store is
  // empty then.
  async listUnfinished(): Promise<JobRecord[]> {
    this.check()
    const out: JobRecord[] = []
    for (const job of this.jobs.values()) if (isUnfinished(job.status)) out.push(copyJob(job))
    return out
  }

  async listJobs(filter?: ListJobsFilter): Promise<JobRecord[]> {
    this.check()
    const status = filter?.status
    const out: JobRecord[] = []
    for (const job of this.jobs.values()) {
      if (status === undefined || job.status === status) out.push(copyJob(job))
    }
    return out
  }

  /**
   * In the order the jobs failed; the cursor is the number of the last failure given. A page
   * walks the ids before it (not their records): cheap in memory, where a node keeps no
   * failed job anyway (it is not durable).
   */
  async listFailedPage(cursor: string | undefined, count: number): Promise<JobPage> {
    this.check()
    if (!Number.isInteger(count) || count < 1) {
      throw new InvalidArgumentError(`'count' must be an integer ≥ 1, got ${String(count)}`)
    }
    const after = cursor === undefined ? 0 : Number(cursor)
    if (!Number.isInteger(after) || after < 0) {
      throw new InvalidArgumentError(`'cursor' must be a cursor from a page before, got ${JSON.stringify(cursor)}`)
    }
    const jobs: JobRecord[] = []
    let last = after
    for (const [id, failure] of this.failed) {
      if (failure <= after) continue
      if (jobs.length === count) return { jobs, next: String(last) }
      jobs.push(copyJob(this.jobs.get(id) as JobRecord))
      last = failure
    }
    return { jobs }
  }

  async listFeedback(): Promise<FeedbackRecord[]> {
    this.check()
    return this.outbox.values().map((f) => ({ ...f }))
  }

  async ackFeedback(refs: readonly FeedbackId[]): Promise<void> {
    this.check()
    for (const r of refs) this.outbox.delete(r.jobId, r.run)
  }

  async close(): Promise<void> {
    this.state = 'closed'
    this.jobs.clear()
    this.outbox.clear()
    this.failed.clear()
  }

  private patch(job: JobRecord, patch: JobPatch): void {
    applyPatch(job, patch)
    if (patch.status !== undefined) this.indexFailed(job.id, patch.status)
  }

  private indexFailed(id: string, status: JobStatus): void {
    // A failed job that stays failed keeps its place: a pager must not meet it twice.
    if (status !== JobStatus.FAILED) this.failed.delete(id)
    else if (!this.failed.has(id)) this.failed.set(id, ++this.failures)
  }

  private check(): void {
    if (this.state !== 'open') {
      throw new StoreError(`memory store is ${this.state === 'closed' ? 'closed' : 'not open'}`)
    }
  }
}

/**
 * Field by field rather than a spread: it drops optional properties that are present but
 * undefined (RedisStore cannot store those either), copies the nested objects, and gives
 * every stored record the same shape.
 */
function copyJob(r: JobRecord): JobRecord {
  const out: JobRecord = {
    id: r.id,
    name: r.name,
    args: r.args,
    status: r.status,
    attempt: r.attempt,
    run: r.run,
    dueAt: r.dueAt,
    runDueAt: r.runDueAt,
    defer: r.defer,
    distributor: r.distributor,
    createdAt: r.createdAt,
  }
  if (r.period !== undefined) out.period = r.period
  if (r.cron !== undefined) out.cron = r.cron
  if (r.tz !== undefined) out.tz = r.tz
  if (r.maxAttempt !== undefined) out.maxAttempt = r.maxAttempt
  if (r.retry !== undefined) out.retry = { ...r.retry }
  if (r.timeout !== undefined) out.timeout = r.timeout
  if (r.failedAt !== undefined) out.failedAt = r.failedAt
  if (r.lastError !== undefined) out.lastError = { ...r.lastError }
  if (r.progress !== undefined) out.progress = copyProgress(r.progress)
  return out
}

/** A number as it is; an object deeply (its values may nest), as a round trip through Redis would. */
function copyProgress(value: ProgressValue): ProgressValue {
  return typeof value === 'number' ? value : structuredClone(value)
}

/** A patch field set to undefined is left alone, as if it were absent. */
function applyPatch(job: JobRecord, patch: JobPatch): void {
  if (patch.status !== undefined) job.status = patch.status
  if (patch.attempt !== undefined) job.attempt = patch.attempt
  if (patch.run !== undefined) job.run = patch.run
  if (patch.dueAt !== undefined) job.dueAt = patch.dueAt
  if (patch.runDueAt !== undefined) job.runDueAt = patch.runDueAt
  if (patch.failedAt !== undefined) job.failedAt = patch.failedAt
  if (patch.lastError !== undefined) job.lastError = { ...patch.lastError }
  if (patch.distributor !== undefined) job.distributor = patch.distributor
  if (patch.progress !== undefined) job.progress = copyProgress(patch.progress)
}
