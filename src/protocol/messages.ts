import type { SerializedError } from '../errors.js'
import type { RetryPolicy } from '../scheduling/retry.js'
import type { JobArgsObject } from './args.js'

/**
 * Bumped on any incompatible change of the messages below, so that mismatched peers fail
 * the handshake with a clear error instead of a protocol error later. What each version
 * changed: docs/protocol.md, "Version history".
 */
export const PROTOCOL_VERSION = 8

export const MessageType = {
  /** distributor → node, first frame: protocol version and a fresh nonce. */
  CHALLENGE: 'challenge',
  /** node → distributor: who I am, what I run, my proof. */
  HELLO: 'hello',
  /** distributor → node: handshake accepted (with the distributor's proof). */
  WELCOME: 'welcome',
  /** either way, fatal: the sender closes the connection after it. */
  ERROR: 'error',
  PING: 'ping',
  /** distributor → node: a batch of jobs to store and run, numbered per connection. */
  DISPATCH: 'dispatch',
  /** node → distributor: every job of dispatch frame `seq` not rejected is in my store now. */
  ACCEPTED: 'accepted',
  /** node → distributor: of dispatch frame `seq`, I did not take these; route them elsewhere. */
  REJECTED: 'rejected',
  /** node → distributor: whether I take new jobs (false while draining or my store is down). */
  STATE: 'state',
  /** node → distributor: results of runs, in frames numbered per connection. */
  FEEDBACK: 'feedback',
  /** distributor → node: feedback frames up to `seq` were delivered; drop them from your outbox. */
  FEEDBACK_ACK: 'feedback-ack',
  /** distributor → node: cancel a job by id. */
  CANCEL: 'cancel',
  /** node → distributor: outcome of a cancel. */
  CANCEL_RESULT: 'cancel-result',
  /** node → distributor: these jobs wait out a retry backoff here; they hold no slot of my window. */
  WAITING: 'waiting',
  /**
   * node → distributor: this job pushed back (ctx.rateLimit): it waits here `seconds`, out
   * of my window; hold back its name (or its key) as long.
   */
  RATE_LIMITED: 'rate-limited',
  /**
   * distributor → node: this member now answers for these gone members of its group (it
   * adopted their spools): their jobs' feedback comes here while they are not connected.
   */
  ANSWERS: 'answers',
  /** distributor → node: an operator's request (admin API), answered by one ADMIN_RESULT with its `req`. */
  ADMIN: 'admin',
  /** node → distributor: the answer to ADMIN request `req`. */
  ADMIN_RESULT: 'admin-result',
  /** node → distributor: the latest progress values of running jobs (coalesced, unacknowledged). */
  PROGRESS: 'progress',
} as const
export type MessageType = (typeof MessageType)[keyof typeof MessageType]

/**
 * The options a job carries to its node, each absent when not given: how the node runs it.
 * The one list of them: the enqueue options, the distributor's resolved `JobOptions`, the
 * wire job and its reader below, and the node's `JobRecord` take their fields from here.
 */
export interface JobRunOptions {
  /** Seconds between runs of a periodic job; its first run is at `after`/`runAt`, else at once. */
  period?: number
  /**
   * A cron expression (five fields, or six with seconds first, or a nickname such as
   * `@daily`): the job runs at its occurrences, the first one at or after `after`/`runAt`,
   * else after enqueue. Exclusive with `period`.
   */
  cron?: string
  /** The IANA time zone `cron` is read in. @default 'UTC' */
  tz?: string
  /** Run the chain in a worker thread of the node. */
  defer?: boolean
  /** Attempts per run, overriding the node's `maxAttempt`. */
  maxAttempt?: number
  /** Backoff policy, overriding the node's. */
  retry?: RetryPolicy
  /** Per-attempt limit in seconds. */
  timeout?: number
}

