import { describe, expect, it } from 'vitest'
import { resolveEnqueueOptions } from '../../src/distributor/options.js'
import { ErrorCode, InvalidArgumentError } from '../../src/errors.js'
import { decideAfterAttempt, type AfterAttemptSettings, type AttemptedJob } from '../../src/node/after-attempt.js'
import type { ChainOutcome } from '../../src/node/chain-runner.js'
import { AttemptContext } from '../../src/node/job-context.js'
import type { LiveJob } from '../../src/node/live-jobs.js'
import { MemoryStore } from '../../src/storage/memory-store.js'
import { createLogger } from '../../src/logger.js'
import { JobStatus, type JobRecord } from '../../src/storage/store.js'
import {
  MISSED_COUNT_LIMIT,
  firstRunAt,
  isScheduled,
  nextRun,
  parseCron,
  runDueAtOf,
} from '../../src/scheduling/cron.js'

// Cron schedules on fake time: every instant is an argument, nothing waits.

const succeeded: ChainOutcome = { kind: 'success', cancelled: false }
const failed: ChainOutcome = { kind: 'error', cancelled: false, error: new Error('boom'), unrecoverable: false }
const settings: AfterAttemptSettings = Object.freeze({
  retry: undefined,
  retryMultiplier: 5,
  removeDoneJobs: true,
  removeFailedJobs: false,
  removeCancelledJobs: true,
})

const iso = (ms: number): string => new Date(ms).toISOString()
const at = (text: string): number => Date.parse(text)

/**
 * The due times of the first `n` runs of a cron job enqueued at `enqueuedAt`, as a node runs
 * them: each run takes `runMs` and the next one is what decideAfterAttempt says.
 */
function runs(cron: string, tz: string | undefined, enqueuedAt: number, n: number, runMs = 50): string[] {
  const { dueAt, job } = resolveEnqueueOptions({ cron, tz }, enqueuedAt)
  let record: AttemptedJob = { ...job, attempt: 1, run: 1, runDueAt: dueAt, cancelRequested: false }
  const due = [iso(dueAt)]
  while (due.length < n) {
    const next = decideAfterAttempt(record, succeeded, 10, settings, record.runDueAt + runMs)
    if (next.kind !== 'next-run') throw new Error(`expected a next run, got ${next.kind}`)
    expect(next.run).toBe(record.run + 1)
    expect(next.missed).toBe(0)
    record = { ...record, run: next.run, runDueAt: next.runDueAt }
    due.push(iso(next.dueAt))
  }
  return due
}

describe('cron: the calendar', () => {
  it('a weekday schedule over two weeks in Berlin (CET, UTC+1): every due time, no weekend', () => {
    // Enqueued on Friday 4 January 2030 at noon, after that day's 09:00.
    expect(runs('0 9 * * 1-5', 'Europe/Berlin', at('2030-01-04T12:00:00Z'), 10)).toEqual([
      '2030-01-07T08:00:00.000Z', // Mon
      '2030-01-08T08:00:00.000Z',
      '2030-01-09T08:00:00.000Z',
      '2030-01-10T08:00:00.000Z',
      '2030-01-11T08:00:00.000Z', // Fri
      '2030-01-14T08:00:00.000Z', // Mon
      '2030-01-15T08:00:00.000Z',
      '2030-01-16T08:00:00.000Z',
      '2030-01-17T08:00:00.000Z',
      '2030-01-18T08:00:00.000Z', // Fri
    ])
  })

  it('five fields, six with seconds first, and @-nicknames; UTC when no zone is given', () => {
    const t = at('2030-01-01T10:00:00.500Z')
    expect(runs('* * * * * *', undefined, t, 3)).toEqual([
      '2030-01-01T10:00:01.000Z',
      '2030-01-01T10:00:02.000Z',
      '2030-01-01T10:00:03.000Z',
    ])
    expect(runs('*/15 * * * *', undefined, t, 2)).toEqual(['2030-01-01T10:15:00.000Z', '2030-01-01T10:30:00.000Z'])
    expect(runs('@daily', undefined, t, 2)).toEqual(['2030-01-02T00:00:00.000Z', '2030-01-03T00:00:00.000Z'])
    expect(runs('@hourly', undefined, t, 1)).toEqual(['2030-01-01T11:00:00.000Z'])
    // 1 January 2030 is a Tuesday: @weekly is Sunday midnight.
    expect(runs('@weekly', undefined, t, 1)).toEqual(['2030-01-06T00:00:00.000Z'])
    expect(runs('@monthly', undefined, t, 1)).toEqual(['2030-02-01T00:00:00.000Z'])
  })

  it('the first run is the first occurrence at or after enqueue, or after `after` / `runAt`', () => {
    const nine = at('2030-01-07T09:00:00Z')
    expect(resolveEnqueueOptions({ cron: '0 9 * * *' }, nine).dueAt).toBe(nine)
    expect(resolveEnqueueOptions({ cron: '0 9 * * *' }, nine + 1).dueAt).toBe(nine + 86_400_000)
    expect(resolveEnqueueOptions({ cron: '0 9 * * *', after: 3600 }, nine - 7_200_000).dueAt).toBe(nine)
    expect(resolveEnqueueOptions({ cron: '0 9 * * *', runAt: new Date(nine + 1) }, 0).dueAt).toBe(nine + 86_400_000)
  })
})

