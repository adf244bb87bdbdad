import type { TlsOptions } from 'node:tls'
import { resolveMetricsOptions, type MetricsOptions, type MetricsRegistry } from '../admin/metrics/prom-client.js'
import {
  booleanOption,
  integerOption,
  checkInteger,
  checkKnownKeys,
  checkNumber,
  checkPlainOptions,
  checkSecret,
  checkString,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_HOST,
  DEFAULT_ACCEPT_TIMEOUT_MS,
  DEFAULT_FEEDBACK_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_HANDSHAKE_BYTES,
  MIN_MAX_FRAME_SIZE,
  DEFAULT_MAX_PENDING,
  DEFAULT_PORT,
  DEFAULT_STALL_TIMEOUT_MS,
  DEFAULT_LEASE_MS,
  DEFAULT_STORE_TIMEOUT_MS,
  describe,
  isLoopback,
} from '../config.js'
import { InvalidArgumentError } from '../errors.js'
import { checkAdvertise, checkGroup, checkMemberName, DEFAULT_GROUP, generatedName } from '../protocol/identity.js'
import { DEFAULT_CRON_ZONE, firstRunAt, isScheduled, parseCron } from '../scheduling/cron.js'
import { checkStorageUrl } from '../storage/redis/url.js'
import { checkLimitKey, resolveLimits, type Limit, type LimitOptions } from './limit-options.js'
import { DEFAULT_MAX_FRAME_SIZE, HANDSHAKE_MAX_FRAME_SIZE } from '../protocol/frame.js'
import { createLogger, resolveLogLevel, type Logger, type LogLevel } from '../logger.js'
import type { JobRunOptions } from '../protocol/messages.js'
import { NO_JOB_OPTIONS, type JobOptions } from './job-options.js'
import type { ProgressCallback } from './progress-router.js'
import { normalizeRetry, type RetryPolicy } from '../scheduling/retry.js'
import { resolveUniqueOptions, type ResolvedUniqueOptions, type UniqueOptions } from './unique.js'

export interface DistributorOptions {
  /** Address to listen on. Non-loopback needs `secret` or `tls`, or `insecure: true`. @default '127.0.0.1' */
  host?: string
  /** Port to listen on; 0 picks a free one (read it from `distributor.port`). @default 5000 */
  port?: number
  /** Shared secret (16+ characters) that nodes must prove they know. @default undefined */
  secret?: string
  /** Serve the link over TLS (node:tls server options: cert, key, ca, requestCert …). */
  tls?: TlsOptions
  /** Allow listening on a non-loopback address with neither secret nor TLS. @default false */
  insecure?: boolean
  /** Jobs waiting for a node, past which `enqueue` throws QueueFullError. @default 1_000_000 */
  maxPending?: number
  /** Largest frame accepted or sent, in bytes. @default 16 MiB */
  maxFrameSize?: number
  /** Heartbeat interval; a node silent for 3 intervals is gone. @default 5000 */
  heartbeatMs?: number
  /** A connection that has not completed the handshake by then is dropped. @default 10000 */
  handshakeTimeoutMs?: number
  /** A node that stops reading for this long is dropped. @default 30000 */
  stallTimeoutMs?: number
  /** Simultaneous connections accepted. @default 1024 */
  maxConnections?: number
  /**
   * Bytes that connections still in their handshake may hold buffered, all together; a
   * connection that would go past it is dropped (a node redials). @default 4 MiB
   */
  maxHandshakeBytes?: number
  /**
   * Jobs a node has held this long without accepting them (it stores them first) are taken
   * back and sent elsewhere; the node gets no more until it answers. @default 10000
   */
  acceptTimeoutMs?: number
  /**
   * A node's feedback is acknowledged once its closure or handler settled; one that has not
   * settled this long is let go with a warning, and its feedback acknowledged (a hung closure
   * must not hold back a node's outbox for ever). @default 30000
   */
  feedbackTimeoutMs?: number
  /** A job with `node` waits for that node. @default JR.config.alwaysUseSpecifiedNode */
  alwaysUseSpecifiedNode?: boolean
  /**
   * The application this distributor belongs to: its replicas share a group, and what one
   * member leaves behind another one receives. @default 'default'
   */
  group?: string
  /**
   * This member of the group. Nodes file its jobs and their feedback under (group, name), so
   * a distributor started again with the same name receives what was owed to it, at any
   * address. @default the advertised `host:port`
   */
  name?: string
  /**
   * The `host:port` nodes should dial, when it is not the listening address (listening on
   * 0.0.0.0, in a container, behind NAT). @default `host:port` (the host name for a wildcard host)
   */
  advertise?: string
  /**
   * Where enqueued jobs are kept until a durable node holds them or they end: 'memory'
   * (this process only) or a Redis URL (`redis://`, `rediss://`, `redis-cluster://`), the
   * group's durable spool: a job whose `persisted` resolved survives a crash of this
   * process, and a restart with the same name, or another member of the group, dispatches
   * it again. @default 'memory'
   */
  storage?: string
  /** With a spool: a member silent this long is gone, and another member adopts its work. @default 15000 */
  leaseMs?: number
  /**
   * With a spool: Redis silent this long while calls wait counts as failing them (a hung
   * server as one that refuses): a spool write is retried, start() rejects, close() does not
   * wait for it. @default 5000
   */
  storeTimeoutMs?: number
  /**
   * Prometheus metrics (`distributor.metrics`, `distributor.metricsHandler()`): counted
   * always; `{ registry }` reports them through the application's prom-client registry
   * instead of one of their own. @default a registry of their own, made on first read
   */
  metrics?: MetricsOptions
  /**
   * Limits by job name, as `distributor.limit(name, limit)` sets them: at most `concurrency`
   * jobs of the name in flight at once, at most `rate.max` dispatched in any `rate.per`
   * seconds, per `limitKey` with `perKey`.
   * @default none
   */
  limits?: Record<string, LimitOptions>
  logger?: Logger
  /** @default 'info' (or JR_LOG_LEVEL) */
  logLevel?: LogLevel
}

