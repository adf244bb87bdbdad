import { checkKnownKeys, checkNumber, describe } from '../config.js'
import { InvalidArgumentError } from '../errors.js'
import type { TrackedJobState } from './tracked-job.js'

/**
 * How a key holds (docs/configuration.md, "Unique jobs"):
 *   until-finished → while the job with the key is unfinished, a duplicate creates nothing
 *   throttle       → for `ttl` seconds after the first enqueue, finished or not
 *   replace        → as until-finished, but a duplicate replaces the args and due time of
 *                    the job while it still waits at the distributor (debounce)
 */
export type UniqueMode = 'until-finished' | 'throttle' | 'replace'

/** The `unique` enqueue option. */
export interface UniqueOptions {
  /** The key: one job per key and job name at a time. 1..1024 characters. */
  key: string
  /** @default 'until-finished' */
  mode?: UniqueMode
  /** Seconds the key holds after the first enqueue: required for 'throttle', refused otherwise. */
  ttl?: number
}

export interface ResolvedUniqueOptions {
  key: string
  mode: UniqueMode
  /** Milliseconds, for 'throttle' only. */
  ttlMs: number | undefined
}

/** Long enough for any composite key (tenant, entity, date), short enough to bound what a key costs. */
export const MAX_UNIQUE_KEY_LENGTH = 1024

const UNIQUE_KEYS: readonly string[] = ['key', 'mode', 'ttl']
const MODES: readonly string[] = ['until-finished', 'throttle', 'replace']

/** Validates `unique`; `scheduled`: the job has `period` or `cron`. */
export function resolveUniqueOptions(input: unknown, scheduled: boolean): ResolvedUniqueOptions {
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    throw new InvalidArgumentError(`'unique' must be an object { key, mode?, ttl? }, got ${describe(input)}`)
  const o = input as Record<string, unknown>
  checkKnownKeys('unique', o, UNIQUE_KEYS)
  const key = o['key']
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_UNIQUE_KEY_LENGTH)
    throw new InvalidArgumentError(
      `'unique.key' must be a string of 1..${MAX_UNIQUE_KEY_LENGTH} characters, got ${describe(key)}`,
    )
  const mode = o['mode'] ?? 'until-finished'
  if (typeof mode !== 'string' || !MODES.includes(mode))
    throw new InvalidArgumentError(`'unique.mode' must be one of ${MODES.join(', ')}, got ${describe(mode)}`)
  let ttlMs: number | undefined
  if (mode === 'throttle') {
    if (o['ttl'] === undefined) throw new InvalidArgumentError(`'unique.ttl' is required with mode 'throttle'`)
    ttlMs = Math.round(checkNumber('unique.ttl', o['ttl'], 0.001) * 1000)
    // A schedule never finishes: its key holds while it lasts, and a ttl would let a second one in.
    if (scheduled)
      throw new InvalidArgumentError(
        `'unique.mode' 'throttle' does not apply to a 'period' or 'cron' job: its key holds while the schedule lasts`,
      )
  } else if (o['ttl'] !== undefined) {
    throw new InvalidArgumentError(`'unique.ttl' applies to mode 'throttle' only, not '${mode}'`)
  }
  return { key, mode: mode as UniqueMode, ttlMs }
}

/** The job holding a key, as the decision sees it. */
export interface HolderView {
  state: TrackedJobState
  /** It has `period` or `cron`. */
  scheduled: boolean
  /** Same name, args and options as the new enqueue (asked only when a schedule is involved). */
  sameDefinition: boolean
}

/**
 * What an enqueue with a key does:
 *   create     → no job holds the key: a new job, which holds it
 *   join       → the caller is joined to the holder (its closures and `done` get its result)
 *   replace    → the holder still waits here: its args and due time become the new ones
 *   reschedule → a schedule whose definition changed: the holder is cancelled, a new job holds the key
 */
export type UniqueDecision = 'create' | 'join' | 'replace' | 'reschedule'

export function decideUnique(holder: HolderView | undefined, mode: UniqueMode, scheduled: boolean): UniqueDecision {
  if (holder === undefined) return 'create'
  // Registration at boot: the same schedule again is one schedule; a changed one replaces it.
  if (scheduled || holder.scheduled) return holder.sameDefinition ? 'join' : 'reschedule'
  if (mode === 'replace' && holder.state === 'pending') return 'replace'
  return 'join'
}
