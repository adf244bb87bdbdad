import { retryPolicyOf, type Config } from '../config.js'
import { isScheduled, nextRun } from '../scheduling/cron.js'
import { computeBackoff, shouldRetry, type RetryPolicy } from '../scheduling/retry.js'
import { JobStatus } from '../storage/store.js'
import type { ChainOutcome } from './chain-runner.js'

/** What the decision reads of the job whose attempt ended: plain fields of its record. */
export interface AttemptedJob {
  /** The attempt that just ended, from 1. */
  readonly attempt: number
  /** The run it belongs to (scheduled jobs count runs from 1; others have run 1). */
  readonly run: number
  /** When this run was due (epoch ms): the base of the next run's due time. */
  readonly runDueAt: number
  /** Seconds between runs of a periodic job. */
  readonly period?: number | undefined
  /** The cron expression of a cron job, read in `tz`. */
  readonly cron?: string | undefined
  readonly tz?: string | undefined
  /** The job's own retry policy, if it has one. */
  readonly retry?: RetryPolicy | undefined
  /** The application asked to cancel it while this attempt ran. */
  readonly cancelRequested: boolean
}

/** The node's settings the decision reads (the live `Config`). */
export type AfterAttemptSettings = Pick<
  Config,
  'retry' | 'retryMultiplier' | 'removeDoneJobs' | 'removeFailedJobs' | 'removeCancelledJobs'
>

/** How a job that ends here ends. */
export type FinalStatus = typeof JobStatus.COMPLETE | typeof JobStatus.FAILED | typeof JobStatus.CANCELLED

/** What follows an attempt; the node carries it out (store write, feedback, timer, events). */
export type AttemptDecision =
  /** Failed with attempts left: due again `delayMs` from now, stored as 'error'. No feedback. */
  | { readonly kind: 'retry'; readonly delayMs: number }
  /**
   * The chain threw `RateLimited`: the attempt is given back (the next one has the same
   * number), the job is due again `delayMs` from now, stored as 'error' with its last error
   * kept. No feedback, no failure; its distributor holds back its name (or key) meanwhile.
   * A scheduled job's run is retried so, not skipped.
   */
  | { readonly kind: 'rate-limited'; readonly delayMs: number }
  /**
   * A run of a scheduled job (`period` or `cron`) ended (success, or failure for good): that
   * run's feedback (not final), and the schedule goes on with run `run`, due at `dueAt`. No
   * drift: it is due a whole number of periods after the run that ended was due, or at an
   * occurrence of the cron expression; `missed` runs whose time passed (the node was down,
   * or the run took longer than the period) are skipped, not replayed (see `nextRun`).
   */
  | {
      readonly kind: 'next-run'
      readonly run: number
      readonly runDueAt: number
      readonly dueAt: number
      readonly missed: number
    }
  /** The job ends with `status` and final feedback; `remove`: its record is deleted. */
  | { readonly kind: 'final'; readonly status: FinalStatus; readonly remove: boolean }
  /**
   * The application's cancel, heard while the attempt ran, ends the job as cancelled, with
   * no retry and no next run. `reportRun`: a scheduled run that succeeded still sends that
   * run's success feedback (not final); otherwise there is no feedback, only the cancel's
   * answer.
   */
  | { readonly kind: 'cancelled'; readonly reportRun: boolean; readonly remove: boolean }