/**
 * A job as it travels to a node. Times are absolute epoch ms. On the wire it is a tuple
 * [id, name, args, dueAt, run, options?] (written by encode.ts), since a map would repeat
 * every key name per job; `options` is a map of the JobRunOptions it carries.
 */
export interface WireJob extends JobRunOptions {
  id: string
  name: string
  args: Uint8Array
  dueAt: number
  /** Scheduled jobs: the run this dispatch starts at (re-dispatch after a lost node). */
  run: number
}

/**
 * On the wire a tuple [id, name, run, flags, args] with `args` a msgpack map inside the frame
 * and `name` nil when the node does not know it (a result stored before version 6). A
 * node sends the bytes it packed (and stored) for the result, written into the frame as
 * they are; a received item's args come out decoded with the rest of the frame, so the
 * distributor does not unpack every result on its own (that cost more than the rest of
 * handling a feedback).
 */
export interface WireFeedback {
  id: string
  /** The job's name: which named feedback handler runs where no closure is held for the job. */
  name?: string | undefined
  run: number
  kind: 'success' | 'error'
  final: boolean
  cancelled: boolean
  args: Uint8Array | JobArgsObject
}

/**
 * A job's latest progress value (see ctx.progress): on the wire a tuple [id, name, run, value].
 * `value` is a finite number or a map.
 */
export interface WireProgress {
  id: string
  /** The job's name: which named handler's `progress` runs where no closure is held for the job. */
  name: string
  run: number
  value: ProgressValue
}

/** What `ctx.progress` takes: a finite number or a small msgpack-serialisable map. */
export type ProgressValue = number | Record<string, unknown>

export type CancelOutcome = 'cancelled' | 'finished' | 'unknown'

export interface ChallengeMessage {
  type: typeof MessageType.CHALLENGE
  protocolVersion: number
  nonce: Uint8Array
  /** The distributor requires a proof of the shared secret. */
  auth: boolean
}
export interface HelloMessage {
  type: typeof MessageType.HELLO
  protocolVersion: number
  version: string
  node: string
  jobs: string[]
  concurrency: number
  /** Jobs the node will hold unaccepted-or-running at once; the distributor's window. */
  window: number
  durable: boolean
  /** The largest frame the node accepts; the distributor sends nothing bigger. */
  maxFrameSize?: number
  nonce: Uint8Array
  proof?: Uint8Array
}
export interface WelcomeMessage {
  type: typeof MessageType.WELCOME
  /** The distributor's group and member name: the node files its jobs and feedback under them. */
  group: string
  name: string
  /** Gone members of the group this one answers for (see ANSWERS); absent when none. */
  answersFor?: string[]
  heartbeatMs: number
  /** The largest frame the distributor accepts; the node sends nothing bigger. */
  maxFrameSize?: number
  proof?: Uint8Array
}
export interface ErrorMessage {
  type: typeof MessageType.ERROR
  code: string
  message: string
}
export interface PingMessage {
  type: typeof MessageType.PING
}
/**
 * Frame numbers start at 1 on every connection. A node answers each dispatch frame with
 * exactly one `accepted`, after any `rejected` for it: the distributor forgets the frame then.
 */
export interface DispatchMessage {
  type: typeof MessageType.DISPATCH
  seq: number
  jobs: WireJob[]
}
export interface AcceptedMessage {
  type: typeof MessageType.ACCEPTED
  seq: number
}
export interface RejectedMessage {
  type: typeof MessageType.REJECTED
  seq: number
  ids: string[]
  code: string
  message: string
}
/** Why a node takes no new jobs (what the admin API shows). */
export const NotAcceptingReason = {
  /** Its store is down or hung. */
  STORE_DOWN: 'store-down',
  /** It is shutting down. */
  DRAINING: 'draining',
  /** An operator quieted it. */
  QUIET: 'quiet',
  /** This distributor left the node's discovery sources: it finishes what it holds for it. */
  LEAVING: 'leaving',
} as const
export type NotAcceptingReason = (typeof NotAcceptingReason)[keyof typeof NotAcceptingReason]

