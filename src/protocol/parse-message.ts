import { MAX_RATE_LIMIT_SECONDS, ProtocolError, type SerializedError } from '../errors.js'
import { DEFAULT_CRON_ZONE, parseCron } from '../scheduling/cron.js'
import type { RetryPolicy } from '../scheduling/retry.js'
import { shareEmptyArgs, type JobArgsObject } from './args.js'
import {
  MessageType,
  type JobRunOptions,
  type WireJob,
  type WireFeedback,
  type HelloMessage,
  type WelcomeMessage,
  type Message,
  type AdminRequest,
  type AdminResultMessage,
  type NodeJobView,
  type ProgressValue,
  type WireProgress,
  NotAcceptingReason,
} from './messages.js'
import { isPlainMap } from './progress-value.js'

/**
 * Validation of what peers send: decoded msgpack is `unknown` until it passes through
 * parseMessage(). Also the wire forms the encoder shares with it (run options, flags).
 */

// Decoded msgpack is `unknown` until it passes through parseMessage(); each
// reader names the offending field so a log line says exactly what a peer got wrong.

type Obj = Record<string, unknown>

function fail(path: string, expected: string, got: unknown): never {
  const shown = got === null ? 'null' : Array.isArray(got) ? 'array' : typeof got
  throw new ProtocolError(`'${path}' must be ${expected}, got ${shown}`)
}

function obj(value: unknown, path: string): Obj {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    fail(path, 'a map', value)
  }
  return value as Obj
}

// Value checkers name the field by `path`; the Obj readers below are them applied to a key.

function strV(v: unknown, path: string): string {
  if (typeof v !== 'string') fail(path, 'a string', v)
  return v
}

function numV(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(path, 'a finite number', v)
  return v
}

function posIntV(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) fail(path, 'a non-negative integer', v)
  return v
}

function bytesV(v: unknown, path: string): Uint8Array {
  if (!(v instanceof Uint8Array)) fail(path, 'binary', v)
  return v
}

function str(o: Obj, key: string, path: string): string {
  return strV(o[key], `${path}.${key}`)
}

function num(o: Obj, key: string, path: string): number {
  return numV(o[key], `${path}.${key}`)
}

function posInt(o: Obj, key: string, path: string): number {
  return posIntV(o[key], `${path}.${key}`)
}

function bool(o: Obj, key: string, path: string): boolean {
  const v = o[key]
  if (typeof v !== 'boolean') fail(`${path}.${key}`, 'a boolean', v)
  return v
}

function bytes(o: Obj, key: string, path: string): Uint8Array {
  return bytesV(o[key], `${path}.${key}`)
}

/** An array of `min` to `max` items: the wire form of the per-job records. */
function tuple(value: unknown, path: string, min: number, max: number): unknown[] {
  if (!Array.isArray(value)) fail(path, `an array of ${min === max ? min : `${min} to ${max}`} items`, value)
  if (value.length < min || value.length > max) {
    throw new ProtocolError(`'${path}' must have ${min === max ? min : `${min} to ${max}`} items, got ${value.length}`)
  }
  return value
}

function arr(o: Obj, key: string, path: string): unknown[] {
  const v = o[key]
  if (!Array.isArray(v)) fail(`${path}.${key}`, 'an array', v)
  return v
}

function strings(o: Obj, key: string, path: string): string[] {
  const list = arr(o, key, path)
  for (let i = 0; i < list.length; i++) {
    if (typeof list[i] !== 'string') fail(`${path}.${key}[${i}]`, 'a string', list[i])
  }
  return list as string[]
}

function optional<T>(o: Obj, key: string, read: (o: Obj, key: string, path: string) => T, path: string): T | undefined {
  return o[key] === undefined || o[key] === null ? undefined : read(o, key, path)
}

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

type Reader<T> = (o: Obj, key: string, path: string) => T

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

/** Args reach feedback closures: a map, never a Date, Set or other value msgpackr can make. */
function plainMap(value: unknown, path: string): JobArgsObject {
  const o = obj(value, path)
  if (!isPlainMap(o)) fail(path, 'a map', value)
  return o
}

