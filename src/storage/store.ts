import { InvalidArgumentError, type SerializedError } from '../errors.js'
import type { JobRunOptions, ProgressValue } from '../protocol/messages.js'

/**
 * Job lifecycle: new → in progress → complete | queued | error (→ in progress) | failed | cancelled.
 * `queued` means due and waiting for a free concurrency slot on the node.
 */
export const JobStatus = {
  NEW: 'new',
  QUEUED: 'queued',
  IN_PROGRESS: 'in progress',
  ERROR: 'error',
  COMPLETE: 'complete',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
} as const
export type JobStatus = (typeof JobStatus)[keyof typeof JobStatus]

/** Statuses a restarted node resumes. */
export const UNFINISHED_STATUSES: readonly JobStatus[] = [
  JobStatus.NEW,
  JobStatus.QUEUED,
  JobStatus.IN_PROGRESS,
  JobStatus.ERROR,
]

export function isUnfinished(status: JobStatus): boolean {
  return UNFINISHED_STATUSES.includes(status)
}

/**
 * What a node keeps of a job. Due times are absolute epoch milliseconds so that a restart
 * resumes at the original instant, never "relative to now".
 */
export interface JobRecord extends JobRunOptions {
  id: string
  name: string
  /** msgpack bytes of the args as enqueued; every attempt starts from these. */
  args: Uint8Array
  status: JobStatus
  /** Attempts started in the current run (1 on the first attempt). */
  attempt: number
  /** Periodic jobs: number of the current run, 1-based. Always 1 for one-shot jobs. */
  run: number
  /** When the next attempt is due (epoch ms). */
  dueAt: number
  /** Periodic jobs: due time of the current run, the base of the next one (no drift). */
  runDueAt: number
  /** The options it came with (JobRunOptions); `defer` is always recorded. */
  defer: boolean
  /** Key of the distributor the job came from (the address the node dialled). */
  distributor: string
  createdAt: number
  failedAt?: number
  lastError?: SerializedError
  /**
   * The last value the job reported with `ctx.progress`, in any attempt or run: a finite
   * number or a plain object. Absent on a job that never reported. A durable node writes it
   * at most once per coalesced send (docs/architecture.md#progress).
   */
  progress?: ProgressValue
}

/** The fields a node changes as a job moves through its lifecycle. */
export type JobPatch = Partial<
  Pick<
    JobRecord,
    'status' | 'attempt' | 'run' | 'dueAt' | 'runDueAt' | 'failedAt' | 'lastError' | 'distributor' | 'progress'
  >
>

export const FeedbackKind = { SUCCESS: 'success', ERROR: 'error' } as const
export type FeedbackKind = (typeof FeedbackKind)[keyof typeof FeedbackKind]

/** A result waiting in the node's outbox until the distributor acknowledges it. */
export interface FeedbackRecord {
  jobId: string
  /**
   * The job's name, sent with the feedback so that a distributor without a record of the
   * job runs the handler for that name. Absent when unknown (a record stored before it was kept).
   */
  name?: string
  /** Run number (periodic jobs send one feedback per run); with jobId, the dedup key. */
  run: number
  distributor: string
  kind: FeedbackKind
  /** True when nothing more will come for this job (one-shot done, or schedule ended). */
  final: boolean
  cancelled: boolean
  /** msgpack bytes of the final args. */
  args: Uint8Array
}

/** Which feedback: a job and its run. */
export interface FeedbackId {
  jobId: string
  run: number
}

export function feedbackKey(jobId: string, run: number): string {
  return `${jobId}:${run}`
}

export interface ListJobsFilter {
  status?: JobStatus
}

/** One page of a listing, and where the next one starts. */
export interface JobPage {
  jobs: JobRecord[]
  /**
   * Opaque: give it back for the page after this one. Absent when no job follows. A cursor
   * stays valid when jobs are removed or added meanwhile: a job failed for the whole paging
   * comes exactly once; one that failed or left meanwhile may come or not.
   */
  next?: string
}

/**
 * Storage in job operations, never in database commands. Every method resolves only once
 * the data is stored (for a durable store: acknowledged by the server), because callers
 * answer peers on the strength of it.
 */
