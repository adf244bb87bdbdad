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
  RATE_LIMITED: 'ERR_RATE_LIMITED',
  UNRECOVERABLE: 'ERR_UNRECOVERABLE',
  DISTRIBUTOR_CLOSED: 'ERR_DISTRIBUTOR_CLOSED',
  NOT_READY: 'ERR_NOT_READY',
  STORE: 'ERR_STORE',
  STORE_TIMEOUT: 'ERR_STORE_TIMEOUT',
  ACCEPT_TIMEOUT: 'ERR_ACCEPT_TIMEOUT',
  JOB_FILE: 'ERR_JOB_FILE',
  NAME_TAKEN: 'ERR_NAME_TAKEN',
  HANDED_OVER: 'ERR_HANDED_OVER',
  DEDUPLICATED: 'ERR_DEDUPLICATED',
  ADMIN_REQUEST: 'ERR_ADMIN_REQUEST',
  ADMIN_UNREACHABLE: 'ERR_ADMIN_UNREACHABLE',
  NODE_UNAVAILABLE: 'ERR_NODE_UNAVAILABLE',
  NODE_TIMEOUT: 'ERR_NODE_TIMEOUT',
} as const

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

/**
 * The base of this project's errors, each with a stable `code`. Each code has exactly
 * one class below (`ERROR_CLASSES` is the table), and those classes are the only places
 * that construct a JobsError: code elsewhere throws the class, never a code.
 * `instanceof JobsError` holds for all of them; `CancelJob` and `RateLimited` are the errors
 * with a code that are not JobsErrors (they are signals, not failures).
 */
export abstract class JobsError extends Error {
  readonly code: ErrorCode

  /** For the classes in this file only. */
  protected constructor(message: string, code: ErrorCode, options?: { cause?: unknown }) {
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

/** The handshake was refused: protocol version, node name, capacity, or too many bytes before it. */
export class HandshakeError extends JobsError {
  constructor(message: string) {
    super(message, ErrorCode.HANDSHAKE_REJECTED)
  }
}

/** No hello (at a distributor) or no welcome (at a node) within the handshake timeout. */
export class HandshakeTimeoutError extends JobsError {
  constructor(message: string) {
    super(message, ErrorCode.HANDSHAKE_TIMEOUT)
  }
}

export class AuthError extends JobsError {
  constructor(message = 'authentication failed') {
    super(message, ErrorCode.AUTH)
  }
}

/** The link closed (peer gone, replaced, shutdown); also the abort reason a shutdown gives. */
export class ConnectionClosedError extends JobsError {
  constructor(message = 'connection closed') {
    super(message, ErrorCode.CONNECTION_CLOSED)
  }
}

/** The peer was silent for 3 heartbeats, or stopped reading for `stallTimeoutMs`. */
export class HeartbeatTimeoutError extends JobsError {
  constructor(message: string) {
    super(message, ErrorCode.HEARTBEAT_TIMEOUT)
  }
}

/**
 * Rejection value of `handle.done` after the last attempt failed. `args` is what the
 * error feedback carried (original args, merged fields, and `args.error`). One rebuilt by
 * `deserializeError` has empty `args`, `jobId` and `jobName`: the wire form has no room
 * for them.
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

/** An attempt ran past its `timeout`: the reason its `ctx.signal` aborts with. */
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

/** A distributor started with the name of a live member of its group (another process renews that name's lease). */
export class NameTakenError extends JobsError {
  constructor(message: string) {
    super(message, ErrorCode.NAME_TAKEN)
  }
}

/**
 * `done` of a job that outlives its distributor's close(): it stays in the group's spool (or
 * with the durable node that accepted it), and its result reaches the named feedback
 * handlers of the member that resumes or adopts it. Not a failure: no error closure runs.
 */
export class HandedOverError extends JobsError {
  constructor(
    message = 'distributor closed; the job lives on in its spool and its result reaches the named feedback handlers of the member that takes it over',
  ) {
    super(message, ErrorCode.HANDED_OVER)
  }
}

/**
 * `done` of an enqueue with a unique key that another member of the group holds (or a job
 * this process holds no closure for): the job runs once, there, and its result reaches that
 * member's closures or its named feedback handlers, not this caller's. Not a failure: no
 * error closure runs. `id` is the job that holds the key, `member` the member that claimed it.
 */
export class DeduplicatedError extends JobsError {
  constructor(
    readonly id: string,
    readonly member: string,
    key: string,
  ) {
    super(
      `unique key '${key}' is held by job ${id} of member '${member}': it runs there, and its result reaches that member's closures or named feedback handlers`,
      ErrorCode.DEDUPLICATED,
    )
  }
}

/** An operator's request (admin API) for a node that is not connected, or whose link dropped before it answered. */
export class NodeUnavailableError extends JobsError {
  constructor(message: string) {
    super(message, ErrorCode.NODE_UNAVAILABLE)
  }
}

/** A node did not answer an operator's request (admin API) in time. */
export class NodeTimeoutError extends JobsError {
  constructor(node: string, timeoutMs: number) {
    super(`node '${node}' did not answer within ${timeoutMs} ms`, ErrorCode.NODE_TIMEOUT)
  }
}

/** `JR.enqueue` / `JR.cancel` before `JR.startDistributor()`. */
export class NotReadyError extends JobsError {
  constructor(message = 'no distributor in this process: call JR.startDistributor() first') {
    super(message, ErrorCode.NOT_READY)
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
    super(
      `the store answered nothing for ${deadlineMs} ms (${waiting} operation${waiting === 1 ? '' : 's'} waiting): counted as down`,
      ErrorCode.STORE_TIMEOUT,
    )
  }
}

/** A node held dispatched jobs without accepting them past `acceptTimeoutMs`: they were taken back. */
export class AcceptTimeoutError extends JobsError {
  constructor(node: string, jobs: number, timeoutMs: number) {
    super(
      `node '${node}' did not accept ${jobs} job${jobs === 1 ? '' : 's'} within ${timeoutMs} ms; they go elsewhere`,
      ErrorCode.ACCEPT_TIMEOUT,
    )
  }
}

/** The job directory is missing or not a directory, or a job file failed to load (also in a defer worker). */
export class JobFileError extends JobsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ErrorCode.JOB_FILE, options)
  }
}