/** A progress value reaches closures too: a finite number or a plain map (size is the node's to bound). */
function progressValue(value: unknown, path: string): ProgressValue {
  return typeof value === 'number' ? numV(value, path) : plainMap(value, path)
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

function list<T>(o: Obj, key: string, path: string, read: (v: unknown, path: string) => T): T[] {
  const items = arr(o, key, path)
  const out = new Array<T>(items.length)
  for (let i = 0; i < items.length; i++) out[i] = read(items[i], `${path}.${key}[${i}]`)
  return out
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
const NODE_JOB_KINDS = ['running', 'scheduled', 'periodic', 'failed'] as const

function oneOf<T extends string>(value: unknown, path: string, allowed: readonly T[]): T {
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T
  return fail(path, allowed.map((a) => `'${a}'`).join(' or '), value)
}

function adminRequest(value: unknown, p: string): AdminRequest {
  const o = obj(value, p)
  switch (o['op']) {
    case 'list': {
      const request: AdminRequest = {
        op: 'list',
        kind: oneOf(o['kind'], `${p}.kind`, NODE_JOB_KINDS),
        limit: posInt(o, 'limit', p),
      }
      const cursor = optional(o, 'cursor', str, p)
      if (cursor !== undefined) request.cursor = cursor
      return request
    }
    case 'job':
      return { op: 'job', id: str(o, 'id', p) }
    case 'retry':
      return { op: 'retry', id: str(o, 'id', p) }
    case 'quiet':
      return { op: 'quiet', quiet: bool(o, 'quiet', p) }
    default:
      return fail(`${p}.op`, "'list', 'job', 'retry' or 'quiet'", o['op'])
  }
}

function serializedError(o: Obj, key: string, p: string): SerializedError {
  const e = obj(o[key], `${p}.${key}`)
  const where = `${p}.${key}`
  const err: SerializedError = { name: str(e, 'name', where), message: str(e, 'message', where) }
  const stack = optional(e, 'stack', str, where)
  if (stack !== undefined) err.stack = stack
  const code = optional(e, 'code', str, where)
  if (code !== undefined) err.code = code
  return err
}

function nodeJobView(value: unknown, p: string): NodeJobView {
  const o = obj(value, p)
  const view: NodeJobView = {
    id: str(o, 'id', p),
    name: str(o, 'name', p),
    status: str(o, 'status', p),
    attempt: posInt(o, 'attempt', p),
    run: posInt(o, 'run', p),
    dueAt: num(o, 'dueAt', p),
  }
  const period = optional(o, 'period', num, p)
  if (period !== undefined) view.period = period
  const cron = optional(o, 'cron', str, p)
  if (cron !== undefined) view.cron = cron
  const tz = optional(o, 'tz', str, p)
  if (tz !== undefined) view.tz = tz
  const lastError = optional(o, 'lastError', serializedError, p)
  if (lastError !== undefined) view.lastError = lastError
  const args = optional(o, 'args', bytes, p)
  if (args !== undefined) view.args = args
  if (o['progress'] !== undefined && o['progress'] !== null)
    view.progress = progressValue(o['progress'], `${p}.progress`)
  return view
}

function adminResult(o: Obj, p: string): AdminResultMessage {
  const result: AdminResultMessage = { type: MessageType.ADMIN_RESULT, req: posInt(o, 'req', p) }
  if (o['error'] !== undefined && o['error'] !== null) {
    const e = obj(o['error'], `${p}.error`)
    result.error = { code: str(e, 'code', `${p}.error`), message: str(e, 'message', `${p}.error`) }
  }
  if (o['jobs'] !== undefined && o['jobs'] !== null) result.jobs = list(o, 'jobs', p, nodeJobView)
  const next = optional(o, 'next', str, p)
  if (next !== undefined) result.next = next
  if (o['job'] !== undefined && o['job'] !== null) result.job = nodeJobView(o['job'], `${p}.job`)
  const quiet = optional(o, 'quiet', bool, p)
  if (quiet !== undefined) result.quiet = quiet
  return result
}

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