export interface ResolvedDistributorOptions {
  host: string
  port: number
  secret: string | undefined
  tls: TlsOptions | undefined
  maxPending: number
  maxFrameSize: number
  heartbeatMs: number
  handshakeTimeoutMs: number
  stallTimeoutMs: number
  maxConnections: number
  maxHandshakeBytes: number
  acceptTimeoutMs: number
  feedbackTimeoutMs: number
  alwaysUseSpecifiedNode: boolean
  group: string
  /** Undefined until the port is known: the default name is the advertised address. */
  name: string | undefined
  advertise: string | undefined
  /** A Redis URL, or undefined for no spool. */
  storage: string | undefined
  leaseMs: number
  storeTimeoutMs: number
  /** The application's registry (option `metrics.registry`); undefined: one of their own. */
  metricsRegistry: MetricsRegistry | undefined
  limits: ReadonlyMap<string, Limit>
  logger: Logger
}

/**
 * The keys of an options type, listed once and checked by the compiler: a key missing from
 * `keys`, or one the type does not have, fails the build. In the order given (error
 * messages list them so).
 */
function optionKeys<T>(keys: { [K in keyof Required<T>]: true }): readonly string[] {
  return Object.freeze(Object.keys(keys))
}

const DISTRIBUTOR_KEYS = optionKeys<DistributorOptions>({
  host: true,
  port: true,
  secret: true,
  tls: true,
  insecure: true,
  maxPending: true,
  maxFrameSize: true,
  heartbeatMs: true,
  handshakeTimeoutMs: true,
  stallTimeoutMs: true,
  maxConnections: true,
  maxHandshakeBytes: true,
  acceptTimeoutMs: true,
  feedbackTimeoutMs: true,
  alwaysUseSpecifiedNode: true,
  group: true,
  name: true,
  advertise: true,
  storage: true,
  leaseMs: true,
  storeTimeoutMs: true,
  metrics: true,
  limits: true,
  logger: true,
  logLevel: true,
})