/**
 * The admin API answered a request with an error: `status` is the HTTP status and
 * `serverCode` the API's own code (`ERR_FORBIDDEN`, `ERR_NOT_FOUND`, ...), undefined when the
 * answer was not the API's JSON (the URL points at something else).
 */
export class AdminRequestError extends JobsError {
  readonly status: number
  readonly serverCode: string | undefined

  /** `request` is what was asked (`POST http://host/jr/api/jobs/x/cancel`), `detail` the server's message. */
  constructor(request: string, status: number, serverCode: string | undefined, detail: string) {
    super(
      `the admin API answered ${status}${serverCode === undefined ? '' : ` ${serverCode}`} to ${request}: ${detail}`,
      ErrorCode.ADMIN_REQUEST,
    )
    this.status = status
    this.serverCode = serverCode
  }
}

/** The admin API could not be reached (refused, unknown host, TLS) or answered nothing in time. */
export class AdminUnreachableError extends JobsError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ErrorCode.ADMIN_UNREACHABLE, options)
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

/** Longest pause `RateLimited` takes: a day. */
export const MAX_RATE_LIMIT_SECONDS = 86_400

/**
 * A signal, not a failure: thrown in a step (or `ctx.rateLimit(seconds)`) when an upstream
 * pushed back (it answered 429). The attempt ends without counting, with no feedback and no
 * errback; the job runs again after `seconds`, and its distributor holds back the job's name
 * (or its key, for a name limited per key) meanwhile. Thrown in an errback, it does the same:
 * the failure the errbacks were handling does not count either.
 */
export class RateLimited extends Error {
  readonly code = ErrorCode.RATE_LIMITED
  readonly seconds: number

  constructor(seconds: number) {
    if (typeof seconds !== 'number' || !(seconds > 0) || !(seconds <= MAX_RATE_LIMIT_SECONDS))
      throw new InvalidArgumentError(
        `'seconds' of rateLimit must be a number in (0, ${MAX_RATE_LIMIT_SECONDS}], got ${String(seconds)}`,
      )
    super(`rate limited: paused for ${seconds} s`)
    this.name = 'RateLimited'
    this.seconds = seconds
  }
}

type ErrorClass = new (...args: never[]) => Error

