import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis'
import { createRequire } from 'node:module'
import { InvalidArgumentError, StoreError, type SerializedError } from '../errors.js'
import { unpack } from '../protocol/msgpack.js'
import type { MsgpackWriter } from '../protocol/msgpack-writer.js'
import type { RetryPolicy } from '../scheduling/retry.js'
import { DEFAULT_KEY_PREFIX, type NodeKeys, nodeKeys } from './keys.js'
import { APPLY_LUA, MAX_BATCH_OPS, OpWriter } from './redis-batch.js'
import {
  FeedbackKind,
  type FeedbackId,
  type FeedbackRecord,
  type JobPatch,
  type JobRecord,
  JobStatus,
  type ListJobsFilter,
  type NodeLeases,
  type Store,
  feedbackKey,
  isUnfinished,
} from './store.js'

export interface RedisStoreOptions {
  /** Name of the node whose state this is; the Redis Cluster hash tag of all its keys. */
  node: string
  /**
   * `redis://[user:password@]host[:port][/db]`, `rediss://…` for TLS, or
   * `redis-cluster://[user:password@]host:port,host:port` for Redis Cluster.
   * Exclusive with `redis`.
   * @default 'redis://127.0.0.1:6379'
   */
  url?: string
  /**
   * A client the application already has. The store uses it as it is configured and does
   * not close it in close(). Exclusive with `url`.
   */
  redis?: Redis | Cluster
  /** Namespace of every key. @default 'jr:' */
  prefix?: string
}

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379'
const DEFAULT_REDIS_PORT = 6379
/** Bounds open() against a host that drops packets instead of refusing the connection. */
const CONNECT_TIMEOUT_MS = 5_000
const RECONNECT_MAX_DELAY_MS = 2_000

export interface RedisAddress {
  host: string
  port: number
}

/** What a storage URL names; `parseStorageUrl` builds it. */
export type RedisTarget =
  | ({ kind: 'single'; db: number } & RedisAddress & RedisAuth)
  | ({ kind: 'cluster'; nodes: RedisAddress[] } & RedisAuth)

export interface RedisAuth {
  tls: boolean
  username?: string
  password?: string
}

const SCHEMES: Record<string, { kind: RedisTarget['kind']; tls: boolean }> = {
  'redis:': { kind: 'single', tls: false },
  'rediss:': { kind: 'single', tls: true },
  'redis-cluster:': { kind: 'cluster', tls: false },
  'rediss-cluster:': { kind: 'cluster', tls: true },
}

/**
 * Parses `redis://[user:password@]host[:port][/db]` (`rediss://` for TLS) and
 * `redis-cluster://[user:password@]host:port,host:port` (`rediss-cluster://` for TLS).
 * Hand-written because WHATWG URL cannot hold a comma-separated host list.
 */
export function parseStorageUrl(url: string): RedisTarget {
  const shown = typeof url === 'string' ? JSON.stringify(redactUrl(url)) : String(url)
  const bad = (why: string): InvalidArgumentError =>
    new InvalidArgumentError(`storage url ${shown} ${why}`)
  if (typeof url !== 'string') throw bad('must be a string')
  const sep = url.indexOf('://')
  const scheme = sep === -1 ? undefined : SCHEMES[url.slice(0, sep + 1).toLowerCase()]
  if (scheme === undefined) {
    throw bad('must start with redis://, rediss://, redis-cluster:// or rediss-cluster://')
  }
  const rest = url.slice(sep + 3)
  if (/[?#]/.test(rest)) throw bad('must not have a query or fragment')
  const slash = rest.indexOf('/')
  const authority = slash === -1 ? rest : rest.slice(0, slash)
  const path = slash === -1 ? '' : rest.slice(slash + 1)

  const auth: RedisAuth = { tls: scheme.tls }
  const at = authority.lastIndexOf('@')
  if (at !== -1) {
    const userinfo = authority.slice(0, at)
    const colon = userinfo.indexOf(':')
    const user = decodeURIComponent(colon === -1 ? userinfo : userinfo.slice(0, colon))
    if (user !== '') auth.username = user
    if (colon !== -1) auth.password = decodeURIComponent(userinfo.slice(colon + 1))
  }
  const hostList = authority.slice(at + 1)
  const nodes = hostList === '' ? [] : hostList.split(',').map((h) => parseAddress(h, bad))
  if (nodes.length === 0) throw bad('names no host')

  if (scheme.kind === 'cluster') {
    if (path !== '' && path !== '0') throw bad('cannot select a database: Redis Cluster has only db 0')
    return { kind: 'cluster', nodes, ...auth }
  }
  const [node] = nodes
  if (node === undefined || nodes.length > 1) {
    throw bad('names several hosts: use redis-cluster:// for Redis Cluster')
  }
  if (path !== '' && !/^\d{1,5}$/.test(path)) throw bad(`has database '${path}', not an integer`)
  return { kind: 'single', ...node, db: path === '' ? 0 : Number(path), ...auth }
}

function parseAddress(text: string, bad: (why: string) => InvalidArgumentError): RedisAddress {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d+))?$/.exec(text)
  if (m === null) throw bad(`has a bad host '${text}'`)
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!
  const port = m[2] === undefined ? DEFAULT_REDIS_PORT : Number(m[2])
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw bad(`has port ${m[2]}, not in 1..65535`)
  }
  return { host, port }
}