// The decisions that carry no number are shared: the usual end of a job allocates nothing.
const COMPLETE_KEPT: AttemptDecision = Object.freeze({ kind: 'final', status: JobStatus.COMPLETE, remove: false })
const COMPLETE_REMOVED: AttemptDecision = Object.freeze({ kind: 'final', status: JobStatus.COMPLETE, remove: true })
const FAILED_KEPT: AttemptDecision = Object.freeze({ kind: 'final', status: JobStatus.FAILED, remove: false })
const FAILED_REMOVED: AttemptDecision = Object.freeze({ kind: 'final', status: JobStatus.FAILED, remove: true })
const CANCELLED_KEPT: AttemptDecision = Object.freeze({ kind: 'final', status: JobStatus.CANCELLED, remove: false })
const CANCELLED_REMOVED: AttemptDecision = Object.freeze({ kind: 'final', status: JobStatus.CANCELLED, remove: true })
const STOPPED_KEPT: AttemptDecision = Object.freeze({ kind: 'cancelled', reportRun: false, remove: false })
const STOPPED_REMOVED: AttemptDecision = Object.freeze({ kind: 'cancelled', reportRun: false, remove: true })
const STOPPED_REPORTED_KEPT: AttemptDecision = Object.freeze({ kind: 'cancelled', reportRun: true, remove: false })
const STOPPED_REPORTED_REMOVED: AttemptDecision = Object.freeze({ kind: 'cancelled', reportRun: true, remove: true })

/**
 * Decides what follows an attempt, from plain data: no store, no socket, no clock (`now` is
 * the time the attempt ended, `random` feeds the backoff's jitter). In order:
 *
 * 0. A chain that threw `RateLimited`, with no cancel requested: `rate-limited` after its
 *    seconds, whatever attempts are left (with a cancel requested: `cancelled`, no feedback).
 * 1. A failure (not a `CancelJob`) that is not unrecoverable (`UnrecoverableError`, an
 *    unknown job, args that do not decode), with no cancel requested and attempts left
 *    (`attempt < maxAttempt`): `retry` after `computeBackoff` of the job's policy, else the
 *    node's (`retry`, or linear by `retryMultiplier`).
 * 2. A cancel requested while it ran: `cancelled`, unless the attempt succeeded and the job
 *    is not scheduled (that job simply completes, and the cancel is answered `finished`).
 * 3. A scheduled job (`period` or `cron`) whose run was not ended by a `CancelJob`: `next-run`.
 * 4. Otherwise `final`: 'cancelled' (a `CancelJob`), 'complete' or 'failed', removed per
 *    `removeCancelledJobs`, `removeDoneJobs` or `removeFailedJobs`.
 */
export function decideAfterAttempt(
  job: AttemptedJob,
  outcome: ChainOutcome,
  maxAttempt: number,
  settings: AfterAttemptSettings,
  now: number,
  random: () => number = Math.random,
): AttemptDecision {
  if (outcome.kind === 'rate-limited') {
    if (!job.cancelRequested) return { kind: 'rate-limited', delayMs: outcome.seconds * 1000 }
    return settings.removeCancelledJobs ? STOPPED_REMOVED : STOPPED_KEPT
  }
  if (
    outcome.kind === 'error' &&
    !outcome.cancelled &&
    !outcome.unrecoverable &&
    !job.cancelRequested &&
    shouldRetry(job.attempt, maxAttempt)
  ) {
    return { kind: 'retry', delayMs: computeBackoff(job.retry ?? retryPolicyOf(settings), job.attempt, random) }
  }
  const succeeded = outcome.kind === 'success' && !outcome.cancelled
  const scheduled = isScheduled(job)
  if (job.cancelRequested && !(succeeded && !scheduled)) {
    if (succeeded) return settings.removeCancelledJobs ? STOPPED_REPORTED_REMOVED : STOPPED_REPORTED_KEPT
    return settings.removeCancelledJobs ? STOPPED_REMOVED : STOPPED_KEPT
  }
  if (scheduled && !outcome.cancelled) {
    const next = nextRun(job, job.run, job.runDueAt, now)
    return { kind: 'next-run', run: next.run, runDueAt: next.runDueAt, dueAt: next.runDueAt, missed: next.missed }
  }
  if (outcome.cancelled) return settings.removeCancelledJobs ? CANCELLED_REMOVED : CANCELLED_KEPT
  if (outcome.kind === 'success') return settings.removeDoneJobs ? COMPLETE_REMOVED : COMPLETE_KEPT
  return settings.removeFailedJobs ? FAILED_REMOVED : FAILED_KEPT
}
