import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decideAfterAttempt, type AfterAttemptSettings, type AttemptedJob } from '../../src/node/after-attempt.js'
import type { ChainOutcome } from '../../src/node/chain-runner.js'
import { JobStatus } from '../../src/storage/store.js'

// What follows an attempt, from plain data: no socket, no store, no clock.

const NOW = Date.UTC(2030, 0, 1)

const succeeded: ChainOutcome = { kind: 'success', cancelled: false }
/** `CancelJob` in the job or a callback. */
const cancelledByJob: ChainOutcome = { kind: 'success', cancelled: true }
const failed: ChainOutcome = { kind: 'error', cancelled: false, error: new Error('boom'), unrecoverable: false }
const unrecoverable: ChainOutcome = { kind: 'error', cancelled: false, error: new Error('no use'), unrecoverable: true }
/** `CancelJob` in an errback. */
const cancelledInErrback: ChainOutcome = {
  kind: 'error',
  cancelled: true,
  error: new Error('boom'),
  unrecoverable: false,
}

/** JobReactor's defaults: linear retries of 5 s × attempt, done and cancelled jobs removed. */
const defaults: AfterAttemptSettings = Object.freeze({
  retry: undefined,
  retryMultiplier: 5,
  removeDoneJobs: true,
  removeFailedJobs: false,
  removeCancelledJobs: true,
})

function settings(overrides: Partial<AfterAttemptSettings> = {}): AfterAttemptSettings {
  return Object.freeze({ ...defaults, ...overrides })
}

/** A one-shot job at its first attempt, due at NOW; frozen, so the decision cannot change it. */
function job(overrides: Partial<AttemptedJob> = {}): AttemptedJob {
  return Object.freeze({ attempt: 1, run: 1, runDueAt: NOW, cancelRequested: false, ...overrides })
}

const never = (): number => {
  throw new Error('random must not be called')
}

describe('decideAfterAttempt: failures', () => {
  it('a failure with attempts left is retried after the node’s linear backoff (attempt × retryMultiplier s)', () => {
    expect(decideAfterAttempt(job({ attempt: 1 }), failed, 10, defaults, NOW, never)).toEqual({
      kind: 'retry',
      delayMs: 5_000,
    })
    expect(decideAfterAttempt(job({ attempt: 3 }), failed, 10, defaults, NOW, never)).toEqual({
      kind: 'retry',
      delayMs: 15_000,
    })
  })

  it("the node's 'retry' policy wins over retryMultiplier, and the job's own policy wins over both", () => {
    const node = settings({ retry: { strategy: 'fixed', delay: 2 } })
    expect(decideAfterAttempt(job({ attempt: 4 }), failed, 10, node, NOW, never)).toEqual({
      kind: 'retry',
      delayMs: 2_000,
    })
    const own = job({ attempt: 4, retry: { strategy: 'linear', multiplier: 0.25 } })
    expect(decideAfterAttempt(own, failed, 10, node, NOW, never)).toEqual({ kind: 'retry', delayMs: 1_000 })
  })

  it('an exponential policy draws its jitter from the given random', () => {
    const own = job({ attempt: 3, retry: { strategy: 'exponential', base: 1, max: 60, jitter: 0.5 } })
    // 1 × 2^2 = 4 s, times a factor in [0.5, 1.5]: random 0 → 0.5, random 1 → 1.5.
    expect(decideAfterAttempt(own, failed, 10, defaults, NOW, () => 0)).toEqual({ kind: 'retry', delayMs: 2_000 })
    expect(decideAfterAttempt(own, failed, 10, defaults, NOW, () => 1)).toEqual({ kind: 'retry', delayMs: 6_000 })
  })

  it('the last attempt (attempt = maxAttempt) fails for good: final failed, kept by default', () => {
    expect(decideAfterAttempt(job({ attempt: 3 }), failed, 3, defaults, NOW, never)).toEqual({
      kind: 'final',
      status: JobStatus.FAILED,
      remove: false,
    })
    expect(decideAfterAttempt(job({ attempt: 1 }), failed, 1, defaults, NOW, never)).toEqual({
      kind: 'final',
      status: JobStatus.FAILED,
      remove: false,
    })
  })

  it('removeFailedJobs decides whether a failed job is removed', () => {
    const remove = settings({ removeFailedJobs: true })
    expect(decideAfterAttempt(job({ attempt: 2 }), failed, 2, remove, NOW, never)).toEqual({
      kind: 'final',
      status: JobStatus.FAILED,
      remove: true,
    })
  })

  it('an attempt past maxAttempt (resumed after a crash loop, or maxAttempt lowered) is not retried', () => {
    expect(decideAfterAttempt(job({ attempt: 7 }), failed, 5, defaults, NOW, never)).toMatchObject({
      kind: 'final',
      status: JobStatus.FAILED,
    })
  })

  it('an unrecoverable error (UnrecoverableError, an unknown job, args that do not decode) skips the attempts left', () => {
    expect(decideAfterAttempt(job({ attempt: 1 }), unrecoverable, 10, defaults, NOW, never)).toEqual({
      kind: 'final',
      status: JobStatus.FAILED,
      remove: false,
    })
  })

  it('CancelJob in an errback ends the job cancelled, with attempts left, removed per removeCancelledJobs', () => {
    expect(decideAfterAttempt(job(), cancelledInErrback, 10, defaults, NOW, never)).toEqual({
      kind: 'final',
      status: JobStatus.CANCELLED,
      remove: true,
    })
    const keep = settings({ removeCancelledJobs: false })
    expect(decideAfterAttempt(job(), cancelledInErrback, 10, keep, NOW, never)).toEqual({
      kind: 'final',
      status: JobStatus.CANCELLED,
      remove: false,
    })
  })
})

