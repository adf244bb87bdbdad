import { CancelJob, coerceError, ErrorCode, MAX_RATE_LIMIT_SECONDS, serializeError } from '../errors.js'
import type { JobArgsObject } from '../protocol/args.js'
import { JobStatus } from '../storage/store.js'
import type { JobContext, JobDefinition, NamedStep } from './registry.js'

/** How one attempt of a chain ended. */
export type ChainOutcome =
  | { kind: 'success'; cancelled: boolean }
  | { kind: 'error'; cancelled: boolean; error: unknown; unrecoverable: boolean }
  /** A step (or an errback) threw `RateLimited`: the attempt does not count; again after `seconds`. */
  | { kind: 'rate-limited'; cancelled: false; seconds: number }

/**
 * By code rather than instanceof: job files may import another copy of this package than
 * the node runs (built vs source), and their CancelJob must still count.
 */
function hasCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code
}

export function isCancel(err: unknown): boolean {
  return err instanceof CancelJob || hasCode(err, ErrorCode.JOB_CANCELLED)
}

/**
 * The pause a thrown `RateLimited` asks for, by code (see hasCode), or undefined: anything
 * else, or one whose seconds are out of range (then it is a failure like any other).
 */
export function rateLimitOf(err: unknown): number | undefined {
  if (!hasCode(err, ErrorCode.RATE_LIMITED)) return undefined
  const seconds = (err as { seconds?: unknown }).seconds
  return typeof seconds === 'number' && seconds > 0 && seconds <= MAX_RATE_LIMIT_SECONDS ? seconds : undefined
}

/** What a step that threw `err` ends the attempt with, when it does not fail it. */
function signalled(err: unknown): ChainOutcome | undefined {
  if (isCancel(err)) return CANCELLED
  const seconds = rateLimitOf(err)
  return seconds === undefined ? undefined : { kind: 'rate-limited', cancelled: false, seconds }
}

export function isUnrecoverable(err: unknown): boolean {
  return hasCode(err, ErrorCode.UNRECOVERABLE) || hasCode(err, ErrorCode.UNKNOWN_JOB)
}

/**
 * What a step's result is awaited as: a pending result raced against `signal`, which ends
 * it with the signal's reason once it aborts. Without a signal, the result itself.
 */
function racing(signal: AbortSignal | undefined): (result: unknown) => unknown {
  if (signal === undefined) return (result) => result
  const abort = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason)
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true })
  })
  abort.catch(() => {})
  return (result) => (isThenable(result) ? Promise.race([result, abort]) : result)
}

const SUCCEEDED: ChainOutcome = Object.freeze({ kind: 'success', cancelled: false })
const CANCELLED: ChainOutcome = Object.freeze({ kind: 'success', cancelled: true })

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | undefined)?.then === 'function'
}

/**
 * Runs one attempt: the job, then its callbacks in order, all on the same `args`. A step
 * that throws stops the chain, sets `args.error` and runs the errbacks in order; an errback
 * that throws sets `args.errbackError` and skips the rest. CancelJob in the job or a
 * callback is a cancelled success; in an errback, a cancelled error. RateLimited in any
 * step ends the attempt as rate-limited (in the job or a callback, no errback runs).
 *
 * The outcome comes back synchronously while every step does: most jobs are synchronous,
 * and a promise per attempt (plus the node's awaits on it) costs more than such a job. The
 * first step that returns a thenable hands the rest of the chain to an async continuation.
 *
 * With a `signal` (the attempt has a timeout) the attempt also ends when it aborts: a chain
 * that never settles cannot hold the node. `lastAttempt` only decides the status errbacks see.
 */
export function runChain(
  def: JobDefinition,
  args: JobArgsObject,
  ctx: JobContext,
  lastAttempt: boolean,
  signal?: AbortSignal,
): ChainOutcome | Promise<ChainOutcome> {
  try {
    const first = def.run(args, ctx)
    if (isThenable(first)) return continueChain(def, args, ctx, lastAttempt, signal, first, 0)
    for (let step = 0; step < def.callbacks.length; step++) {
      const next = (def.callbacks[step] as NamedStep).fn(args, ctx)
      if (isThenable(next)) return continueChain(def, args, ctx, lastAttempt, signal, next, step + 1)
    }
  } catch (err) {
    return signalled(err) ?? runErrbacks(def, args, ctx, lastAttempt, signal, err)
  }
  return SUCCEEDED
}

/** The chain after a step returned `pending`; `next` is the callback that follows it. */
async function continueChain(
  def: JobDefinition,
  args: JobArgsObject,
  ctx: JobContext,
  lastAttempt: boolean,
  signal: AbortSignal | undefined,
  pending: PromiseLike<unknown>,
  next: number,
): Promise<ChainOutcome> {
  const settle = racing(signal)
  try {
    await settle(pending)
    for (let step = next; step < def.callbacks.length; step++) {
      await settle((def.callbacks[step] as NamedStep).fn(args, ctx))
    }
  } catch (err) {
    return signalled(err) ?? runErrbacks(def, args, ctx, lastAttempt, signal, err)
  }
  return SUCCEEDED
}

async function runErrbacks(
  def: JobDefinition,
  args: JobArgsObject,
  ctx: JobContext,
  lastAttempt: boolean,
  signal: AbortSignal | undefined,
  thrown: unknown,
): Promise<ChainOutcome> {
  // Classified by what was thrown (a plain object may carry a code), reported as an Error.
  const unrecoverable = isUnrecoverable(thrown)
  const failure = coerceError(thrown)
  args['error'] = serializeError(failure)
  ctx.status = lastAttempt || unrecoverable ? JobStatus.FAILED : JobStatus.ERROR
  // After a timeout the signal is already aborted; errbacks still deserve to run (to log,
  // to clean up), so they are not raced against it.
  const settle = racing(signal?.aborted === true ? undefined : signal)
  for (const errback of def.errbacks) {
    try {
      const result = errback.fn(args, ctx)
      if (isThenable(result)) await settle(result)
    } catch (err) {
      if (isCancel(err)) return { kind: 'error', cancelled: true, error: failure, unrecoverable }
      const seconds = rateLimitOf(err)
      if (seconds !== undefined) return { kind: 'rate-limited', cancelled: false, seconds }
      args['errbackError'] = serializeError(err)
      break
    }
  }
  return { kind: 'error', cancelled: false, error: failure, unrecoverable }
}
