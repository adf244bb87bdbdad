/**
 * Retry policies as pure functions: no I/O, no clock. Units at the API are seconds
 * (as in JobReactor); computeBackoff returns milliseconds.
 */

import { InvalidArgumentError } from '../errors.js'

/** delay = attempt × multiplier seconds (JobReactor's default policy). */
export interface LinearRetry {
  strategy: 'linear'
  multiplier: number
}

/** delay = min(max, base × 2^(attempt-1)) seconds, then ± jitter (a fraction 0..1). */
export interface ExponentialRetry {
  strategy: 'exponential'
  base: number
  max: number
  jitter: number
}

/** The same delay after every failed attempt. */
export interface FixedRetry {
  strategy: 'fixed'
  delay: number
}

export type RetryPolicy = LinearRetry | ExponentialRetry | FixedRetry

export interface RetrySettings {
  maxAttempt: number
  policy: RetryPolicy
}

export const DEFAULT_EXPONENTIAL_BASE = 1
export const DEFAULT_EXPONENTIAL_MAX = 3600
export const DEFAULT_EXPONENTIAL_JITTER = 0.2

const STRATEGIES = ['linear', 'exponential', 'fixed'] as const

const FIELDS: Record<RetryPolicy['strategy'], readonly string[]> = {
  linear: ['strategy', 'multiplier'],
  exponential: ['strategy', 'base', 'max', 'jitter'],
  fixed: ['strategy', 'delay'],
}

/**
 * Accepts a number (linear multiplier, seconds) or a policy object (maybe partial for
 * exponential: defaults base 1, max 3600, jitter 0.2); validates every field and throws
 * InvalidArgumentError whose message names the field, e.g.
 * "'retry.base' must be a finite number >= 0, got -1". `where` is a prefix for messages.
 * Returns a fresh object: later changes to `input` do not leak into the policy.
 */
export function normalizeRetry(input: unknown, where = 'retry'): RetryPolicy {
  if (typeof input === 'number') {
    return { strategy: 'linear', multiplier: nonNegative(input, where) }
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new InvalidArgumentError(
      `'${where}' must be a number (linear multiplier, seconds) or a policy object, got ${describe(input)}`,
    )
  }
  const obj = input as Record<string, unknown>
  const strategy = obj['strategy']
  if (!STRATEGIES.includes(strategy as RetryPolicy['strategy'])) {
    throw new InvalidArgumentError(
      `'${where}.strategy' must be one of 'linear', 'exponential', 'fixed', got ${describe(strategy)}`,
    )
  }
  const known = FIELDS[strategy as RetryPolicy['strategy']]
  for (const field of Object.keys(obj)) {
    if (!known.includes(field)) {
      throw new InvalidArgumentError(
        `'${where}.${field}' is not an option of the '${String(strategy)}' strategy (allowed: ${known.join(', ')})`,
      )
    }
  }
  switch (strategy as RetryPolicy['strategy']) {
    case 'linear':
      return { strategy: 'linear', multiplier: nonNegative(obj['multiplier'], `${where}.multiplier`) }
    case 'fixed':
      return { strategy: 'fixed', delay: nonNegative(obj['delay'], `${where}.delay`) }
    case 'exponential': {
      const base = obj['base'] === undefined ? DEFAULT_EXPONENTIAL_BASE : nonNegative(obj['base'], `${where}.base`)
      const max = obj['max'] === undefined ? DEFAULT_EXPONENTIAL_MAX : nonNegative(obj['max'], `${where}.max`)
      const jitter =
        obj['jitter'] === undefined ? DEFAULT_EXPONENTIAL_JITTER : fraction(obj['jitter'], `${where}.jitter`)
      return { strategy: 'exponential', base, max, jitter }
    }
  }
}

/**
 * Delay in ms before the attempt after `attempt` (1-based: the number of the attempt that
 * just failed). linear: attempt × multiplier s; exponential: min(max, base × 2^(attempt-1)) s,
 * times a factor uniform in [1 - jitter, 1 + jitter] drawn from `random`, clamped to
 * [0, max]; fixed: delay s. Never negative, always finite, an integer.
 */
export function computeBackoff(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  if (!Number.isSafeInteger(attempt) || attempt < 1) {
    throw new InvalidArgumentError(`'attempt' must be an integer >= 1, got ${describe(attempt)}`)
  }
  let seconds: number
  switch (policy.strategy) {
    case 'linear':
      seconds = attempt * policy.multiplier
      break
    case 'fixed':
      seconds = policy.delay
      break
    case 'exponential': {
      // 2^1023 is the largest finite power of two; past it, base × 2^n would be Infinity
      // (or NaN when base is 0) before min() could cap it.
      const uncapped = policy.base * 2 ** Math.min(attempt - 1, 1023)
      const capped = Math.min(policy.max, uncapped)
      const factor = 1 - policy.jitter + 2 * policy.jitter * random()
      seconds = Math.min(Math.max(capped * factor, 0), policy.max)
      break
    }
    default: {
      const unknown: never = policy
      throw new InvalidArgumentError(`unknown retry strategy ${describe((unknown as { strategy?: unknown }).strategy)}`)
    }
  }
  const ms = Math.round(seconds * 1000)
  // NaN (a broken `random`, an unvalidated policy) and negatives both become 0; an absurd
  // delay stays finite so `now + delay` is still a usable due time.
  if (!(ms > 0)) return 0
  return Math.min(ms, Number.MAX_SAFE_INTEGER)
}

/** true when another attempt may follow the failed `attempt` (maxAttempt counts all attempts). */
export function shouldRetry(attempt: number, maxAttempt: number): boolean {
  return attempt < maxAttempt
}

function nonNegative(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(`'${name}' must be a finite number >= 0, got ${describe(value)}`)
  }
  return value
}

function fraction(value: unknown, name: string): number {
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    throw new InvalidArgumentError(`'${name}' must be a number in 0..1, got ${describe(value)}`)
  }
  return value
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
  if (value === null || value === undefined) return String(value)
  if (Array.isArray(value)) return 'an array'
  return `a ${typeof value}`
}
