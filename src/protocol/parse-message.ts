import { MAX_RATE_LIMIT_SECONDS, ProtocolError } from '../errors.js'
import { DEFAULT_CRON_ZONE, parseCron } from '../scheduling/cron.js'
import type { RetryPolicy } from '../scheduling/retry.js'
import { shareEmptyArgs } from './args.js'
import {
  MessageType,
  type JobRunOptions,
  type WireJob,
  type WireFeedback,
  type HelloMessage,
  type WelcomeMessage,
  type Message,
  type WireProgress,
  NotAcceptingReason,
} from './messages.js'
import { adminRequest, adminResult } from './parse-admin.js'
import {
  bool,
  bytes,
  bytesV,
  fail,
  list,
  num,
  numV,
  obj,
  type Obj,
  oneOf,
  optional,
  plainMap,
  posInt,
  posIntV,
  progressValue,
  type Reader,
  str,
  strV,
  strings,
  tuple,
} from './wire-values.js'

/**
 * Validation of what peers send: decoded msgpack is `unknown` until it passes through
 * parseMessage(). Also the wire forms the encoder shares with it (run options, flags).
 */

function retryPolicy(o: Obj, key: string, path: string): RetryPolicy {
  const p = obj(o[key], `${path}.${key}`)
  const where = `${path}.${key}`
  switch (p['strategy']) {
    case 'linear':
      return { strategy: 'linear', multiplier: num(p, 'multiplier', where) }
    case 'fixed':
      return { strategy: 'fixed', delay: num(p, 'delay', where) }
    case 'exponential':
      return {
        strategy: 'exponential',
        base: num(p, 'base', where),
        max: num(p, 'max', where),
        jitter: num(p, 'jitter', where),
      }
    default:
      return fail(`${where}.strategy`, "'linear', 'fixed' or 'exponential'", p['strategy'])
  }
}

/**
 * How each option a job carries is read off the wire, in wire order. Its type makes it the
 * checked list of JobRunOptions: an option missing here, or one that is not there, fails
 * the build.
 */
const RUN_OPTION_READERS: { readonly [K in keyof JobRunOptions]-?: Reader<NonNullable<JobRunOptions[K]>> } = {
  period: num,
  cron: str,
  tz: str,
  defer: bool,
  maxAttempt: posInt,
  retry: retryPolicy,
  timeout: num,
}

/** Every option a job may carry to its node, in the order the wire's options map holds them. */
export const JOB_RUN_OPTIONS = Object.freeze(Object.keys(RUN_OPTION_READERS) as (keyof JobRunOptions)[])

/** Sets option `key` of `target` (typed per key, for a loop over JOB_RUN_OPTIONS). */
export function setRunOption<K extends keyof JobRunOptions>(
  target: JobRunOptions,
  key: K,
  value: JobRunOptions[K],
): void {
  target[key] = value
}

function readRunOption<K extends keyof JobRunOptions>(job: JobRunOptions, o: Obj, key: K, path: string): void {
  // The table's type pairs each key with its reader; indexed by a key, TS sees only the union of them.
  const value = optional(o, key, RUN_OPTION_READERS[key] as Reader<JobRunOptions[K]>, path)
  if (value !== undefined) setRunOption(job, key, value)
}

function wireJob(value: unknown, path: string): WireJob {
  const t = tuple(value, path, 5, 6)
  const job: WireJob = {
    id: strV(t[0], `${path}.id`),
    name: strV(t[1], `${path}.name`),
    args: shareEmptyArgs(bytesV(t[2], `${path}.args`)),
    dueAt: numV(t[3], `${path}.dueAt`),
    run: posIntV(t[4], `${path}.run`),
  }
  if (t[5] === undefined || t[5] === null) return job
  // Named as fields of the job: to a user they are its options, wherever the wire puts them.
  const o = obj(t[5], `${path}.options`)
  for (const key of JOB_RUN_OPTIONS) readRunOption(job, o, key, path)
  // A schedule the node could not step would fail after its first run: refused here instead.
  if (job.cron !== undefined || job.tz !== undefined) checkSchedule(job, path)
  return job
}

function checkSchedule(job: WireJob, path: string): void {
  if (job.cron === undefined) throw new ProtocolError(`'${path}.tz' was sent without '${path}.cron'`)
  try {
    parseCron(job.cron, job.tz ?? DEFAULT_CRON_ZONE)
  } catch (err) {
    throw new ProtocolError(`'${path}.options': ${(err as Error).message}`)
  }
}

/** The options of a job that go on the wire, or undefined when it has none. */
export function jobExtras(job: WireJob): Obj | undefined {
  // By name first: the usual job has none, and a keyed load per option name would be a
  // slow lookup of a missing property on every job dispatched. KEEP IN STEP with
  // JobRunOptions (a unit test checks every option against it).
  if (
    job.period === undefined &&
    job.cron === undefined &&
    job.tz === undefined &&
    job.defer === undefined &&
    job.maxAttempt === undefined &&
    job.retry === undefined &&
    job.timeout === undefined
  ) {
    return undefined
  }
  let extras: Obj | undefined
  for (const key of JOB_RUN_OPTIONS) {
    if (job[key] !== undefined) (extras ??= {})[key] = job[key]
  }
  return extras
}

/** Feedback flags on the wire, one bit each. */
const ERROR_KIND = 1
const FINAL = 2
const CANCELLED = 4