export interface Store {
  /** True when stored jobs survive the process (a restarted node resumes them). */
  readonly durable: boolean
  /** Connects and prepares; rejects with a StoreError if the backend is unreachable. */
  open(): Promise<void>
  /** Resolves when the backend answers (cheaply: a node probes with it during an outage). */
  ping(): Promise<void>
  /**
   * Saves new jobs (one batch, one round trip where the backend allows). A record may carry
   * properties of the node's own beyond JobRecord's: store JobRecord's fields only.
   */
  saveJobs(jobs: readonly JobRecord[]): Promise<void>
  /** Updates some fields of a stored job; a missing job is ignored. */
  updateJob(id: string, patch: JobPatch): Promise<void>
  /**
   * Ends a run in one step: applies `patch`, puts `feedback` in the outbox, and removes the
   * job when `remove` is true, so a crash never leaves a finished job without its feedback.
   */
  finishRun(id: string, patch: JobPatch, feedback: FeedbackRecord, remove: boolean): Promise<void>
  getJob(id: string): Promise<JobRecord | undefined>
  removeJob(id: string): Promise<void>
  /**
   * Jobs with status new, queued, in progress or error. A store that reads them in parts
   * calls `progress` as each part arrives: a long listing that keeps answering is not a
   * hung store (see StoreGuard).
   */
  listUnfinished(progress?: () => void): Promise<JobRecord[]>
  /** Every stored job, optionally by status: for admin tools, not for the hot path. `progress`: as for listUnfinished. */
  listJobs(filter?: ListJobsFilter, progress?: () => void): Promise<JobRecord[]>
  /**
   * A page of at most `count` (≥ 1) failed jobs, after `cursor` (the `next` of the page
   * before; undefined for the first). Costs about the page, never a read of every failed
   * record: failed jobs are kept by default and pile up. In an order of the store's own,
   * the same for every page. Optional: a store without it is paged by failedJobsPage, through
   * listJobs (every failed record read per page).
   */
  listFailedPage?(cursor: string | undefined, count: number, progress?: () => void): Promise<JobPage>
  /** Feedback not yet acknowledged by its distributor. */
  listFeedback(): Promise<FeedbackRecord[]>
  /** The distributor acknowledged these feedbacks: drop them from the outbox (one round trip). */
  ackFeedback(refs: readonly FeedbackId[]): Promise<void>
  close(): Promise<void>
}

/**
 * Ownership of a node's stored jobs, for durable stores shared by several nodes. A lease is
 * held by a node name and expires unless renewed: a node renews its own while it lives, and
 * with takeover on, a peer that finds an expired lease may take it and finish the jobs.
 */
export interface NodeLeases {
  /**
   * Takes or renews the lease on `node`'s jobs for `holder` for `ttlMs`. Resolves the holder
   * after the call: `holder` itself when it got the lease, another name when that one holds
   * it (atomic: two peers racing for one lease cannot both win).
   */
  acquireLease(node: string, holder: string, ttlMs: number): Promise<string>
  /** Gives the lease up, if `holder` has it. */
  releaseLease(node: string, holder: string): Promise<void>
  /** Names of the nodes that have stored jobs here. */
  listNodes(): Promise<string[]>
  /** A store over another node's jobs, on the same connection. */
  forNode(node: string): Store
}

/**
 * A page of `store`'s failed jobs: its own listFailedPage, or for a store without one, a
 * page of its whole listing of failed jobs, the cursor an offset into it (a job removed
 * between pages shifts the rest: one may be skipped or come twice).
 */
export async function failedJobsPage(
  store: Store,
  cursor: string | undefined,
  count: number,
  progress?: () => void,
): Promise<JobPage> {
  if (!Number.isInteger(count) || count < 1) {
    throw new InvalidArgumentError(`'count' must be an integer ≥ 1, got ${String(count)}`)
  }
  if (store.listFailedPage !== undefined) return store.listFailedPage(cursor, count, progress)
  const offset = cursor === undefined ? 0 : Number(cursor)
  if (!Number.isInteger(offset) || offset < 0) {
    throw new InvalidArgumentError(`'cursor' must be a cursor from a page before, got ${JSON.stringify(cursor)}`)
  }
  const all = await store.listJobs({ status: JobStatus.FAILED }, progress)
  const jobs = all.slice(offset, offset + count)
  return offset + count < all.length ? { jobs, next: String(offset + count) } : { jobs }
}

export function hasLeases(store: Store): store is Store & NodeLeases {
  return typeof (store as Partial<NodeLeases>).acquireLease === 'function'
}
