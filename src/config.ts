import { isIPv4 } from 'node:net'
import { InvalidArgumentError } from './errors.js'
import type { RetryPolicy } from './scheduling/retry.js'
import { normalizeRetry } from './scheduling/retry.js'

/**
 * Options are resolved once: public option types have optional fields with documented
 * defaults; `resolve*` validates every field (the error names it) and returns a type with
 * no optional fields, which is all the internals ever see.
 */

// ---------------------------------------------------------------------------------------
// Field validators shared by every resolver.

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value)
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'symbol') return 'a symbol'
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return 'an object'
  return String(value)
}

function bad(field: string, expected: string, value: unknown): never {
  throw new InvalidArgumentError(`'${field}' must be ${expected}, got ${describe(value)}`)
}

export function checkNumber(field: string, value: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    bad(field, `a number in ${min}..${max}`, value)
  }
  return value
}

export function checkInteger(field: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    bad(field, `an integer in ${min}..${max}`, value)
  }
  return value
}

/** `o[field]` as an integer in min..max, or `fallback` when it is not given. */
export function integerOption<F extends number | undefined>(
  o: Record<string, unknown>,
  field: string,
  fallback: F,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number | F {
  return o[field] === undefined ? fallback : checkInteger(field, o[field], min, max)
}

/** `o[field]` as a boolean, or `fallback` when it is not given. */
export function booleanOption(o: Record<string, unknown>, field: string, fallback: boolean): boolean {
  return o[field] === undefined ? fallback : checkBoolean(field, o[field])
}

export function checkBoolean(field: string, value: unknown): boolean {
  if (typeof value !== 'boolean') bad(field, 'a boolean', value)
  return value
}

export function checkString(field: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) bad(field, 'a non-empty string', value)
  return value
}

/** Rejects keys that are not options: a typo must not be silently ignored. */
export function checkKnownKeys(what: string, given: object, known: readonly string[]): void {
  for (const key of Object.keys(given)) {
    if (!known.includes(key)) {
      throw new InvalidArgumentError(`unknown ${what} option '${key}' (known: ${known.join(', ')})`)
    }
  }
}

export function checkPlainOptions(what: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {}
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`${what} options must be an object, got ${describe(value)}`)
  }
  return value as Record<string, unknown>
}

// ---------------------------------------------------------------------------------------
// The global, JobReactor-style configuration (JR.config).

export interface Config {
  /** Attempts per run before error feedback. @default 10 */
  maxAttempt: number
  /** Linear backoff: delay = attempt × retryMultiplier seconds. @default 5 */
  retryMultiplier: number
  /** A policy object overrides retryMultiplier (e.g. exponential with jitter). @default undefined */
  retry: RetryPolicy | undefined
  /** Per-attempt limit in seconds; 0 = none. @default 0 */
  timeout: number
  /** A node resumes its unfinished jobs from storage at start. @default true */
  retryJobsAtStart: boolean
  /** @default true */
  removeDoneJobs: boolean
  /** @default true */
  removeCancelledJobs: boolean
  /** @default false */
  removeFailedJobs: boolean
  /** Copy the job's own record into `args.jobItself`. @default false */
  mergeJobItselfToArgs: boolean
  /** A job with `node` waits for that node instead of going elsewhere. @default false */
  alwaysUseSpecifiedNode: boolean
  /** @default 'jobs' */
  jobDirectory: string
}

export const DEFAULT_CONFIG: Readonly<Config> = Object.freeze({
  maxAttempt: 10,
  retryMultiplier: 5,
  retry: undefined,
  timeout: 0,
  retryJobsAtStart: true,
  removeDoneJobs: true,
  removeCancelledJobs: true,
  removeFailedJobs: false,
  mergeJobItselfToArgs: false,
  alwaysUseSpecifiedNode: false,
  jobDirectory: 'jobs',
})

const CONFIG_KEYS = Object.keys(DEFAULT_CONFIG) as (keyof Config)[]