function wireFeedback(value: unknown, path: string): WireFeedback {
  const t = tuple(value, path, 5, 5)
  const flags = t[3]
  if (typeof flags !== 'number' || !Number.isInteger(flags) || flags < 0 || flags > 7) {
    fail(`${path}.flags`, 'an integer from 0 to 7', flags)
  }
  return {
    id: strV(t[0], `${path}.id`),
    name: t[1] === null || t[1] === undefined ? undefined : strV(t[1], `${path}.name`),
    run: posIntV(t[2], `${path}.run`),
    kind: (flags & ERROR_KIND) === 0 ? 'success' : 'error',
    final: (flags & FINAL) !== 0,
    cancelled: (flags & CANCELLED) !== 0,
    args: plainMap(t[4], `${path}.args`),
  }
}

function wireProgress(value: unknown, path: string): WireProgress {
  const t = tuple(value, path, 4, 4)
  return {
    id: strV(t[0], `${path}.id`),
    name: strV(t[1], `${path}.name`),
    run: posIntV(t[2], `${path}.run`),
    value: progressValue(t[3], `${path}.value`),
  }
}

export function feedbackFlags(f: WireFeedback): number {
  return (f.kind === 'error' ? ERROR_KIND : 0) | (f.final ? FINAL : 0) | (f.cancelled ? CANCELLED : 0)
}

/** The optional fields hello and welcome share: a proof of the secret, a frame limit. */
function handshakeExtras<M extends { proof?: Uint8Array; maxFrameSize?: number }>(o: Obj, p: string, message: M): M {
  const proof = optional(o, 'proof', bytes, p)
  if (proof !== undefined) message.proof = proof
  const maxFrameSize = optional(o, 'maxFrameSize', posInt, p)
  if (maxFrameSize !== undefined) message.maxFrameSize = maxFrameSize
  return message
}

const NOT_ACCEPTING_REASONS = Object.values(NotAcceptingReason)

/** Validates a decoded frame into a Message, or throws ProtocolError naming the bad field. */
export function parseMessage(value: unknown): Message {
  const o = obj(value, 'message')
  const type = o['type']
  const p = typeof type === 'string' ? type : 'message'
  switch (type) {
    case MessageType.CHALLENGE:
      return {
        type,
        protocolVersion: posInt(o, 'protocolVersion', p),
        nonce: bytes(o, 'nonce', p),
        auth: bool(o, 'auth', p),
      }
    case MessageType.HELLO: {
      const hello: HelloMessage = {
        type,
        protocolVersion: posInt(o, 'protocolVersion', p),
        version: str(o, 'version', p),
        node: str(o, 'node', p),
        jobs: strings(o, 'jobs', p),
        concurrency: posInt(o, 'concurrency', p),
        window: posInt(o, 'window', p),
        durable: bool(o, 'durable', p),
        nonce: bytes(o, 'nonce', p),
      }
      return handshakeExtras(o, p, hello)
    }
    case MessageType.WELCOME: {
      const welcome: WelcomeMessage = {
        type,
        group: str(o, 'group', p),
        name: str(o, 'name', p),
        heartbeatMs: posInt(o, 'heartbeatMs', p),
      }
      const answersFor = optional(o, 'answersFor', strings, p)
      if (answersFor !== undefined) welcome.answersFor = answersFor
      return handshakeExtras(o, p, welcome)
    }
    case MessageType.ERROR:
      return { type, code: str(o, 'code', p), message: str(o, 'message', p) }
    case MessageType.PING:
      return { type }
    case MessageType.DISPATCH:
      return { type, seq: posInt(o, 'seq', p), jobs: list(o, 'jobs', p, wireJob) }
    case MessageType.ACCEPTED:
      return { type, seq: posInt(o, 'seq', p) }
    case MessageType.REJECTED:
      return {
        type,
        seq: posInt(o, 'seq', p),
        ids: strings(o, 'ids', p),
        code: str(o, 'code', p),
        message: str(o, 'message', p),
      }
    case MessageType.STATE: {
      const reason = o['reason']
      if (reason === undefined || reason === null) return { type, accepting: bool(o, 'accepting', p) }
      return { type, accepting: bool(o, 'accepting', p), reason: oneOf(reason, `${p}.reason`, NOT_ACCEPTING_REASONS) }
    }
    case MessageType.FEEDBACK:
      return { type, seq: posInt(o, 'seq', p), items: list(o, 'items', p, wireFeedback) }
    case MessageType.FEEDBACK_ACK:
      return { type, seq: posInt(o, 'seq', p) }
    case MessageType.CANCEL:
      return { type, id: str(o, 'id', p) }
    case MessageType.CANCEL_RESULT: {
      const outcome = o['outcome']
      if (outcome !== 'cancelled' && outcome !== 'finished' && outcome !== 'unknown') {
        fail(`${p}.outcome`, "'cancelled', 'finished' or 'unknown'", outcome)
      }
      return { type, id: str(o, 'id', p), outcome }
    }
    case MessageType.WAITING:
      return { type, ids: strings(o, 'ids', p) }
    case MessageType.RATE_LIMITED: {
      const seconds = o['seconds']
      if (typeof seconds !== 'number' || !(seconds > 0) || !(seconds <= MAX_RATE_LIMIT_SECONDS))
        fail(`${p}.seconds`, `a number in (0, ${MAX_RATE_LIMIT_SECONDS}]`, seconds)
      return { type, id: str(o, 'id', p), seconds }
    }
    case MessageType.ANSWERS:
      return { type, names: strings(o, 'names', p) }
    case MessageType.ADMIN:
      return { type, req: posInt(o, 'req', p), request: adminRequest(o['request'], `${p}.request`) }
    case MessageType.ADMIN_RESULT:
      return adminResult(o, p)
    case MessageType.PROGRESS:
      return { type, items: list(o, 'items', p, wireProgress) }
    default:
      throw new ProtocolError(
        typeof type === 'string' ? `unknown message type '${type.slice(0, 64)}'` : `'message.type' must be a string`,
      )
  }
}