describe('decideAfterAttempt: rate-limited', () => {
  const pushedBack: ChainOutcome = { kind: 'rate-limited', cancelled: false, seconds: 2.5 }

  it('is due again after its seconds, whatever attempts are left (even the last one)', () => {
    expect(decideAfterAttempt(job({ attempt: 1 }), pushedBack, 1, defaults, NOW, never)).toEqual({
      kind: 'rate-limited',
      delayMs: 2_500,
    })
    expect(decideAfterAttempt(job({ attempt: 9 }), pushedBack, 3, defaults, NOW, never)).toEqual({
      kind: 'rate-limited',
      delayMs: 2_500,
    })
  })

  it('a scheduled run is retried after the pause, not skipped', () => {
    expect(decideAfterAttempt(job({ period: 1 }), pushedBack, 3, defaults, NOW + 10_000, never)).toEqual({
      kind: 'rate-limited',
      delayMs: 2_500,
    })
  })

  it('a cancel requested while it ran ends it cancelled, with no feedback', () => {
    expect(decideAfterAttempt(job({ cancelRequested: true }), pushedBack, 3, defaults, NOW, never)).toEqual({
      kind: 'cancelled',
      reportRun: false,
      remove: true,
    })
  })
})

describe('decideAfterAttempt: one-shot jobs that end', () => {
  it('success completes the job, removed per removeDoneJobs', () => {
    expect(decideAfterAttempt(job(), succeeded, 10, defaults, NOW, never)).toEqual({
      kind: 'final',
      status: JobStatus.COMPLETE,
      remove: true,
    })
    const keep = settings({ removeDoneJobs: false })
    expect(decideAfterAttempt(job(), succeeded, 10, keep, NOW, never)).toEqual({
      kind: 'final',
      status: JobStatus.COMPLETE,
      remove: false,
    })
  })

  it('CancelJob in the job or a callback ends it cancelled, removed per removeCancelledJobs', () => {
    expect(decideAfterAttempt(job(), cancelledByJob, 10, defaults, NOW, never)).toEqual({
      kind: 'final',
      status: JobStatus.CANCELLED,
      remove: true,
    })
    const keep = settings({ removeCancelledJobs: false })
    expect(decideAfterAttempt(job(), cancelledByJob, 10, keep, NOW, never)).toEqual({
      kind: 'final',
      status: JobStatus.CANCELLED,
      remove: false,
    })
  })
})