export interface StateMessage {
  type: typeof MessageType.STATE
  accepting: boolean
  /** Set when `accepting` is false. */
  reason?: NotAcceptingReason
}
export interface FeedbackMessage {
  type: typeof MessageType.FEEDBACK
  seq: number
  items: WireFeedback[]
}
/** Cumulative: frames arrive and are handled in order on one connection. */
export interface FeedbackAckMessage {
  type: typeof MessageType.FEEDBACK_ACK
  seq: number
}
export interface CancelMessage {
  type: typeof MessageType.CANCEL
  id: string
}
export interface CancelResultMessage {
  type: typeof MessageType.CANCEL_RESULT
  id: string
  outcome: CancelOutcome
}
/**
 * A job that failed an attempt waits for its retry on the node's timer, as a delayed job
 * does: it stops counting against the window, or a burst of failing jobs in a long backoff
 * would keep an idle node from any other work.
 */
export interface WaitingMessage {
  type: typeof MessageType.WAITING
  ids: string[]
}

/** A job that threw RateLimited: a `waiting`, plus the pause its name (or key) takes at its distributor. */
export interface RateLimitedMessage {
  type: typeof MessageType.RATE_LIMITED
  id: string
  /** In (0, 86,400]. */
  seconds: number
}

export interface AnswersMessage {
  type: typeof MessageType.ANSWERS
  /** Member names of the sender's group. */
  names: string[]
}

/** Which of a node's jobs an admin listing asks for. */
export type NodeJobKind = 'running' | 'scheduled' | 'periodic' | 'failed'

/** What an operator asks of a node (see docs/protocol.md, "Admin requests"). */
export type AdminRequest =
  /** A page of its jobs of `kind`, from `cursor` (the `next` of the page before). */
  | { op: 'list'; kind: NodeJobKind; cursor?: string; limit: number }
  /** One job, held or stored. */
  | { op: 'job'; id: string }
  /** Run a failed job again, now. */
  | { op: 'retry'; id: string }
  /** Take no new jobs from any distributor (true), or take them again (false). */
  | { op: 'quiet'; quiet: boolean }

export interface AdminMessage {
  type: typeof MessageType.ADMIN
  /** Numbered per connection by the distributor: the answer names it. */
  req: number
  request: AdminRequest
}

/** A job as a node reports it to an operator. */
export interface NodeJobView {
  id: string
  name: string
  status: string
  attempt: number
  run: number
  dueAt: number
  period?: number
  cron?: string
  tz?: string
  lastError?: SerializedError
  /** msgpack bytes of the args (in answers about one job only: a page carries none). */
  args?: Uint8Array
  /** The last progress value the job reported while this node held it. */
  progress?: ProgressValue
}

/** Exactly one of `error` and the answer's fields by op: `jobs`/`next` (list), `job` (job, retry), `quiet`. */
export interface AdminResultMessage {
  type: typeof MessageType.ADMIN_RESULT
  req: number
  error?: { code: string; message: string }
  jobs?: NodeJobView[]
  next?: string
  job?: NodeJobView
  quiet?: boolean
}

/**
 * Best effort, like a log line: nothing acknowledges it, and a value sent while the link is
 * down is not sent again (the next one, or the job's feedback, follows).
 */
export interface ProgressMessage {
  type: typeof MessageType.PROGRESS
  items: WireProgress[]
}

export type Message =
  | ChallengeMessage
  | HelloMessage
  | WelcomeMessage
  | ErrorMessage
  | PingMessage
  | DispatchMessage
  | AcceptedMessage
  | RejectedMessage
  | StateMessage
  | FeedbackMessage
  | FeedbackAckMessage
  | CancelMessage
  | CancelResultMessage
  | WaitingMessage
  | RateLimitedMessage
  | AnswersMessage
  | AdminMessage
  | AdminResultMessage
  | ProgressMessage
