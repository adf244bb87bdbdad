import { describe, it, expect } from 'vitest'
import {
  computeBackoff,
  normalizeRetry,
  shouldRetry,
  type ExponentialRetry,
  type RetryPolicy,
} from '../../src/scheduling/retry.js'
import { InvalidArgumentError } from '../../src/errors.js'
import { seededRandom } from '../helpers/prng.js'

const never = (): number => {
  throw new Error('random must not be called for this policy')
}

function invalid(fn: () => unknown): InvalidArgumentError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError)
    expect((err as InvalidArgumentError).code).toBe('ERR_INVALID_ARG')
    return err as InvalidArgumentError
  }
  throw new Error('expected an InvalidArgumentError')
}

describe('computeBackoff', () => {
  it('linear: attempt × multiplier seconds, in ms (JobReactor default multiplier 5)', () => {
    const policy: RetryPolicy = { strategy: 'linear', multiplier: 5 }
    const delays = [1, 2, 3, 4, 10].map((a) => computeBackoff(policy, a, never))
    expect(delays).toEqual([5_000, 10_000, 15_000, 20_000, 50_000])
  })

  it('linear: fractional seconds round to whole ms', () => {
    expect(computeBackoff({ strategy: 'linear', multiplier: 0.0015 }, 1)).toBe(2)
    expect(computeBackoff({ strategy: 'linear', multiplier: 0.1 }, 3)).toBe(300)
  })

  it('exponential without jitter doubles from base and stops at max', () => {
    const policy: ExponentialRetry = { strategy: 'exponential', base: 2, max: 60, jitter: 0 }
    const delays = [1, 2, 3, 4, 5, 6, 7, 100].map((a) => computeBackoff(policy, a))
    expect(delays).toEqual([2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000])
  })

  it('exponential stays finite for huge attempts, also with base 0', () => {
    const policy: ExponentialRetry = { strategy: 'exponential', base: 1, max: 3600, jitter: 0 }
    expect(computeBackoff(policy, 5_000)).toBe(3_600_000)
    expect(computeBackoff({ ...policy, base: 0 }, 5_000)).toBe(0)
  })

  it('jitter: random=0 gives (1 - jitter), random=1 gives (1 + jitter), 0.5 gives none', () => {
    const policy: ExponentialRetry = { strategy: 'exponential', base: 10, max: 3600, jitter: 0.2 }
    expect(computeBackoff(policy, 1, () => 0)).toBe(8_000)
    expect(computeBackoff(policy, 1, () => 1)).toBe(12_000)
    expect(computeBackoff(policy, 1, () => 0.5)).toBe(10_000)
    expect(computeBackoff(policy, 1, () => 0.25)).toBe(9_000)
    expect(computeBackoff(policy, 3, () => 0)).toBe(32_000)
  })

  it('jitter never pushes the delay above max or below 0', () => {
    const policy: ExponentialRetry = { strategy: 'exponential', base: 1, max: 10, jitter: 1 }
    expect(computeBackoff(policy, 20, () => 1)).toBe(10_000)
    expect(computeBackoff(policy, 20, () => 0)).toBe(0)
    expect(computeBackoff(policy, 2, () => 1)).toBe(4_000)
  })

  it('jittered delays stay within [base·2^(n-1)·(1-j), base·2^(n-1)·(1+j)] for many draws', () => {
    const random = seededRandom(42)
    const policy: ExponentialRetry = { strategy: 'exponential', base: 1, max: 3600, jitter: 0.2 }
    const seen = new Set<number>()
    for (let i = 0; i < 2_000; i++) {
      const attempt = 1 + (i % 8)
      const nominal = 1000 * 2 ** (attempt - 1)
      const d = computeBackoff(policy, attempt, random)
      expect(Number.isInteger(d)).toBe(true)
      expect(d).toBeGreaterThanOrEqual(Math.floor(nominal * 0.8))
      expect(d).toBeLessThanOrEqual(Math.ceil(nominal * 1.2))
      if (attempt === 8) seen.add(d)
    }
    // The jitter is really applied: attempt 8 produced many distinct delays.
    expect(seen.size).toBeGreaterThan(100)
  })

  it('fixed: the same delay for every attempt', () => {
    const policy: RetryPolicy = { strategy: 'fixed', delay: 7.5 }
    expect([1, 2, 9].map((a) => computeBackoff(policy, a, never))).toEqual([7_500, 7_500, 7_500])
  })

  it('never returns a negative or non-finite delay', () => {
    const policy: ExponentialRetry = { strategy: 'exponential', base: 1, max: 10, jitter: 0.5 }
    expect(computeBackoff(policy, 1, () => Number.NaN)).toBe(0)
    expect(computeBackoff(policy, 1, () => -5)).toBe(0)
    const huge = computeBackoff({ strategy: 'linear', multiplier: Number.MAX_VALUE }, 2)
    expect(Number.isFinite(huge)).toBe(true)
    expect(huge).toBeGreaterThan(0)
  })

  it('rejects an attempt that is not an integer >= 1', () => {
    const policy: RetryPolicy = { strategy: 'fixed', delay: 1 }
    expect(invalid(() => computeBackoff(policy, 0)).message).toMatch(/'attempt' must be an integer >= 1, got 0/)
    expect(invalid(() => computeBackoff(policy, 1.5)).message).toMatch(/'attempt'.*got 1\.5/)
    expect(invalid(() => computeBackoff(policy, Number.NaN)).message).toMatch(/got NaN/)
  })
})

