/**
 * One error hierarchy for the whole project. Every error carries a stable `code`
 * (tests and users match on it, never on the message). Messages are lowercase and
 * name the bad value.
 */

export const ErrorCode = {
  INVALID_ARG: 'ERR_INVALID_ARG',
  QUEUE_FULL: 'ERR_QUEUE_FULL',
  FRAME_TOO_LARGE: 'ERR_FRAME_TOO_LARGE',
  PROTOCOL: 'ERR_PROTOCOL',
  HANDSHAKE_REJECTED: 'ERR_HANDSHAKE_REJECTED',
  HANDSHAKE_TIMEOUT: 'ERR_HANDSHAKE_TIMEOUT',
  AUTH: 'ERR_AUTH',
  CONNECTION_CLOSED: 'ERR_CONNECTION_CLOSED',
  HEARTBEAT_TIMEOUT: 'ERR_HEARTBEAT_TIMEOUT',
  UNKNOWN_JOB: 'ERR_UNKNOWN_JOB',
  JOB_FAILED: 'ERR_JOB_FAILED',
  JOB_TIMEOUT: 'ERR_JOB_TIMEOUT',
  JOB_CANCELLED: 'ERR_JOB_CANCELLED',
  UNRECOVERABLE: 'ERR_UNRECOVERABLE',
  DISTRIBUTOR_CLOSED: 'ERR_DISTRIBUTOR_CLOSED',
  NOT_READY: 'ERR_NOT_READY',
  STORE: 'ERR_STORE',
  STORE_TIMEOUT: 'ERR_STORE_TIMEOUT',
  ACCEPT_TIMEOUT: 'ERR_ACCEPT_TIMEOUT',
  JOB_FILE: 'ERR_JOB_FILE',
} as const

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

export class JobsError extends Error {
  readonly code: string

  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/** A bad option, argument or value; the message names it. */
export class InvalidArgumentError extends JobsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ErrorCode.INVALID_ARG, options)
  }
}

/** `enqueue` past `maxPending`. */
export class QueueFullError extends JobsError {
  constructor(limit: number, message = `pending queue is full (maxPending ${limit})`) {
    super(message, ErrorCode.QUEUE_FULL)
  }
}

export class FrameTooLargeError extends JobsError {
  /** `what` says whose frame it would be, when that helps the reader. */
  constructor(size: number, limit: number, what?: string) {
    const detail = `frame of ${size} bytes exceeds maxFrameSize ${limit}`
    super(what === undefined ? detail : `${what}: ${detail}`, ErrorCode.FRAME_TOO_LARGE)
  }
}

/** A peer sent something that is not a valid message, or at the wrong time. */
export class ProtocolError extends JobsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ErrorCode.PROTOCOL, options)
  }
}

export class HandshakeError extends JobsError {
  constructor(message: string, code: string = ErrorCode.HANDSHAKE_REJECTED) {
    super(message, code)
  }
}

export class AuthError extends JobsError {
  constructor(message = 'authentication failed') {
    super(message, ErrorCode.AUTH)
  }
}

export class ConnectionClosedError extends JobsError {
  constructor(message = 'connection closed', code: string = ErrorCode.CONNECTION_CLOSED) {
    super(message, code)
  }
}

/**
 * Rejection value of `handle.done` after the last attempt failed. `args` is what the
 * error feedback carried (original args, merged fields, and `args.error`).
 */
export class JobFailedError extends JobsError {
  readonly args: Record<string, unknown>
  readonly jobId: string
  readonly jobName: string

  constructor(jobName: string, jobId: string, args: Record<string, unknown>) {
    const inner = args['error'] as { message?: unknown } | undefined
    const detail = typeof inner?.message === 'string' ? `: ${inner.message}` : ''
    super(`job '${jobName}' (${jobId}) failed${detail}`, ErrorCode.JOB_FAILED)
    this.args = args
    this.jobId = jobId
    this.jobName = jobName
  }
}

export class TimeoutError extends JobsError {
  constructor(seconds: number) {
    super(`attempt timed out after ${seconds}s`, ErrorCode.JOB_TIMEOUT)
  }
}

export class UnknownJobError extends JobsError {
  constructor(name: string, node: string) {
    super(`node '${node}' has no job named '${name}'`, ErrorCode.UNKNOWN_JOB)
  }
}

/** Thrown by a step to skip the remaining attempts. */
export class UnrecoverableError extends JobsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ErrorCode.UNRECOVERABLE, options)
  }
}

export class DistributorClosedError extends JobsError {
  constructor(message = 'distributor is closed') {
    super(message, ErrorCode.DISTRIBUTOR_CLOSED)
  }
}

export class StoreError extends JobsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ErrorCode.STORE, options)
  }
}

/**
 * The store answered nothing for `deadlineMs` while operations waited: it counts as down.
 * The operation may still be carried out if the store wakes up.
 */
export class StoreTimeoutError extends JobsError {
  constructor(deadlineMs: number, waiting: number) {
    super(`the store answered nothing for ${deadlineMs} ms (${waiting} operation${waiting === 1 ? '' : 's'} waiting): counted as down`, ErrorCode.STORE_TIMEOUT)
  }
}

/** A node held dispatched jobs without accepting them past `acceptTimeoutMs`: they were taken back. */
export class AcceptTimeoutError extends JobsError {
  constructor(node: string, jobs: number, timeoutMs: number) {
    super(`node '${node}' did not accept ${jobs} job${jobs === 1 ? '' : 's'} within ${timeoutMs} ms; they go elsewhere`, ErrorCode.ACCEPT_TIMEOUT)
  }
}

/**
 * A signal, not a failure: thrown in the job or a callback it ends the job as cancelled
 * with success feedback; thrown in an errback it ends it with error feedback. A periodic
 * job's schedule stops.
 */
export class CancelJob extends Error {
  readonly code = ErrorCode.JOB_CANCELLED

  constructor(message = 'job cancelled') {
    super(message)
    this.name = 'CancelJob'
  }
}

/** The wire and feedback form of an error: plain data, msgpack-safe. */
export interface SerializedError {
  name: string
  message: string
  stack?: string
  code?: string
}

/** Every catch around user code goes through here: anything thrown becomes an Error. */
export function coerceError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown
  if (typeof thrown === 'string') return new Error(thrown)
  let text: string
  try {
    text = JSON.stringify(thrown) ?? String(thrown)
  } catch {
    text = String(thrown)
  }
  return new Error(`non-error thrown: ${text}`)
}

export function serializeError(thrown: unknown): SerializedError {
  const err = coerceError(thrown)
  const out: SerializedError = { name: err.name, message: err.message }
  if (err.stack !== undefined) out.stack = err.stack
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string') out.code = code
  return out
}

/** The inverse of serializeError, for errors that crossed a thread or the wire. */
export function deserializeError(data: SerializedError | undefined): Error {
  if (data === undefined) return new Error('unknown error')
  const err = data.code === undefined ? new Error(data.message) : new JobsError(data.message, data.code)
  err.name = data.name
  if (data.stack !== undefined) err.stack = data.stack
  return err
}