describe('cron: daylight saving time', () => {
  // 2030: Berlin springs forward on 31 March (02:00 CET → 03:00 CEST) and falls back on
  // 27 October (03:00 CEST → 02:00 CET); New York on 10 March (02:00 EST → 03:00 EDT) and
  // 3 November (02:00 EDT → 01:00 EST).

  it('Berlin, 02:30 on the spring-forward day (no such time): runs at 03:00 CEST, the first instant after the gap', () => {
    expect(runs('30 2 * * *', 'Europe/Berlin', at('2030-03-29T12:00:00Z'), 3)).toEqual([
      '2030-03-30T01:30:00.000Z', // 02:30 CET
      '2030-03-31T01:00:00.000Z', // 03:00 CEST
      '2030-04-01T00:30:00.000Z', // 02:30 CEST
    ])
  })

  it('Berlin, 02:30 on the fall-back day (twice): runs once, at the first 02:30 (CEST)', () => {
    expect(runs('30 2 * * *', 'Europe/Berlin', at('2030-10-25T12:00:00Z'), 3)).toEqual([
      '2030-10-26T00:30:00.000Z', // 02:30 CEST
      '2030-10-27T00:30:00.000Z', // the first 02:30 (CEST); not again at 01:30Z (CET)
      '2030-10-28T01:30:00.000Z', // 02:30 CET
    ])
  })

  it('Berlin, 01:30 is outside both changes: every day at 01:30 local', () => {
    expect(runs('30 1 * * *', 'Europe/Berlin', at('2030-10-26T12:00:00Z'), 2)).toEqual([
      '2030-10-26T23:30:00.000Z', // 01:30 CEST
      '2030-10-28T00:30:00.000Z', // 01:30 CET, the day after
    ])
  })

  it('New York, 02:30 on the spring-forward day (no such time): runs at 03:00 EDT', () => {
    expect(runs('30 2 * * *', 'America/New_York', at('2030-03-08T12:00:00Z'), 3)).toEqual([
      '2030-03-09T07:30:00.000Z', // 02:30 EST
      '2030-03-10T07:00:00.000Z', // 03:00 EDT
      '2030-03-11T06:30:00.000Z', // 02:30 EDT
    ])
  })

  it('New York, 01:30 on the fall-back day (twice): runs once, at the first 01:30 (EDT)', () => {
    expect(runs('30 1 * * *', 'America/New_York', at('2030-11-01T12:00:00Z'), 3)).toEqual([
      '2030-11-02T05:30:00.000Z', // 01:30 EDT
      '2030-11-03T05:30:00.000Z', // the first 01:30 (EDT); not again at 06:30Z (EST)
      '2030-11-04T06:30:00.000Z', // 01:30 EST
    ])
  })

  it('an interval schedule keeps real time across the repeated hour: hourly runs every real hour', () => {
    expect(runs('0 * * * *', 'America/New_York', at('2030-11-03T04:30:00Z'), 4)).toEqual([
      '2030-11-03T05:00:00.000Z', // 01:00 EDT
      '2030-11-03T06:00:00.000Z', // 01:00 EST
      '2030-11-03T07:00:00.000Z', // 02:00 EST
      '2030-11-03T08:00:00.000Z',
    ])
  })
})