describe('normalizeRetry', () => {
  it('turns a number into a linear policy', () => {
    expect(normalizeRetry(5)).toEqual({ strategy: 'linear', multiplier: 5 })
    expect(normalizeRetry(0)).toEqual({ strategy: 'linear', multiplier: 0 })
  })

  it('fills exponential defaults: base 1, max 3600, jitter 0.2', () => {
    expect(normalizeRetry({ strategy: 'exponential' })).toEqual({
      strategy: 'exponential',
      base: 1,
      max: 3600,
      jitter: 0.2,
    })
    expect(normalizeRetry({ strategy: 'exponential', max: 60, jitter: 0 })).toEqual({
      strategy: 'exponential',
      base: 1,
      max: 60,
      jitter: 0,
    })
  })

  it('returns a copy of a complete policy', () => {
    const input = { strategy: 'fixed', delay: 3 } as const
    const out = normalizeRetry(input)
    expect(out).toEqual(input)
    expect(out).not.toBe(input)
    expect(normalizeRetry(normalizeRetry({ strategy: 'linear', multiplier: 2 }))).toEqual({
      strategy: 'linear',
      multiplier: 2,
    })
  })

  it('names the bad field in its errors', () => {
    expect(invalid(() => normalizeRetry({ strategy: 'exponential', base: -1 })).message).toBe(
      "'retry.base' must be a finite number >= 0, got -1",
    )
    expect(invalid(() => normalizeRetry(-1)).message).toBe("'retry' must be a finite number >= 0, got -1")
    expect(invalid(() => normalizeRetry(Number.POSITIVE_INFINITY)).message).toMatch(/^'retry' .* got Infinity$/)
    expect(invalid(() => normalizeRetry({ strategy: 'exponential', max: Number.NaN })).message).toMatch(
      /^'retry\.max' must be a finite number >= 0, got NaN$/,
    )
    expect(invalid(() => normalizeRetry({ strategy: 'exponential', jitter: 1.5 })).message).toMatch(
      /^'retry\.jitter' must be a number in 0\.\.1, got 1\.5$/,
    )
    expect(invalid(() => normalizeRetry({ strategy: 'linear' })).message).toMatch(
      /^'retry\.multiplier' must be a finite number >= 0, got undefined$/,
    )
    expect(invalid(() => normalizeRetry({ strategy: 'fixed', delay: '5' })).message).toMatch(
      /^'retry\.delay' .* got "5"$/,
    )
    expect(invalid(() => normalizeRetry({ strategy: 'backoff' })).message).toMatch(
      /^'retry\.strategy' must be one of 'linear', 'exponential', 'fixed', got "backoff"$/,
    )
    expect(invalid(() => normalizeRetry({ multiplier: 5 })).message).toMatch(/^'retry\.strategy' .* got undefined$/)
    expect(invalid(() => normalizeRetry({ strategy: 'linear', multiplier: 1, jitter: 0 })).message).toMatch(
      /^'retry\.jitter' is not an option of the 'linear' strategy/,
    )
    expect(invalid(() => normalizeRetry('5')).message).toMatch(
      /^'retry' must be a number .* or a policy object, got "5"$/,
    )
    expect(invalid(() => normalizeRetry(null)).message).toMatch(/got null$/)
    expect(invalid(() => normalizeRetry([1])).message).toMatch(/got an array$/)
  })

  it('uses `where` as the message prefix', () => {
    expect(invalid(() => normalizeRetry({ strategy: 'exponential', base: -2 }, 'enqueue.retry')).message).toBe(
      "'enqueue.retry.base' must be a finite number >= 0, got -2",
    )
  })
})

describe('shouldRetry', () => {
  it('allows another attempt until maxAttempt attempts have failed', () => {
    expect(shouldRetry(1, 10)).toBe(true)
    expect(shouldRetry(9, 10)).toBe(true)
    expect(shouldRetry(10, 10)).toBe(false)
    expect(shouldRetry(11, 10)).toBe(false)
    expect(shouldRetry(1, 1)).toBe(false)
  })
})
