import { InvalidArgumentError } from '../errors.js'
import type { JobArgsObject } from '../protocol/args.js'
import type { ProgressValue } from '../protocol/messages.js'

/** What a named feedback handler (or `onProgress`) learns of the result besides its args or value. */
export interface FeedbackInfo {
  /** The job's id. */
  id: string
  /** The job's name: the name the handler was registered for. */
  name: string
  /** The node that ran it. */
  node: string
  /** The run this result is of (1 for a one-shot job; each run of a periodic job counts). */
  run: number
  /** Nothing more will come for this job (always false for progress). */
  final: boolean
}

/**
 * The handlers registered for a job name with `onFeedback`: they run for a result whose job
 * this distributor holds no closure for (it restarted since the enqueue). A handler may be
 * async; the node's feedback is acknowledged once it settled (docs/architecture.md).
 */
export interface FeedbackHandlers<A extends JobArgsObject = JobArgsObject> {
  /** A run succeeded (or was cancelled from the job): `args` as the chain left them. */
  success?: (args: A, info: FeedbackInfo) => void | Promise<void>
  /** A run failed for good: `args.error` is set. */
  error?: (args: A & { error?: unknown }, info: FeedbackInfo) => void | Promise<void>
  /**
   * Progress a job reports while it runs (`ctx.progress`), coalesced by its node to about
   * ten a second; the last value comes before the run's `success` or `error`. Nothing waits
   * for a promise it returns: a rejection is reported like a throw.
   */
  progress?: (value: ProgressValue, info: FeedbackInfo) => void | Promise<void>
}

const HANDLER_KEYS = ['success', 'error', 'progress'] as const

/** Checks `onFeedback`'s arguments; throws InvalidArgumentError naming the bad one. */
export function checkFeedbackHandlers(name: unknown, handlers: unknown): asserts handlers is FeedbackHandlers {
  if (typeof name !== 'string' || name.length === 0) {
    throw new InvalidArgumentError(
      `'name' must be a non-empty string, got ${typeof name === 'string' ? 'an empty string' : typeof name}`,
    )
  }
  if (typeof handlers !== 'object' || handlers === null || Array.isArray(handlers)) {
    throw new InvalidArgumentError(
      `the handlers for '${name}' must be an object { success?, error?, progress? }, got ${handlers === null ? 'null' : Array.isArray(handlers) ? 'an array' : typeof handlers}`,
    )
  }
  const given = handlers as Record<string, unknown>
  for (const key of Object.keys(given)) {
    if (!(HANDLER_KEYS as readonly string[]).includes(key)) {
      throw new InvalidArgumentError(
        `unknown feedback handler '${key}' for '${name}' (expected success, error or progress)`,
      )
    }
  }
  let any = false
  for (const key of HANDLER_KEYS) {
    const fn = given[key]
    if (fn === undefined) continue
    if (typeof fn !== 'function') {
      throw new InvalidArgumentError(`feedback handler '${key}' for '${name}' must be a function, got ${typeof fn}`)
    }
    any = true
  }
  if (!any) throw new InvalidArgumentError(`the handlers for '${name}' define none of success, error or progress`)
}