/** The one class of each code. Typed so that a code without a class does not compile. */
export const ERROR_CLASSES: { readonly [C in ErrorCode]: ErrorClass } = {
  [ErrorCode.INVALID_ARG]: InvalidArgumentError,
  [ErrorCode.QUEUE_FULL]: QueueFullError,
  [ErrorCode.FRAME_TOO_LARGE]: FrameTooLargeError,
  [ErrorCode.PROTOCOL]: ProtocolError,
  [ErrorCode.HANDSHAKE_REJECTED]: HandshakeError,
  [ErrorCode.HANDSHAKE_TIMEOUT]: HandshakeTimeoutError,
  [ErrorCode.AUTH]: AuthError,
  [ErrorCode.CONNECTION_CLOSED]: ConnectionClosedError,
  [ErrorCode.HEARTBEAT_TIMEOUT]: HeartbeatTimeoutError,
  [ErrorCode.UNKNOWN_JOB]: UnknownJobError,
  [ErrorCode.JOB_FAILED]: JobFailedError,
  [ErrorCode.JOB_TIMEOUT]: TimeoutError,
  [ErrorCode.JOB_CANCELLED]: CancelJob,
  [ErrorCode.RATE_LIMITED]: RateLimited,
  [ErrorCode.UNRECOVERABLE]: UnrecoverableError,
  [ErrorCode.DISTRIBUTOR_CLOSED]: DistributorClosedError,
  [ErrorCode.NOT_READY]: NotReadyError,
  [ErrorCode.STORE]: StoreError,
  [ErrorCode.STORE_TIMEOUT]: StoreTimeoutError,
  [ErrorCode.ACCEPT_TIMEOUT]: AcceptTimeoutError,
  [ErrorCode.JOB_FILE]: JobFileError,
  [ErrorCode.NAME_TAKEN]: NameTakenError,
  [ErrorCode.HANDED_OVER]: HandedOverError,
  [ErrorCode.DEDUPLICATED]: DeduplicatedError,
  [ErrorCode.ADMIN_REQUEST]: AdminRequestError,
  [ErrorCode.ADMIN_UNREACHABLE]: AdminUnreachableError,
  [ErrorCode.NODE_UNAVAILABLE]: NodeUnavailableError,
  [ErrorCode.NODE_TIMEOUT]: NodeTimeoutError,
}

const CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode))

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && CODES.has(value)
}

/**
 * An instance of the class that owns `code`, with `message`, built without that class's
 * constructor (whose parameters are not a message): the JobsError constructor runs with the
 * class as `new.target`, so the result is a real Error, `instanceof` its class, named after
 * it. Fields that only a class's own constructor sets get empty values.
 */
function rebuild(code: ErrorCode, message: string, options?: { cause?: unknown }): Error {
  const cls = ERROR_CLASSES[code]
  if (cls === CancelJob) return new CancelJob(message)
  if (cls === RateLimited) {
    // Its constructor takes the seconds, which its own message carries.
    const seconds = Number(/paused for (\S+) s/.exec(message)?.[1])
    return Object.assign(Reflect.construct(Error, [message], RateLimited) as Error, {
      code: ErrorCode.RATE_LIMITED,
      seconds,
    })
  }
  const err = Reflect.construct(JobsError, [message, code, options], cls) as JobsError
  if (err instanceof JobFailedError) Object.assign(err, { args: {}, jobId: '', jobName: '' })
  if (err instanceof AdminRequestError) Object.assign(err, { status: 0, serverCode: undefined })
  return err
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

/** The wire form of anything thrown; it goes through `coerceError` first. */
export function serializeError(thrown: unknown): SerializedError {
  const err = coerceError(thrown)
  const out: SerializedError = { name: err.name, message: err.message }
  if (err.stack !== undefined) out.stack = err.stack
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string') out.code = code
  return out
}

/**
 * The inverse of serializeError, for errors that crossed a thread or the wire. A code of
 * this project gives back an instance of its class (`instanceof TimeoutError` holds for a
 * timeout that ended a deferred attempt); any other code (a user's own, `ENOENT`) rides on
 * a plain Error, as Node's system errors carry theirs. `name` and `stack` are the sender's.
 */
export function deserializeError(data: SerializedError | undefined): Error {
  if (data === undefined) return new Error('unknown error')
  let err: Error
  if (isErrorCode(data.code)) err = rebuild(data.code, data.message)
  else {
    err = new Error(data.message)
    if (data.code !== undefined) Object.assign(err, { code: data.code })
  }
  err.name = data.name
  if (data.stack !== undefined) err.stack = data.stack
  return err
}