/** Validates a partial config and merges it into `target` (all or nothing). */
export function mergeConfig(target: Config, input: unknown): Config {
  const given = checkPlainOptions('config', input)
  checkKnownKeys('config', given, CONFIG_KEYS)
  const next: Config = { ...target }
  for (const [key, value] of Object.entries(given)) {
    switch (key as keyof Config) {
      case 'maxAttempt':
        next.maxAttempt = checkInteger('maxAttempt', value, 1)
        break
      case 'retryMultiplier':
        next.retryMultiplier = checkNumber('retryMultiplier', value)
        break
      case 'retry':
        next.retry = value === undefined ? undefined : normalizeRetry(value, 'retry')
        break
      case 'timeout':
        next.timeout = checkNumber('timeout', value)
        break
      case 'jobDirectory':
        next.jobDirectory = checkString('jobDirectory', value)
        break
      default:
        ;(next as unknown as Record<string, boolean>)[key] = checkBoolean(key, value)
    }
  }
  Object.assign(target, next)
  return target
}

export function retryPolicyOf(config: Pick<Config, 'retry' | 'retryMultiplier'>): RetryPolicy {
  return config.retry ?? { strategy: 'linear', multiplier: config.retryMultiplier }
}

// ---------------------------------------------------------------------------------------
// Limits and timings shared by both ends of a link.

export const DEFAULT_HEARTBEAT_MS = 5_000
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000
/** 64 hellos of the largest size under way at once; legitimate hellos are a few hundred bytes. */
export const DEFAULT_MAX_HANDSHAKE_BYTES = 4 * 1024 * 1024
/**
 * Above the node's store deadline (a node whose store hangs rejects what it was saving by
 * then), so that the distributor takes jobs back only from a node that says nothing at all.
 */
export const DEFAULT_ACCEPT_TIMEOUT_MS = 10_000
/** How long a feedback frame's ack waits for its closures to settle (distributor `feedbackTimeoutMs`). */
export const DEFAULT_FEEDBACK_TIMEOUT_MS = 30_000
/**
 * Far above any healthy store's answer (Redis answers in well under a millisecond; a fork
 * for a snapshot or a slow disk stalls it for tens to hundreds), and well under a lease
 * (15 s), so that a hung store is noticed before peers take this node's jobs over.
 */
export const DEFAULT_STORE_TIMEOUT_MS = 5_000
export const DEFAULT_STALL_TIMEOUT_MS = 30_000
export const DEFAULT_MAX_PENDING = 1_000_000
export const DEFAULT_MAX_CONNECTIONS = 1_024
export const DEFAULT_CONCURRENCY = 100
/**
 * A node's default window per unit of concurrency. At 2 a node went idle between feedback
 * and the next dispatch (no-op throughput 51k jobs/s); at 10 it stays fed (76k), with
 * little gain past that.
 */
export const DEFAULT_WINDOW_PER_SLOT = 10
export const DEFAULT_RECONNECT_MIN_MS = 100
export const DEFAULT_RECONNECT_MAX_MS = 10_000
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000
export const DEFAULT_LEASE_MS = 15_000
export const DEFAULT_PORT = 5000
export const DEFAULT_HOST = '127.0.0.1'

/** Room for the frame envelope around one job's args inside a dispatch batch. */
export const FRAME_ENVELOPE_BYTES = 1024
/** The smallest maxFrameSize accepted: a frame must hold the envelope and useful args. */
export const MIN_MAX_FRAME_SIZE = 4 * FRAME_ENVELOPE_BYTES

export function checkSecret(field: string, value: unknown): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value.length < 16) {
    throw new InvalidArgumentError(`'${field}' must be a string of at least 16 characters`)
  }
  return value
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true
  // Only an address: a name like 127.example.com may resolve anywhere.
  return isIPv4(host) && host.startsWith('127.')
}

export function parseHostPort(field: string, value: unknown): { host: string; port: number } {
  const text = checkString(field, value)
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text) ?? /^()()(\d+)$/.exec(text)
  if (m === null) throw new InvalidArgumentError(`'${field}' must look like host:port, got ${describe(value)}`)
  const host = m[1] || m[2] || DEFAULT_HOST
  const port = Number(m[3])
  if (port < 1 || port > 65535)
    throw new InvalidArgumentError(`'${field}' port must be an integer in 1..65535, got ${port}`)
  return { host, port }
}