describe('decideAfterAttempt: a cancel requested while the attempt ran', () => {
  const requested = (overrides: Partial<AttemptedJob> = {}): AttemptedJob =>
    job({ cancelRequested: true, ...overrides })

  it('a failure with attempts left is not retried: the job ends cancelled, with no feedback of its own', () => {
    expect(decideAfterAttempt(requested(), failed, 10, defaults, NOW, never)).toEqual({
      kind: 'cancelled',
      reportRun: false,
      remove: true,
    })
  })

  it('removeCancelledJobs decides whether it is removed', () => {
    const keep = settings({ removeCancelledJobs: false })
    expect(decideAfterAttempt(requested(), failed, 10, keep, NOW, never)).toEqual({
      kind: 'cancelled',
      reportRun: false,
      remove: false,
    })
  })

  it('an unrecoverable failure, or a failure on the last attempt, ends cancelled too', () => {
    expect(decideAfterAttempt(requested(), unrecoverable, 10, defaults, NOW, never)).toEqual({
      kind: 'cancelled',
      reportRun: false,
      remove: true,
    })
    expect(decideAfterAttempt(requested({ attempt: 3 }), failed, 3, defaults, NOW, never)).toEqual({
      kind: 'cancelled',
      reportRun: false,
      remove: true,
    })
  })

  it('a one-shot job that succeeded simply completes (the cancel is answered "finished")', () => {
    expect(decideAfterAttempt(requested(), succeeded, 10, defaults, NOW, never)).toEqual({
      kind: 'final',
      status: JobStatus.COMPLETE,
      remove: true,
    })
  })

  it('a periodic run that succeeded ends the schedule, and still reports that run', () => {
    const periodic = requested({ period: 60 })
    expect(decideAfterAttempt(periodic, succeeded, 10, defaults, NOW, never)).toEqual({
      kind: 'cancelled',
      reportRun: true,
      remove: true,
    })
    const keep = settings({ removeCancelledJobs: false })
    expect(decideAfterAttempt(periodic, succeeded, 10, keep, NOW, never)).toEqual({
      kind: 'cancelled',
      reportRun: true,
      remove: false,
    })
  })

  it('a periodic run that failed ends the schedule with no report of that run', () => {
    expect(decideAfterAttempt(requested({ period: 60 }), failed, 10, defaults, NOW, never)).toEqual({
      kind: 'cancelled',
      reportRun: false,
      remove: true,
    })
  })

  it('a CancelJob of its own (in the job or in an errback) is not reported as a run either', () => {
    expect(decideAfterAttempt(requested(), cancelledByJob, 10, defaults, NOW, never)).toEqual({
      kind: 'cancelled',
      reportRun: false,
      remove: true,
    })
    expect(decideAfterAttempt(requested({ period: 60 }), cancelledByJob, 10, defaults, NOW, never)).toEqual({
      kind: 'cancelled',
      reportRun: false,
      remove: true,
    })
    expect(decideAfterAttempt(requested(), cancelledInErrback, 10, defaults, NOW, never)).toEqual({
      kind: 'cancelled',
      reportRun: false,
      remove: true,
    })
  })
})

