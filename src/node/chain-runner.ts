import { CancelJob, ErrorCode, serializeError } from '../errors.js'
import type { JobArgsObject } from '../protocol/args.js'
import { JobStatus } from '../storage/store.js'
import type { JobContext, JobDefinition } from './registry.js'

/** How one attempt of a chain ended. */
export type ChainOutcome =
  | { kind: 'success'; cancelled: boolean }
  | { kind: 'error'; cancelled: boolean; error: unknown; unrecoverable: boolean }

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

export function isUnrecoverable(err: unknown): boolean {
  return hasCode(err, ErrorCode.UNRECOVERABLE) || hasCode(err, ErrorCode.UNKNOWN_JOB)
}

/** Settles with the signal's reason once it aborts; never resolves. */
function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason)
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true })
  })
}

/**
 * Runs one attempt: the job, then its callbacks in order, all on the same `args`. A step
 * that throws stops the chain, sets `args.error` and runs the errbacks in order; an errback
 * that throws sets `args.errbackError` and skips the rest. CancelJob in the job or a
 * callback is a cancelled success; in an errback, a cancelled error.
 *
 * With a `signal` (the attempt has a timeout) the attempt also ends when it aborts: a chain
 * that never settles cannot hold the node. `lastAttempt` only decides the status errbacks see.
 */
export async function runChain(
  def: JobDefinition,
  args: JobArgsObject,
  ctx: JobContext,
  lastAttempt: boolean,
  signal?: AbortSignal,
): Promise<ChainOutcome> {
  const abort = signal === undefined ? undefined : aborted(signal)
  abort?.catch(() => {})
  let raced = abort !== undefined
  // Only a thenable is awaited: a synchronous step costs no microtask hop.
  const settle = (result: unknown): Promise<unknown> | undefined => {
    if (typeof (result as PromiseLike<unknown> | undefined)?.then !== 'function') return undefined
    return raced ? Promise.race([result, abort as Promise<never>]) : (result as Promise<unknown>)
  }
  let failure: unknown
  try {
    const first = settle(def.run(args, ctx))
    if (first !== undefined) await first
    for (const callback of def.callbacks) {
      const next = settle(callback.fn(args, ctx))
      if (next !== undefined) await next
    }
    return { kind: 'success', cancelled: false }
  } catch (err) {
    if (isCancel(err)) return { kind: 'success', cancelled: true }
    failure = err
  }
  const unrecoverable = isUnrecoverable(failure)
  args['error'] = serializeError(failure)
  ctx.status = lastAttempt || unrecoverable ? JobStatus.FAILED : JobStatus.ERROR
  // After a timeout the signal is already aborted; errbacks still deserve to run (to log,
  // to clean up), so they are not raced against it.
  raced = signal !== undefined && !signal.aborted
  for (const errback of def.errbacks) {
    try {
      const next = settle(errback.fn(args, ctx))
      if (next !== undefined) await next
    } catch (err) {
      if (isCancel(err)) return { kind: 'error', cancelled: true, error: failure, unrecoverable }
      args['errbackError'] = serializeError(err)
      break
    }
  }
  return { kind: 'error', cancelled: false, error: failure, unrecoverable }
}
