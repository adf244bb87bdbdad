/**
 * Schedules as pure functions: a cron expression read in a time zone, and the step from one
 * run of a scheduled job (`period` or `cron`) to the next. No I/O, no clock: every instant
 * comes in as an argument (epoch ms).
 *
 * The calendar is croner's (docs/architecture.md, "Cron"): five fields, or six with seconds
 * first, the `@daily`-style nicknames, IANA zones. Daylight saving time follows Vixie cron:
 * a fixed time that falls in a spring-forward gap runs at the first instant after the gap,
 * one that occurs twice on a fall-back day runs once, at its first occurrence.
 */

import { Cron } from 'croner'
import { checkString, describe } from '../config.js'
import { InvalidArgumentError } from '../errors.js'

/**
 * The zone an expression is read in when no `tz` is given. UTC, not the node's zone: the
 * distributor computes the first run and a node the next ones, and nodes in different zones
 * (or a container at UTC beside a laptop that is not) must agree on when a job is due.
 */
export const DEFAULT_CRON_ZONE = 'UTC'

/**
 * Occurrences counted in `missed` after a node was down, at most. Counting walks the calendar
 * occurrence by occurrence (a fraction of a millisecond each); an every-second schedule after
 * a day down would walk 86,400 of them. Past the limit the next run is found in one step.
 */
export const MISSED_COUNT_LIMIT = 100

/** A cron expression read in a zone. */
export interface CronSchedule {
  readonly expression: string
  readonly zone: string
  /** The first occurrence strictly after `instant` (epoch ms). */
  next(instant: number): number
}

/** What decides when a job runs again: the options that make it a scheduled job. */
export interface ScheduleOptions {
  /** Seconds between runs. */
  readonly period?: number | undefined
  /** A cron expression. */
  readonly cron?: string | undefined
  /** The IANA zone `cron` is read in. */
  readonly tz?: string | undefined
}

/** The run that follows one, and how many the schedule skipped on the way. */
export interface NextRun {
  readonly run: number
  readonly runDueAt: number
  /** Runs whose time passed while the one before ran late or the node was down (capped for cron). */
  readonly missed: number
}

/** A job with a schedule (`period` or `cron`) runs again after each run; others run once. */
export function isScheduled(o: ScheduleOptions): boolean {
  return o.period !== undefined || o.cron !== undefined
}

// Parsed expressions by zone and expression: a node asks after every run, and a parse costs
// more than the step itself. Bounded: cleared when full (schedules are few and long-lived).
const CACHE_LIMIT = 1000
const cache = new Map<string, CronSchedule>()

/**
 * Reads `expression` in `zone` (default UTC). Throws InvalidArgumentError naming the bad
 * expression or zone: not a string, not five or six fields, a value out of range, a zone that
 * is not an IANA name, or an expression that never matches (`0 0 31 2 *`).
 */
export function parseCron(expression: unknown, zone: unknown = DEFAULT_CRON_ZONE): CronSchedule {
  const tz = checkString('tz', zone)
  const text = checkString('cron', expression)
  const key = `${tz}\u0000${text}`
  const known = cache.get(key)
  if (known !== undefined) return known
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz })
  } catch {
    throw new InvalidArgumentError(`'tz' must be an IANA time zone such as 'Europe/Berlin', got ${describe(zone)}`)
  }
  let cron: Cron
  try {
    // Five or six fields: croner's optional seventh (years) is not cron as users know it.
    cron = new Cron(text, { timezone: tz, paused: true, mode: '5-or-6-parts' })
  } catch (err) {
    const why = err instanceof Error ? err.message.replace(/^CronPattern: /, '') : String(err)
    throw new InvalidArgumentError(`'cron' ${describe(expression)} is not a cron expression: ${why}`, { cause: err })
  }
  if (cron.nextRun(new Date(0)) === null) {
    throw new InvalidArgumentError(`'cron' ${describe(expression)} never matches a date`)
  }
  const schedule: CronSchedule = {
    expression: text,
    zone: tz,
    next(instant) {
      // Every day-of-year comes round within 28 years, so a valid expression always has one.
      return (cron.nextRun(new Date(instant)) as Date).getTime()
    },
  }
  if (cache.size >= CACHE_LIMIT) cache.clear()
  cache.set(key, schedule)
  return schedule
}

/** The schedule's first run: its first occurrence at or after `from` (enqueue, or `after`/`runAt`). */
export function firstRunAt(schedule: CronSchedule, from: number): number {
  return schedule.next(from - 1)
}

/**
 * The run after run `run`, due at `runDueAt`, that ended at `now` (`o` must be scheduled).
 * No drift: a `period` run is due a whole number of periods after `runDueAt`, a `cron` run at
 * an occurrence of the expression. Runs whose time passed by `now` are skipped, not replayed:
 * the next run is the first one due at or after `now`. Run numbers of a `period` job count the
 * skipped runs too (run n is due n - 1 periods after the first); those of a `cron` job count
 * the runs that happened, since counting skipped occurrences means walking the calendar.
 */
export function nextRun(o: ScheduleOptions, run: number, runDueAt: number, now: number): NextRun {
  if (o.cron === undefined) {
    const periodMs = (o.period as number) * 1000
    const step = Math.max(1, Math.ceil((now - runDueAt) / periodMs))
    return { run: run + step, runDueAt: runDueAt + step * periodMs, missed: step - 1 }
  }
  const schedule = parseCron(o.cron, o.tz)
  let due = schedule.next(runDueAt)
  let missed = 0
  // A run due exactly at `now` is due now, as with `period`: not missed.
  while (due < now && missed < MISSED_COUNT_LIMIT) {
    missed++
    due = schedule.next(due)
  }
  if (due < now) due = schedule.next(now - 1)
  return { run: run + 1, runDueAt: due, missed }
}

/**
 * When run `run` of a scheduled job is due, as far as a distributor can tell from the run it
 * knows (`knownRun`, due at `knownDueAt`) without the node's clock: exact for `period`, whose
 * runs are whole periods apart; for `cron`, whose runs are numbered as they happen, the known
 * due time (run numbers do not say how many occurrences lie between).
 */
export function runDueAtOf(o: ScheduleOptions, run: number, knownRun: number, knownDueAt: number): number {
  if (o.cron !== undefined || o.period === undefined) return knownDueAt
  return knownDueAt + (run - knownRun) * o.period * 1000
}