export function resolveDistributorOptions(
  input: unknown,
  defaults: { alwaysUseSpecifiedNode: boolean },
): ResolvedDistributorOptions {
  const o = checkPlainOptions('distributor', input)
  checkKnownKeys('distributor', o, DISTRIBUTOR_KEYS)
  const host = o['host'] === undefined ? DEFAULT_HOST : checkString('host', o['host'])
  const secret = checkSecret('secret', o['secret'])
  const tls = o['tls'] === undefined ? undefined : (checkPlainOptions('tls', o['tls']) as TlsOptions)
  const insecure = booleanOption(o, 'insecure', false)
  if (!isLoopback(host) && secret === undefined && tls === undefined && !insecure) {
    throw new InvalidArgumentError(
      `refusing to listen on non-loopback host '${host}' without 'secret' or 'tls': anyone who reaches the port could take jobs; pass insecure: true to do it anyway`,
    )
  }
  const logLevel = resolveLogLevel(o['logLevel'])
  const group = o['group'] === undefined ? DEFAULT_GROUP : checkGroup('group', o['group'])
  const advertise = o['advertise'] === undefined ? undefined : checkAdvertise('advertise', o['advertise'])
  const storage =
    o['storage'] === undefined || o['storage'] === 'memory' ? undefined : checkStorageUrl('storage', o['storage'])
  // A spooled member's work is adopted by the group when it is gone: a name of its own per
  // process does no harm. Without a spool the address is the name (known once listening),
  // so that a restart at the same address receives what is owed to it.
  const name =
    o['name'] === undefined ? (storage === undefined ? undefined : generatedName()) : checkMemberName('name', o['name'])
  return {
    host,
    port: integerOption(o, 'port', DEFAULT_PORT, 0, 65535),
    secret,
    tls,
    maxPending: integerOption(o, 'maxPending', DEFAULT_MAX_PENDING, 1),
    maxFrameSize: integerOption(o, 'maxFrameSize', DEFAULT_MAX_FRAME_SIZE, MIN_MAX_FRAME_SIZE, 2 ** 31 - 1),
    heartbeatMs: integerOption(o, 'heartbeatMs', DEFAULT_HEARTBEAT_MS, 10),
    handshakeTimeoutMs: integerOption(o, 'handshakeTimeoutMs', DEFAULT_HANDSHAKE_TIMEOUT_MS, 1),
    stallTimeoutMs: integerOption(o, 'stallTimeoutMs', DEFAULT_STALL_TIMEOUT_MS, 1),
    maxConnections: integerOption(o, 'maxConnections', DEFAULT_MAX_CONNECTIONS, 1),
    maxHandshakeBytes: integerOption(o, 'maxHandshakeBytes', DEFAULT_MAX_HANDSHAKE_BYTES, HANDSHAKE_MAX_FRAME_SIZE),
    acceptTimeoutMs: integerOption(o, 'acceptTimeoutMs', DEFAULT_ACCEPT_TIMEOUT_MS, 1),
    feedbackTimeoutMs: integerOption(o, 'feedbackTimeoutMs', DEFAULT_FEEDBACK_TIMEOUT_MS, 1),
    alwaysUseSpecifiedNode: booleanOption(o, 'alwaysUseSpecifiedNode', defaults.alwaysUseSpecifiedNode),
    group,
    name,
    advertise,
    storage,
    leaseMs: integerOption(o, 'leaseMs', DEFAULT_LEASE_MS, 100),
    storeTimeoutMs: integerOption(o, 'storeTimeoutMs', DEFAULT_STORE_TIMEOUT_MS, 1),
    metricsRegistry: resolveMetricsOptions(o['metrics']),
    limits: resolveLimits(o['limits']),
    logger:
      (o['logger'] as Logger | undefined) ??
      createLogger(logLevel).child({ group, ...(name === undefined ? {} : { distributor: name }) }),
  }
}

// ---------------------------------------------------------------------------------------

/**
 * Options of `enqueue`: when the job runs, where, and how (`period`, `defer`, `maxAttempt`,
 * `timeout`: see JobRunOptions, what it carries to its node).
 */
export interface EnqueueOptions extends Omit<JobRunOptions, 'retry'> {
  /** Run this many seconds after enqueue (fractions allowed). */
  after?: number
  /** Run at this instant. */
  runAt?: Date | number
  /** Prefer this node (with alwaysUseSpecifiedNode: wait for it). */
  node?: string
  /** Never run on this node. */
  notNode?: string
  /** Linear backoff multiplier in seconds, overriding the node's. */
  retryMultiplier?: number
  /** Backoff policy (or a linear multiplier), overriding the node's. */
  retry?: number | RetryPolicy
  /**
   * Called with each progress value the job reports (`ctx.progress`), coalesced to about
   * ten a second, the last one before its run's success or error closure. Held by this
   * process only: it never goes to the node or the spool.
   */
  onProgress?: ProgressCallback
  /**
   * One job per key and job name: a duplicate enqueue creates nothing (or replaces, or
   * reschedules) and its handle says so in `handle.unique` (docs/configuration.md).
   */
  unique?: UniqueOptions
  /**
   * The key a limit (concurrency, rate) of its name counts it under (`distributor.limit(name, {
   * perKey: true })`), e.g. a customer id; ignored while its name has no limit. Not for
   * periodic or cron jobs.
   */
  limitKey?: string
  /**
   * Jobs of a higher priority leave the queue first, within their route (and their
   * `limitKey`'s line); an integer in -1000..1000. @default 0
   */
  priority?: number
}

/** Enqueue options, validated, with the due time made absolute. */
export interface ResolvedEnqueueOptions {
  dueAt: number
  job: JobOptions
  /** Kept apart from `job`: what travels to the node and the spool is `job`. */
  onProgress: ProgressCallback | undefined
  /** Kept at the distributor, never sent to the node. */
  unique: ResolvedUniqueOptions | undefined
}

const ENQUEUE_KEYS = optionKeys<EnqueueOptions>({
  after: true,
  runAt: true,
  period: true,
  cron: true,
  tz: true,
  node: true,
  notNode: true,
  defer: true,
  maxAttempt: true,
  retryMultiplier: true,
  retry: true,
  timeout: true,
  onProgress: true,
  unique: true,
  limitKey: true,
  priority: true,
})