/** The URL with its password replaced, fit for messages and logs. */
export function redactUrl(url: string): string {
  const sep = url.indexOf('://')
  if (sep === -1) return url
  const rest = url.slice(sep + 3)
  const slash = rest.indexOf('/')
  const authority = slash === -1 ? rest : rest.slice(0, slash)
  const at = authority.lastIndexOf('@')
  if (at === -1) return url
  const userinfo = authority.slice(0, at)
  const colon = userinfo.indexOf(':')
  if (colon === -1) return url
  return `${url.slice(0, sep + 3)}${userinfo.slice(0, colon)}:***${rest.slice(at)}`
}

/** KEYS: an id set. ARGV: job key prefix, status filter ('' for all). Flat field/value arrays. */
const LIST_JOBS_LUA = `
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. id
  if ARGV[2] == '' or redis.call('HGET', key, 'status') == ARGV[2] then
    local fields = redis.call('HGETALL', key)
    if #fields > 0 then out[#out + 1] = fields end
  end
end
return out
`

/** Take or renew: the lease goes to ARGV[1] unless another holder has it. */
const ACQUIRE_LEASE_LUA = `
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder
`

const RELEASE_LEASE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`

type Arg = string | Buffer
type State = 'created' | 'opening' | 'open' | 'closed'

/** Job writes of one turn, sent together; `done` settles for all of them at once. */
interface Batch {
  writer: OpWriter
  /**
   * Updates held back until the batch is sent, by job: a removal of the job later in the
   * same batch makes them moot. The usual case is an instant job, whose attempt starts and
   * ends within one turn: its attempt-start update would cost Redis an EXISTS, HSET and
   * SADD on a record the same script deletes, and the node the encoding of it.
   */
  updates: Map<string, JobPatch> | undefined
  done: Promise<void>
  settle(err: StoreError | undefined): void
}

/**
 * What an operation on a job does with an update of it held back in the batch: writes it
 * first (the order of one job's operations is kept), drops it (the job is removed: the
 * update would never be seen), or keeps holding it (another update, merged in).
 */
const HELD_FIRST = 0
const HELD_DROPPED = 1
const HELD_KEPT = 2
type Held = typeof HELD_FIRST | typeof HELD_DROPPED | typeof HELD_KEPT

/** Writes the update of job `id` held back in `batch`, if any: an operation on it follows. */
function writeHeldUpdate(batch: Batch, id: string): void {
  const patch = batch.updates?.get(id)
  if (patch === undefined) return
  batch.updates?.delete(id)
  writeUpdate(batch.writer, id, patch)
}

function writeUpdate(w: OpWriter, id: string, patch: JobPatch): void {
  w.value('u').value(id).value(unfinishedOp(patch))
  writePatch(w, patch)
}

/** The commands defineCommand adds; the names are prefixed so as not to clash on a shared client. */
interface ScriptCommands {
  jrApply(...keysThenArgs: Arg[]): Promise<number>
  jrListJobsBuffer(...keysThenArgs: Arg[]): Promise<Buffer[][]>
  jrAcquireLease(...keysThenArgs: Arg[]): Promise<string>
  jrReleaseLease(...keysThenArgs: Arg[]): Promise<number>
}

/**
 * The Store on Redis (single server or Cluster) through ioredis. Durable: a node restarted
 * with the same name finds its unfinished jobs and pending feedback. Key layout: keys.ts.
 *
 * Lifecycle: created → open → closed. Job writes of one event-loop turn share one script
 * call (redis-batch.ts); every other method is one round trip. Each checks the state first
 * and turns any client error into a StoreError that names the node and the server.
 */
export class RedisStore implements Store, NodeLeases {
  readonly durable = true
  private readonly client: Redis | Cluster
  private readonly scripts: ScriptCommands
  private readonly keys: NodeKeys
  private readonly prefix: string
  private readonly node: string
  private readonly owned: boolean
  private readonly label: string
  private state: State = 'created'
  private batch: Batch | undefined
  /** The last connection error, so "connection is down" failures can say why. */
  private lastConnectionError: Error | undefined

  constructor(options: RedisStoreOptions) {
    if (options === null || typeof options !== 'object') {
      throw new InvalidArgumentError("RedisStore options must be an object with a 'node'")
    }
    this.prefix = options.prefix ?? DEFAULT_KEY_PREFIX
    this.keys = nodeKeys(options.node, this.prefix)
    this.node = options.node
    if (options.redis !== undefined) {
      if (options.url !== undefined) {
        throw new InvalidArgumentError("'url' and 'redis' are exclusive: give one of them")
      }
      // The scripts build job keys from the store's prefix and cannot see a client prefix.
      if (options.redis.options.keyPrefix) {
        throw new InvalidArgumentError(
          "the 'redis' client has a keyPrefix: give the store's 'prefix' option instead",
        )
      }
      this.client = options.redis
      this.owned = false
      this.label = 'the given redis client'
    } else {
      const url = options.url ?? DEFAULT_REDIS_URL
      this.client = createClient(parseStorageUrl(url), () => this.state === 'open')
      this.owned = true
      this.label = redactUrl(url)
      // Without a listener ioredis prints every failed reconnect; the cause surfaces
      // instead in the StoreError of the next command that fails.
      this.client.on('error', (err: Error) => {
        this.lastConnectionError = err
      })
    }
    this.client.defineCommand('jrApply', { lua: APPLY_LUA, numberOfKeys: 3 })
    this.client.defineCommand('jrListJobs', { lua: LIST_JOBS_LUA, numberOfKeys: 1, readOnly: true })
    this.client.defineCommand('jrAcquireLease', { lua: ACQUIRE_LEASE_LUA, numberOfKeys: 1 })
    this.client.defineCommand('jrReleaseLease', { lua: RELEASE_LEASE_LUA, numberOfKeys: 1 })
    this.scripts = this.client as unknown as ScriptCommands
  }

  async open(): Promise<void> {
    if (this.state === 'open') return
    if (this.state !== 'created') throw this.stateError()
    this.state = 'opening'
    try {
      // Our own client connects lazily, so this is the one bounded attempt (the retry
      // strategy refuses to retry until open). A given client is checked with a PING.
      if (this.owned) {
        await this.client.connect()
        // A cluster connects to its masters on first use; connecting them here checks
        // that they are reachable and spares the first burst of commands the retries
        // ioredis makes for a node connection still being set up.
        if (this.client.isCluster) {
          await Promise.all((this.client as Cluster).nodes('master').map((master) => master.ping()))
        }
      } else {
        await this.client.ping()
      }
    } catch (err) {
      if (this.owned) this.client.disconnect()
      // close() may have run during the await; TS would narrow state to 'opening'.
      if ((this.state as State) === 'closed') throw this.stateError()
      this.state = 'created'
      const cause = this.lastConnectionError ?? err
      this.lastConnectionError = undefined
      throw new StoreError(
        `cannot reach redis at ${this.label} for node '${this.node}': ${messageOf(cause)}`,
        { cause },
      )
    }
    if ((this.state as State) !== 'opening') {
      // close() was called while connecting: stay closed.
      if (this.owned) this.client.disconnect()
      throw this.stateError()
    }
    this.state = 'open'
  }

  async ping(): Promise<void> {
    this.check()
    try {
      await this.client.ping()
    } catch (err) {
      throw this.failure('ping', err)
    }
  }

  saveJobs(jobs: readonly JobRecord[]): Promise<void> {
    if (this.state !== 'open') return Promise.reject(this.stateError())
    // More jobs than a batch holds span several batches: the save settles with all of them.
    const batches = new Set<Promise<void>>()
    for (const job of jobs) {
      batches.add(
        this.write(job.id, HELD_FIRST, (w) => {
          w.value('s').value(job.id).value(isUnfinished(job.status) ? '1' : '0')
          writeJob(w, job)
        }),
      )
    }
    if (batches.size <= 1) return batches.values().next().value ?? Promise.resolve()
    return Promise.all(batches).then(() => undefined)
  }

  updateJob(id: string, patch: JobPatch): Promise<void> {
    // A patch with an error (JSON) is written at once: its encoding may fail, and must fail
    // this call, not the whole batch when it is sent.
    if (patch.lastError !== undefined) return this.write(id, HELD_FIRST, (w) => writeUpdate(w, id, patch))
    return this.write(id, HELD_KEPT, (_w, batch) => {
      const updates = (batch.updates ??= new Map())
      const held = updates.get(id)
      // Two updates merged are the same HSETs, and the later status decides membership.
      updates.set(id, held === undefined ? patch : mergePatches(held, patch))
    })
  }

  finishRun(id: string, patch: JobPatch, feedback: FeedbackRecord, remove: boolean): Promise<void> {
    return this.write(id, remove ? HELD_DROPPED : HELD_FIRST, (w) => {
      w.value('f').value(id).number(feedback.run).nested((m) => writeFeedback(m, feedback))
      // The patch of a job the script removes would never be read.
      if (remove) w.value('1').value('').number(0)
      else {
        w.value('0').value(unfinishedOp(patch))
        writePatch(w, patch)
      }
    })
  }

  async getJob(id: string): Promise<JobRecord | undefined> {
    this.check()
    const key = this.keys.job(id)
    let fields: Record<string, Buffer>
    try {
      fields = await this.client.hgetallBuffer(key)
    } catch (err) {
      throw this.failure('getJob', err)
    }
    return Object.keys(fields).length === 0 ? undefined : decodeJob(key, fields)
  }

  removeJob(id: string): Promise<void> {
    return this.write(id, HELD_DROPPED, (w) => w.value('r').value(id))
  }

  listUnfinished(): Promise<JobRecord[]> {
    return this.list('listUnfinished', this.keys.unfinished, '')
  }

  listJobs(filter?: ListJobsFilter): Promise<JobRecord[]> {
    return this.list('listJobs', this.keys.jobs, filter?.status ?? '')
  }

  async listFeedback(): Promise<FeedbackRecord[]> {
    this.check()
    let entries: Record<string, Buffer>
    try {
      entries = await this.client.hgetallBuffer(this.keys.outbox)
    } catch (err) {
      throw this.failure('listFeedback', err)
    }
    return Object.entries(entries).map(([field, bytes]) => decodeFeedback(this.keys.outbox, field, bytes))
  }

  async ackFeedback(refs: readonly FeedbackId[]): Promise<void> {
    this.check()
    if (refs.length === 0) return
    try {
      await this.client.hdel(this.keys.outbox, ...refs.map((r) => feedbackKey(r.jobId, r.run)))
    } catch (err) {
      throw this.failure('ackFeedback', err)
    }
  }

  async acquireLease(node: string, holder: string, ttlMs: number): Promise<string> {
    this.check()
    const keys = nodeKeys(node, this.prefix)
    try {
      const owner = await this.scripts.jrAcquireLease(keys.lease, holder, String(Math.ceil(ttlMs)))
      // A node announces itself with its own lease, so that peers can find it (a separate
      // command: the shared set lies outside the node's cluster slot).
      if (owner === holder && node === holder) await this.client.sadd(keys.nodes, node)
      return owner
    } catch (err) {
      throw this.failure('acquireLease', err)
    }
  }

  async releaseLease(node: string, holder: string): Promise<void> {
    this.check()
    try {
      await this.scripts.jrReleaseLease(nodeKeys(node, this.prefix).lease, holder)
    } catch (err) {
      throw this.failure('releaseLease', err)
    }
  }

  async listNodes(): Promise<string[]> {
    this.check()
    try {
      return await this.client.smembers(this.keys.nodes)
    } catch (err) {
      throw this.failure('listNodes', err)
    }
  }

  forNode(node: string): RedisStore {
    const store = new RedisStore({ node, redis: this.client, prefix: this.prefix })
    store.state = this.state === 'open' ? 'open' : store.state
    return store
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return
    // Writes made before close() still go out (and settle) before the connection ends.
    const pending = this.batch?.done
    this.flushBatch()
    this.state = 'closed'
    await pending?.catch(() => {})
    if (!this.owned) return
    // quit() lets replies in flight arrive; a client that is not connected has nothing to
    // wait for, and quit() would be refused without the offline queue.
    if (this.client.status === 'ready') {
      try {
        await this.client.quit()
        return
      } catch {
        // the connection failed under quit: fall through and drop it
      }
    }
    this.client.disconnect()
  }

  /**
   * Adds one job operation to this turn's batch (see APPLY_LUA) and returns the batch's
   * promise: it settles when Redis has applied the whole batch, in order.
   */
  private write(id: string, held: Held, add: (writer: OpWriter, batch: Batch) => void): Promise<void> {
    if (this.state !== 'open') return Promise.reject(this.stateError())
    let batch = this.batch
    if (batch === undefined || batch.writer.ops >= MAX_BATCH_OPS) batch = this.startBatch()
    // Before the mark: a failure of this operation must not take the earlier update with it.
    if (held === HELD_FIRST) writeHeldUpdate(batch, id)
    const mark = batch.writer.mark()
    try {
      add(batch.writer, batch)
    } catch (err) {
      // Half an operation would make the script misread every one after it.
      batch.writer.rewind(mark)
      return Promise.reject(err instanceof StoreError ? err : this.failure('encoding a job operation', err))
    }
    if (held === HELD_DROPPED) batch.updates?.delete(id)
    batch.writer.ops++
    return batch.done
  }

  private startBatch(): Batch {
    this.flushBatch()
    let settle!: (err: StoreError | undefined) => void
    const done = new Promise<void>((resolve, reject) => {
      settle = (err) => (err === undefined ? resolve() : reject(err))
    })
    const batch: Batch = { writer: new OpWriter(), updates: undefined, done, settle }
    this.batch = batch
    setImmediate(() => {
      if (this.batch === batch) this.flushBatch()
    })
    return batch
  }

  private flushBatch(): void {
    const batch = this.batch
    if (batch === undefined) return
    this.batch = undefined
    const { writer } = batch
    for (const [id, patch] of batch.updates ?? []) writeUpdate(writer, id, patch)
    this.scripts.jrApply(this.keys.unfinished, this.keys.jobs, this.keys.outbox, this.keys.jobPrefix, writer.bytes()).then(
      () => batch.settle(undefined),
      (err: unknown) => batch.settle(this.failure(`write of ${writer.ops} job operation(s)`, err)),
    )
  }

  private async list(op: string, setKey: string, status: string): Promise<JobRecord[]> {
    this.check()
    let rows: Buffer[][]
    try {
      rows = await this.scripts.jrListJobsBuffer(setKey, this.keys.jobPrefix, status)
    } catch (err) {
      throw this.failure(op, err)
    }
    return rows.map((row) => {
      const fields: Record<string, Buffer> = {}
      for (let i = 0; i + 1 < row.length; i += 2) fields[row[i]!.toString()] = row[i + 1]!
      return decodeJob(`${this.keys.jobPrefix}${fields['id']?.toString() ?? '?'}`, fields)
    })
  }

  private check(): void {
    if (this.state !== 'open') throw this.stateError()
  }

  private stateError(): StoreError {
    const what = { created: 'not open', opening: 'still opening', open: 'open', closed: 'closed' }[
      this.state
    ]
    return new StoreError(`redis store for node '${this.node}' is ${what}`)
  }

  private failure(op: string, err: unknown): StoreError {
    let detail = messageOf(err)
    if (this.client.status !== 'ready' && this.lastConnectionError !== undefined) {
      detail += ` (connection: ${this.lastConnectionError.message})`
    }
    return new StoreError(
      `redis ${op} failed for node '${this.node}' at ${this.label}: ${detail}`,
      { cause: err },
    )
  }
}

/**
 * ioredis, loaded when the first store makes its own client: an application or a node on
 * memory storage does not pay for loading it (a third of this package's import time).
 */
function loadIoredis(): typeof import('ioredis') {
  return createRequire(import.meta.url)('ioredis') as typeof import('ioredis')
}

/*
 * Connection policy. Before open() succeeds the retry strategy says no, so an unreachable
 * server fails open() after one attempt bounded by the connect timeout, instead of
 * ioredis retrying forever in silence. After open it reconnects forever with capped
 * backoff: a node outlives a Redis restart.
 *
 * While disconnected, commands fail at once (enableOfflineQueue: false) and commands in
 * flight when the connection drops fail on that drop (maxRetriesPerRequest: 0), rather
 * than waiting in a client-side queue. Callers answer peers on the strength of a store
 * call (a job is "accepted" only once stored), so a prompt StoreError lets the node refuse
 * or retry on its own terms, and the distributor re-dispatch elsewhere, while a queued
 * write would hold every caller for as long as Redis is away. Every write here is
 * idempotent, so a caller retrying a write that did reach Redis does no harm.
 *
 * No auto-pipelining: job writes are batched per turn by the store itself (redis-batch.ts),
 * and for the few other commands ioredis's pipeline per tick cost more than it saved.
 */
function createClient(target: RedisTarget, isOpen: () => boolean): Redis | Cluster {
  const { Cluster, Redis } = loadIoredis()
  const retry = (times: number): number | null =>
    isOpen() ? Math.min(times * 100, RECONNECT_MAX_DELAY_MS) : null
  const connection: RedisOptions = {
    connectTimeout: CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
  }
  if (target.username !== undefined) connection.username = target.username
  if (target.password !== undefined) connection.password = target.password
  if (target.tls) connection.tls = {}
  if (target.kind === 'single') {
    return new Redis({
      ...connection,
      host: target.host,
      port: target.port,
      db: target.db,
      lazyConnect: true,
      enableOfflineQueue: false,
      retryStrategy: retry,
    })
  }
  const options: ClusterOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    // The ready check's CLUSTER INFO is itself refused without the offline queue, and a
    // failed ready check leaves connect() pending forever (ioredis 6.0). open() checks
    // the masters with a PING instead.
    enableReadyCheck: false,
    clusterRetryStrategy: retry,
    redisOptions: connection,
  }
  return new Cluster(target.nodes, options)
}

/**
 * `later` over `earlier`, field by field. A field `later` gives as undefined is left alone,
 * as one update after the other would (a spread would erase it).
 */
function mergePatches(earlier: JobPatch, later: JobPatch): JobPatch {
  const merged: Record<string, unknown> = { ...earlier }
  for (const [field, value] of Object.entries(later)) if (value !== undefined) merged[field] = value
  return merged as JobPatch
}

function unfinishedOp(patch: JobPatch): string {
  if (patch.status === undefined) return ''
  return isUnfinished(patch.status) ? 'add' : 'rem'
}

/**
 * A job's fields in the order APPLY_LUA's save op reads them (redis-batch.ts), then its
 * optional fields as name/value pairs: the names of the fixed ones need not travel.
 */
function writeJob(w: OpWriter, job: JobRecord): void {
  w.value(job.name)
    .value(job.args)
    .value(job.status)
    .number(job.attempt)
    .number(job.run)
    .number(job.dueAt)
    .number(job.runDueAt)
    .value(job.defer ? '1' : '0')
    .value(job.distributor)
    .number(job.createdAt)
  const { period, maxAttempt, retry, timeout, failedAt, lastError } = job
  w.number(count(period, maxAttempt, retry, timeout, failedAt, lastError))
  if (period !== undefined) w.value('period').number(period)
  if (maxAttempt !== undefined) w.value('maxAttempt').number(maxAttempt)
  if (retry !== undefined) w.value('retry').value(JSON.stringify(retry))
  if (timeout !== undefined) w.value('timeout').number(timeout)
  if (failedAt !== undefined) w.value('failedAt').number(failedAt)
  if (lastError !== undefined) w.value('lastError').value(JSON.stringify(lastError))
}

/** A patch as n name/value pairs; a field set to undefined is left alone, as in MemoryStore. */
function writePatch(w: OpWriter, patch: JobPatch): void {
  const { status, attempt, run, dueAt, runDueAt, failedAt, lastError } = patch
  w.number(count(status, attempt, run, dueAt, runDueAt, failedAt, lastError))
  if (status !== undefined) w.value('status').value(status)
  if (attempt !== undefined) w.value('attempt').number(attempt)
  if (run !== undefined) w.value('run').number(run)
  if (dueAt !== undefined) w.value('dueAt').number(dueAt)
  if (runDueAt !== undefined) w.value('runDueAt').number(runDueAt)
  if (failedAt !== undefined) w.value('failedAt').number(failedAt)
  if (lastError !== undefined) w.value('lastError').value(JSON.stringify(lastError))
}

function count(...values: unknown[]): number {
  let n = 0
  for (const v of values) if (v !== undefined) n++
  return n
}

const STATUSES = new Set<string>(Object.values(JobStatus))

/** Throws a StoreError naming the key rather than hand a half-read record to the node. */
function decodeJob(key: string, fields: Record<string, Buffer>): JobRecord {
  const corrupt = (field: string, why: string): StoreError =>
    new StoreError(`job record ${key} is corrupt: field '${field}' ${why}`)
  const str = (field: string): string => {
    const v = fields[field]
    if (v === undefined) throw corrupt(field, 'is missing')
    return v.toString()
  }
  const number = (field: string): number => {
    const n = Number(str(field))
    if (Number.isNaN(n)) throw corrupt(field, 'is not a number')
    return n
  }
  const json = <T>(field: string): T => {
    try {
      return JSON.parse(str(field)) as T
    } catch {
      throw corrupt(field, 'is not JSON')
    }
  }
  const args = fields['args']
  if (args === undefined) throw corrupt('args', 'is missing')
  const status = str('status')
  if (!STATUSES.has(status)) throw corrupt('status', `has unknown value '${status}'`)
  const job: JobRecord = {
    id: str('id'),
    name: str('name'),
    args,
    status: status as JobStatus,
    attempt: number('attempt'),
    run: number('run'),
    dueAt: number('dueAt'),
    runDueAt: number('runDueAt'),
    defer: str('defer') === '1',
    distributor: str('distributor'),
    createdAt: number('createdAt'),
  }
  if (fields['period'] !== undefined) job.period = number('period')
  if (fields['maxAttempt'] !== undefined) job.maxAttempt = number('maxAttempt')
  if (fields['retry'] !== undefined) job.retry = json<RetryPolicy>('retry')
  if (fields['timeout'] !== undefined) job.timeout = number('timeout')
  if (fields['failedAt'] !== undefined) job.failedAt = number('failedAt')
  if (fields['lastError'] !== undefined) job.lastError = json<SerializedError>('lastError')
  return job
}

/**
 * A feedback record as stored: a msgpack tuple [jobId, run, distributor, kind, final,
 * cancelled, args]. A tuple rather than a map: it is written for every finished run, and
 * packing a map walks and writes every key name each time.
 */
/** The stored form of a feedback: a msgpack tuple (read back by decodeFeedback). */
function writeFeedback(w: MsgpackWriter, f: FeedbackRecord): void {
  w.arrayHeader(7)
  w.str(f.jobId)
  w.num(f.run)
  w.str(f.distributor)
  w.str(f.kind)
  w.bool(f.final)
  w.bool(f.cancelled)
  w.bin(f.args)
}

function decodeFeedback(key: string, field: string, bytes: Buffer): FeedbackRecord {
  let value: unknown
  try {
    value = unpack(bytes)
  } catch (err) {
    throw new StoreError(`feedback ${field} in ${key} is not msgpack`, { cause: err })
  }
  const [jobId, run, distributor, kind, final, cancelled, args] = Array.isArray(value) ? value : []
  if (
    !Array.isArray(value) ||
    value.length !== 7 ||
    typeof jobId !== 'string' ||
    typeof run !== 'number' ||
    typeof distributor !== 'string' ||
    (kind !== FeedbackKind.SUCCESS && kind !== FeedbackKind.ERROR) ||
    typeof final !== 'boolean' ||
    typeof cancelled !== 'boolean' ||
    !(args instanceof Uint8Array)
  ) {
    throw new StoreError(`feedback ${field} in ${key} is not a feedback record`)
  }
  return { jobId, run, distributor, kind, final, cancelled, args }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