describe('decideAfterAttempt: periodic jobs', () => {
  const periodic = (overrides: Partial<AttemptedJob> = {}): AttemptedJob =>
    job({ period: 10, run: 4, runDueAt: NOW, ...overrides })

  it('a run that succeeded on time: the next run is due one period after this one was due (no drift)', () => {
    // Ended 3 s after it was due: still due at runDueAt + period, not at now + period.
    expect(decideAfterAttempt(periodic(), succeeded, 10, defaults, NOW + 3_000, never)).toEqual({
      kind: 'next-run',
      run: 5,
      runDueAt: NOW + 10_000,
      dueAt: NOW + 10_000,
      missed: 0,
    })
  })

  it('a run that ended before it was due (a clock that stepped back) still moves one period on', () => {
    expect(decideAfterAttempt(periodic(), succeeded, 10, defaults, NOW - 5_000, never)).toMatchObject({
      run: 5,
      dueAt: NOW + 10_000,
      missed: 0,
    })
  })

  it('runs whose time passed (the node was down, the run took longer than a period) are skipped, not replayed', () => {
    // 25 s late: the runs due at +10 s and +20 s are skipped; the next is at +30 s.
    expect(decideAfterAttempt(periodic(), succeeded, 10, defaults, NOW + 25_000, never)).toEqual({
      kind: 'next-run',
      run: 7,
      runDueAt: NOW + 30_000,
      dueAt: NOW + 30_000,
      missed: 2,
    })
    // Exactly on a later run's due time: that run is due now.
    expect(decideAfterAttempt(periodic(), succeeded, 10, defaults, NOW + 20_000, never)).toMatchObject({
      run: 6,
      dueAt: NOW + 20_000,
      missed: 1,
    })
  })

  it('fractional periods count in ms', () => {
    expect(decideAfterAttempt(periodic({ period: 0.05 }), succeeded, 10, defaults, NOW + 1, never)).toMatchObject({
      run: 5,
      dueAt: NOW + 50,
    })
  })

  it('a run that failed for good does not end the schedule: the next run follows', () => {
    expect(decideAfterAttempt(periodic({ attempt: 3 }), failed, 3, defaults, NOW + 1_000, never)).toEqual({
      kind: 'next-run',
      run: 5,
      runDueAt: NOW + 10_000,
      dueAt: NOW + 10_000,
      missed: 0,
    })
    expect(decideAfterAttempt(periodic(), unrecoverable, 10, defaults, NOW, never)).toMatchObject({
      kind: 'next-run',
      run: 5,
    })
  })

  it('a failed run with attempts left is retried within the run (attempt counts per run)', () => {
    expect(decideAfterAttempt(periodic({ attempt: 1 }), failed, 3, defaults, NOW, never)).toEqual({
      kind: 'retry',
      delayMs: 5_000,
    })
  })

  it('CancelJob in a run ends the schedule: final cancelled, removed per removeCancelledJobs', () => {
    expect(decideAfterAttempt(periodic(), cancelledByJob, 10, defaults, NOW, never)).toEqual({
      kind: 'final',
      status: JobStatus.CANCELLED,
      remove: true,
    })
    const keep = settings({ removeCancelledJobs: false })
    expect(decideAfterAttempt(periodic(), cancelledInErrback, 10, keep, NOW, never)).toEqual({
      kind: 'final',
      status: JobStatus.CANCELLED,
      remove: false,
    })
  })

  it('the next run is the first point of the schedule’s grid after the run that ended, at or after now', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 1_000 }),
        fc.integer({ min: -1_000_000, max: 10_000_000 }),
        (periodMs, run, late) => {
          const ended = periodic({ period: periodMs / 1000, run })
          const next = decideAfterAttempt(ended, succeeded, 10, defaults, NOW + late, never)
          if (next.kind !== 'next-run') return false
          const step = next.run - run
          return (
            step >= 1 &&
            next.missed === step - 1 &&
            Math.abs(next.runDueAt - (NOW + step * periodMs)) < 1e-6 &&
            next.dueAt === next.runDueAt &&
            next.dueAt >= NOW + late - 1e-6 &&
            (step === 1 || next.dueAt - periodMs < NOW + late)
          )
        },
      ),
    )
  })
})

describe('decideAfterAttempt: a pure function', () => {
  it('reads its inputs only (they are frozen here) and gives the same answer for the same data', () => {
    const periodic = job({ period: 10 })
    const first = decideAfterAttempt(periodic, succeeded, 10, defaults, NOW + 1, never)
    expect(decideAfterAttempt(periodic, succeeded, 10, defaults, NOW + 1, never)).toEqual(first)
  })

  it('the decisions that carry no number are shared, frozen objects: the usual end of a job allocates nothing', () => {
    const a = decideAfterAttempt(job(), succeeded, 10, defaults, NOW, never)
    const b = decideAfterAttempt(job({ attempt: 5 }), succeeded, 10, defaults, NOW + 1, never)
    expect(b).toBe(a)
    expect(Object.isFrozen(a)).toBe(true)
    const c = decideAfterAttempt(job({ cancelRequested: true }), failed, 10, defaults, NOW, never)
    expect(decideAfterAttempt(job({ cancelRequested: true }), unrecoverable, 10, defaults, NOW, never)).toBe(c)
    expect(Object.isFrozen(c)).toBe(true)
  })
})