function checkProgressCallback(value: unknown): ProgressCallback | undefined {
  if (value === undefined || typeof value === 'function') return value as ProgressCallback | undefined
  throw new InvalidArgumentError(`'onProgress' must be a function, got ${describe(value)}`)
}

/** Bounds of the `priority` enqueue option: a route holds one lane per priority in use. */
export const MAX_PRIORITY = 1000

/** The `priority` enqueue option; 0 is undefined, so that such a job is one without it. */
function checkPriority(value: unknown): number | undefined {
  const priority = checkInteger('priority', value, -MAX_PRIORITY, MAX_PRIORITY)
  return priority === 0 ? undefined : priority
}

export function resolveEnqueueOptions(input: unknown, now: number): ResolvedEnqueueOptions {
  const o = checkPlainOptions('enqueue', input)
  // One pass over what was given (on every enqueue: most give nothing, or only a delay).
  let onlyDelay = true
  let onProgress: ProgressCallback | undefined
  for (const key in o) {
    if (!ENQUEUE_KEYS.includes(key) && Object.hasOwn(o, key)) checkKnownKeys('enqueue', o, ENQUEUE_KEYS)
    // The job's closure, like onSuccess: it stays in this process, and shares the options of a job without it.
    if (key === 'onProgress') onProgress = checkProgressCallback(o[key])
    else if (key !== 'after' && key !== 'runAt' && key !== 'unique' && o[key] !== undefined) onlyDelay = false
  }
  if (o['after'] !== undefined && o['runAt'] !== undefined) {
    throw new InvalidArgumentError(`'after' and 'runAt' are exclusive: give one`)
  }
  if (o['retry'] !== undefined && o['retryMultiplier'] !== undefined) {
    throw new InvalidArgumentError(`'retry' and 'retryMultiplier' are exclusive: give one`)
  }
  let dueAt = now
  if (o['after'] !== undefined) dueAt = now + checkNumber('after', o['after']) * 1000
  const runAt = o['runAt']
  if (runAt !== undefined) {
    const ms = runAt instanceof Date ? runAt.getTime() : runAt
    if (typeof ms !== 'number' || !Number.isFinite(ms)) {
      throw new InvalidArgumentError(`'runAt' must be a Date or epoch milliseconds, got ${describe(runAt)}`)
    }
    dueAt = ms
  }
  dueAt = Math.round(dueAt)
  if (onlyDelay)
    return {
      dueAt,
      job: NO_JOB_OPTIONS,
      onProgress,
      unique: o['unique'] === undefined ? undefined : resolveUniqueOptions(o['unique'], false),
    }
  const period = o['period'] === undefined ? undefined : checkNumber('period', o['period'], 0.001)
  let cron: string | undefined
  let tz: string | undefined
  if (o['cron'] !== undefined) {
    if (period !== undefined) throw new InvalidArgumentError(`'cron' and 'period' are exclusive: give one`)
    const schedule = parseCron(o['cron'], o['tz'] ?? DEFAULT_CRON_ZONE)
    cron = schedule.expression
    if (o['tz'] !== undefined) tz = schedule.zone
    dueAt = firstRunAt(schedule, dueAt)
  } else if (o['tz'] !== undefined) {
    throw new InvalidArgumentError(`'tz' is the time zone of a 'cron' schedule: give 'cron' too`)
  }
  const limitKey = o['limitKey'] === undefined ? undefined : checkLimitKey(o['limitKey'])
  if (limitKey !== undefined && (period !== undefined || cron !== undefined))
    throw new InvalidArgumentError(
      `'limitKey' is for one-shot jobs: a periodic or cron job would hold its slot for its whole life`,
    )
  let retry: RetryPolicy | undefined
  if (o['retry'] !== undefined) retry = normalizeRetry(o['retry'], 'retry')
  if (o['retryMultiplier'] !== undefined) {
    retry = { strategy: 'linear', multiplier: checkNumber('retryMultiplier', o['retryMultiplier']) }
  }
  const job: JobOptions = {
    period,
    cron,
    tz,
    node: o['node'] === undefined ? undefined : checkString('node', o['node']),
    notNode: o['notNode'] === undefined ? undefined : checkString('notNode', o['notNode']),
    defer: booleanOption(o, 'defer', false),
    maxAttempt: integerOption(o, 'maxAttempt', undefined, 1),
    retry,
    timeout: o['timeout'] === undefined ? undefined : checkNumber('timeout', o['timeout'], 0.001),
    limitKey,
    priority: o['priority'] === undefined ? undefined : checkPriority(o['priority']),
  }
  const unique = o['unique'] === undefined ? undefined : resolveUniqueOptions(o['unique'], isScheduled(job))
  return { dueAt, job, onProgress, unique }
}