describe('cron: runs of a schedule', () => {
  const weekdays = { cron: '0 9 * * 1-5', tz: 'Europe/Berlin' }
  const monday = at('2030-01-07T08:00:00Z')

  it('a node down across three scheduled runs runs once on return, then on the calendar again', () => {
    // Run 3 was due on Monday at 09:00; the node was down until Thursday 11:00. It runs that
    // run once when it is back; Tuesday, Wednesday and Thursday 09:00 are not replayed.
    const back = at('2030-01-10T10:00:00Z')
    const job: AttemptedJob = { ...weekdays, attempt: 1, run: 3, runDueAt: monday, cancelRequested: false }
    expect(decideAfterAttempt(job, succeeded, 10, settings, back + 200)).toEqual({
      kind: 'next-run',
      run: 4,
      runDueAt: at('2030-01-11T08:00:00Z'),
      dueAt: at('2030-01-11T08:00:00Z'),
      missed: 3,
    })
  })

  it('a run due exactly when the last one ended is due now, not missed', () => {
    expect(nextRun(weekdays, 1, monday, at('2030-01-08T08:00:00Z'))).toEqual({
      run: 2,
      runDueAt: at('2030-01-08T08:00:00Z'),
      missed: 0,
    })
  })

  it(`counts at most ${MISSED_COUNT_LIMIT} missed runs, and still finds the next one after a long outage`, () => {
    const start = at('2030-01-01T00:00:00Z')
    const dayLater = start + 86_400_000 + 500
    expect(nextRun({ cron: '* * * * * *' }, 1, start, dayLater)).toEqual({
      run: 2,
      runDueAt: start + 86_401_000,
      missed: MISSED_COUNT_LIMIT,
    })
  })

  it('a failed run (retries exhausted) does not end the schedule; attempt counts per run', () => {
    const job: AttemptedJob = { ...weekdays, attempt: 3, run: 1, runDueAt: monday, cancelRequested: false }
    expect(decideAfterAttempt(job, failed, 3, settings, monday + 30_000)).toMatchObject({
      kind: 'next-run',
      run: 2,
      dueAt: at('2030-01-08T08:00:00Z'),
    })
    // Within a run, a failure with attempts left is a retry of that run, not a next run.
    expect(decideAfterAttempt({ ...job, attempt: 1 }, failed, 3, settings, monday + 1000)).toMatchObject({
      kind: 'retry',
    })
  })

  it("a CancelJob ends a cron job; the application's cancel ends it after the run", () => {
    const job: AttemptedJob = { ...weekdays, attempt: 1, run: 1, runDueAt: monday, cancelRequested: false }
    expect(decideAfterAttempt(job, { kind: 'success', cancelled: true }, 3, settings, monday)).toMatchObject({
      kind: 'final',
      status: 'cancelled',
    })
    expect(decideAfterAttempt({ ...job, cancelRequested: true }, succeeded, 3, settings, monday)).toMatchObject({
      kind: 'cancelled',
      reportRun: true,
    })
  })

  it("the distributor's step: one occurrence on from the run reported; for `period`, exact from the run it knows", () => {
    const due = runDueAtOf(weekdays, 5, 5, at('2030-01-11T08:00:00Z'))
    expect(nextRun(weekdays, 5, due, due)).toEqual({ run: 6, runDueAt: at('2030-01-14T08:00:00Z'), missed: 0 })
    // A period job whose node skipped runs 2 and 3: run 4 was due 3 periods after run 1.
    expect(runDueAtOf({ period: 10 }, 4, 1, monday)).toBe(monday + 30_000)
  })

  it("ctx says the run's due time and the next one, for `cron` and `period` jobs; none for a one-shot job", () => {
    const ctxOf = (o: Partial<JobRecord>): AttemptContext => {
      const record: JobRecord = {
        id: 'j',
        name: 'n',
        args: new Uint8Array(),
        status: JobStatus.IN_PROGRESS,
        attempt: 1,
        run: 2,
        dueAt: monday,
        runDueAt: monday,
        defer: false,
        distributor: 'd',
        createdAt: 0,
        ...o,
      }
      const job: LiveJob = {
        ...record,
        phase: 'running',
        cancelRequested: false,
        store: new MemoryStore(),
        timerIndex: -1,
      }
      return new AttemptContext(job, 'w1', createLogger('silent'), {
        signalOf: () => new AbortController().signal,
        progress: () => {},
      })
    }
    const cron = ctxOf(weekdays)
    expect([cron.dueAt, cron.nextDueAt, cron.cron, cron.tz]).toEqual([
      monday,
      at('2030-01-08T08:00:00Z'),
      weekdays.cron,
      weekdays.tz,
    ])
    expect(cron.toPlain()).toMatchObject({ nextDueAt: at('2030-01-08T08:00:00Z'), cron: weekdays.cron })
    // A retry of the run is due later; the next run still follows the run's own due time.
    expect(ctxOf({ ...weekdays, attempt: 2, dueAt: monday + 5000 }).nextDueAt).toBe(at('2030-01-08T08:00:00Z'))
    expect(ctxOf({ period: 60 }).nextDueAt).toBe(monday + 60_000)
    expect(ctxOf({}).nextDueAt).toBeUndefined()
  })

  it('only jobs with `period` or `cron` are scheduled', () => {
    expect(isScheduled({})).toBe(false)
    expect(isScheduled({ period: 1 })).toBe(true)
    expect(isScheduled({ cron: '@daily' })).toBe(true)
  })
})

