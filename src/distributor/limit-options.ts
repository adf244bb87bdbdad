import { checkBoolean, checkInteger, checkKnownKeys, checkNumber, checkPlainOptions, describe } from '../config.js'
import { InvalidArgumentError } from '../errors.js'

/*
 * The options of limits (docs/configuration.md, Limits): `distributor.limit(name, ...)`, the
 * `limits` distributor option and the `limitKey` enqueue option, validated once.
 */

/** A limit as given to `distributor.limit(name, ...)` or in the `limits` option. */
export interface LimitOptions {
  /** Jobs of the name in flight at once (per key with `perKey`); at least one of it and `rate`. */
  concurrency?: number
  /** Count per `limitKey` (jobs without one share the key ''), not in total. @default false */
  perKey?: boolean
  /** At most `max` dispatches in any `per` seconds (per key with `perKey`). */
  rate?: RateOptions
}

/** A rate limit: `max` dispatches in any window of `per` seconds. */
export interface RateOptions {
  max: number
  per: number
}

/** A limit, validated. */
export interface Limit {
  readonly concurrency: number | undefined
  readonly perKey: boolean
  readonly rate: RateOptions | undefined
}

/** Longest `limitKey`: keys are held in memory per waiting key, and labels of events. */
export const MAX_LIMIT_KEY_LENGTH = 256
const MAX_CONCURRENCY = 1_000_000
/** A rate's `max` is kept as that many dispatch times per name or key. */
const MAX_RATE = 1_000_000
/** A day: a window longer than that is a quota, not a rate. */
const MAX_RATE_PER = 86_400
const LIMIT_KEYS: readonly string[] = ['concurrency', 'perKey', 'rate']
const RATE_KEYS: readonly string[] = ['max', 'per']

/** Validates one limit; errors name the field as `where.concurrency`. */
export function resolveLimit(where: string, input: unknown): Limit {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    throw new InvalidArgumentError(
      `'${where}' must be { concurrency?, rate?, perKey? } or null, got ${describe(input)}`,
    )
  const o = input as Record<string, unknown>
  checkKnownKeys(`'${where}'`, o, LIMIT_KEYS)
  if (o['concurrency'] === undefined && o['rate'] === undefined)
    throw new InvalidArgumentError(`'${where}.concurrency' or '${where}.rate' is required`)
  return {
    concurrency:
      o['concurrency'] === undefined
        ? undefined
        : checkInteger(`${where}.concurrency`, o['concurrency'], 1, MAX_CONCURRENCY),
    perKey: o['perKey'] === undefined ? false : checkBoolean(`${where}.perKey`, o['perKey']),
    rate: o['rate'] === undefined ? undefined : resolveRate(`${where}.rate`, o['rate']),
  }
}

function resolveRate(where: string, input: unknown): RateOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    throw new InvalidArgumentError(`'${where}' must be { max, per }, got ${describe(input)}`)
  const o = input as Record<string, unknown>
  checkKnownKeys(`'${where}'`, o, RATE_KEYS)
  if (o['max'] === undefined || o['per'] === undefined)
    throw new InvalidArgumentError(`'${where}' must be { max, per }: both are required`)
  const per = checkNumber(`${where}.per`, o['per'], 0.001)
  if (per > MAX_RATE_PER) throw new InvalidArgumentError(`'${where}.per' must be at most ${MAX_RATE_PER} seconds`)
  return { max: checkInteger(`${where}.max`, o['max'], 1, MAX_RATE), per }
}

/** The `limits` distributor option: job name → limit. */
export function resolveLimits(input: unknown): ReadonlyMap<string, Limit> {
  const limits = new Map<string, Limit>()
  if (input === undefined) return limits
  const o = checkPlainOptions('limits', input)
  for (const [name, limit] of Object.entries(o)) limits.set(name, resolveLimit(`limits.${name}`, limit))
  return limits
}

/** The `limitKey` enqueue option. */
export function checkLimitKey(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_LIMIT_KEY_LENGTH)
    throw new InvalidArgumentError(
      `'limitKey' must be a string of 1..${MAX_LIMIT_KEY_LENGTH} characters, got ${describe(value)}`,
    )
  return value
}