describe('cron: what enqueue refuses', () => {
  function refusal(opts: object): InvalidArgumentError {
    try {
      resolveEnqueueOptions(opts, 0)
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidArgumentError)
      expect((err as InvalidArgumentError).code).toBe(ErrorCode.INVALID_ARG)
      return err as InvalidArgumentError
    }
    throw new Error(`${JSON.stringify(opts)} was accepted`)
  }

  it('a bad expression, named', () => {
    expect(refusal({ cron: '61 * * * *' }).message).toBe(
      `'cron' "61 * * * *" is not a cron expression: Invalid value for minute: 61`,
    )
    expect(refusal({ cron: 'every day' }).message).toMatch(/^'cron' "every day" is not a cron expression: /)
    // Seven fields (croner's years) are not cron as users know it.
    expect(refusal({ cron: '0 0 9 * * 1-5 2030' }).message).toMatch(/^'cron' "0 0 9 \* \* 1-5 2030" is not a cron/)
    expect(refusal({ cron: '@reboot' }).message).toMatch(/^'cron' "@reboot" is not a cron expression/)
    expect(refusal({ cron: '0 0 31 2 *' }).message).toBe(`'cron' "0 0 31 2 *" never matches a date`)
  })

  it('a bad zone, named', () => {
    expect(refusal({ cron: '@daily', tz: 'Mars/Olympus_Mons' }).message).toBe(
      `'tz' must be an IANA time zone such as 'Europe/Berlin', got "Mars/Olympus_Mons"`,
    )
    expect(() => parseCron('@daily', 'Europe/Nowhere')).toThrow(/'tz' .* got "Europe\/Nowhere"/)
  })

  it('bad types, `cron` with `period`, and `tz` without `cron`', () => {
    expect(refusal({ cron: 9 }).message).toBe(`'cron' must be a non-empty string, got 9`)
    expect(refusal({ cron: '' }).message).toBe(`'cron' must be a non-empty string, got ""`)
    expect(refusal({ cron: '@daily', tz: 1 }).message).toBe(`'tz' must be a non-empty string, got 1`)
    expect(refusal({ cron: '@daily', period: 60 }).message).toBe(`'cron' and 'period' are exclusive: give one`)
    expect(refusal({ tz: 'Europe/Berlin' }).message).toBe(`'tz' is the time zone of a 'cron' schedule: give 'cron' too`)
  })

  it('keeps the zone as given, and none when none was given (UTC)', () => {
    expect(resolveEnqueueOptions({ cron: '@daily', tz: 'Asia/Tokyo' }, 0).job).toMatchObject({
      cron: '@daily',
      tz: 'Asia/Tokyo',
    })
    expect(resolveEnqueueOptions({ cron: '@daily' }, 0).job.tz).toBeUndefined()
    expect(firstRunAt(parseCron('@daily', 'Asia/Tokyo'), at('2030-01-01T00:00:00Z'))).toBe(at('2030-01-01T15:00:00Z'))
  })
})
