import type { Cluster, Redis } from 'ioredis'
import { InvalidArgumentError, StoreError } from '../../errors.js'
import {
  type FeedbackId,
  type FeedbackRecord,
  type JobPage,
  type JobPatch,
  type JobRecord,
  type ListJobsFilter,
  type NodeLeases,
  type Store,
  feedbackKey,
  isUnfinished,
} from '../store.js'
import {
  type Batch,
  HELD_DROPPED,
  HELD_FIRST,
  HELD_KEPT,
  type Held,
  MAX_BATCH_OPS,
  mergePatches,
  writeHeldUpdate,
  writeUpdate,
} from './batch.js'
import { connectClient, createClient, dropClient, quitClient } from './client.js'
import { OpWriter } from './op-writer.js'
import {
  type EncodedPatch,
  decodeFeedback,
  decodeJob,
  encodePatch,
  unfinishedOp,
  writeFeedback,
  writeJob,
  writePatch,
} from './codec.js'
import { DEFAULT_KEY_PREFIX, type NodeKeys, nodeKeys } from './keys.js'
import { type ScriptCommands, defineScripts } from './scripts.js'
import { DEFAULT_REDIS_URL, parseStorageUrl, redactUrl } from './url.js'

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

/** Jobs read per call when listing (see RedisStore.list). */
const LIST_PAGE = 5000

type State = 'created' | 'opening' | 'open' | 'closed'

/**
 * The Store on Redis (single server or Cluster) through ioredis. Durable: a node restarted
 * with the same name finds its unfinished jobs and pending feedback. Key layout: keys.ts.
 *
 * Lifecycle: created → opening → open → closed; a failed open() goes back to created.
 * Job writes of one event-loop turn share one script call (batch.ts); every other method
 * is one round trip. Each checks the state first and turns any client error into a
 * StoreError that names the node and the server.
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
  /** True once the failed index is known to be complete (its marker seen or set). */
  private failedIndexed = false
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
        throw new InvalidArgumentError("the 'redis' client has a keyPrefix: give the store's 'prefix' option instead")
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
    this.scripts = defineScripts(this.client)
  }

  async open(): Promise<void> {
    if (this.state === 'open') return
    if (this.state !== 'created') throw this.stateError()
    this.state = 'opening'
    try {
      // A given client is checked with a PING.
      if (this.owned) await connectClient(this.client)
      else await this.client.ping()
    } catch (err) {
      if (this.owned) dropClient(this.client)
      // close() may have run during the await; TS would narrow state to 'opening'.
      if ((this.state as State) === 'closed') throw this.stateError()
      this.state = 'created'
      const cause = this.lastConnectionError ?? err
      this.lastConnectionError = undefined
      throw new StoreError(`cannot reach redis at ${this.label} for node '${this.node}': ${messageOf(cause)}`, {
        cause,
      })
    }
    if ((this.state as State) !== 'opening') {
      // close() was called while connecting: stay closed.
      if (this.owned) dropClient(this.client)
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
          w.value('s')
            .value(job.id)
            .value(isUnfinished(job.status) ? '1' : '0')
          writeJob(w, job)
        }),
      )
    }
    if (batches.size <= 1) return batches.values().next().value ?? Promise.resolve()
    return Promise.all(batches).then(() => undefined)
  }

  updateJob(id: string, patch: JobPatch): Promise<void> {
    // A patch with an error (JSON) is written at once: its encoding may fail, and must fail
    // this call, not the whole batch when it is sent. A progress value is encoded here, for
    // the same reason, and held: a job that reports and ends within one turn costs Redis
    // nothing more when its end removes it.
    if (patch.lastError !== undefined) return this.write(id, HELD_FIRST, (w) => writeUpdate(w, id, encodePatch(patch)))
    let encoded: EncodedPatch
    try {
      encoded = encodePatch(patch)
    } catch (err) {
      return Promise.reject(this.failure('encoding a progress value', err))
    }
    return this.write(id, HELD_KEPT, (_w, batch) => {
      const updates = (batch.updates ??= new Map())
      const held = updates.get(id)
      // Two updates merged are the same HSETs, and the later status decides membership.
      updates.set(id, held === undefined ? encoded : mergePatches(held, encoded))
    })
  }

  finishRun(id: string, patch: JobPatch, feedback: FeedbackRecord, remove: boolean): Promise<void> {
    return this.write(id, remove ? HELD_DROPPED : HELD_FIRST, (w) => {
      w.value('f')
        .value(id)
        .number(feedback.run)
        .nested((m) => writeFeedback(m, feedback))
      // The patch of a job the script removes would never be read.
      if (remove) w.value('1').value('').number(0)
      else {
        w.value('0').value(unfinishedOp(patch))
        writePatch(w, encodePatch(patch))
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

  listUnfinished(progress?: () => void): Promise<JobRecord[]> {
    return this.list('listUnfinished', this.keys.unfinished, '', progress)
  }

  listJobs(filter?: ListJobsFilter, progress?: () => void): Promise<JobRecord[]> {
    return this.list('listJobs', this.keys.jobs, filter?.status ?? '', progress)
  }

  /**
   * From the failed index (keys.ts), in id order; the cursor is the last id given. A page
   * costs about count + 1 job reads, plus the stale ids it meets (each met once). The first
   * page of a store written before the index existed first fills it: one pass over every
   * job, once (see fillFailedIndex).
   */
  async listFailedPage(cursor: string | undefined, count: number, progress?: () => void): Promise<JobPage> {
    this.check()
    if (!Number.isInteger(count) || count < 1) {
      throw new InvalidArgumentError(`'count' must be an integer ≥ 1, got ${String(count)}`)
    }
    const jobs: JobRecord[] = []
    let from = cursor ?? ''
    try {
      if (!this.failedIndexed) await this.fillFailedIndex(progress)
      for (;;) {
        const [state, last, ...rows] = await this.scripts.jrListFailedBuffer(
          this.keys.failed,
          this.keys.jobPrefix,
          from,
          String(count - jobs.length),
        )
        progress?.()
        for (const row of rows) jobs.push(this.decodeRow(row))
        const s = state.toString()
        if (s === 'more') return { jobs, next: last.toString() }
        if (s !== 'partial') return { jobs }
        from = last.toString()
      }
    } catch (err) {
      throw err instanceof StoreError ? err : this.failure('listFailedPage', err)
    }
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
    if (this.owned) await quitClient(this.client)
  }

  /**
   * Adds one job operation to this turn's batch (see APPLY_LUA, batch.ts) and returns the batch's
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
    this.scripts
      .jrApply(
        this.keys.unfinished,
        this.keys.jobs,
        this.keys.outbox,
        this.keys.failed,
        this.keys.jobPrefix,
        writer.bytes(),
      )
      .then(
        () => batch.settle(undefined),
        (err: unknown) => batch.settle(this.failure(`write of ${writer.ops} job operation(s)`, err)),
      )
  }

  /**
   * The jobs whose ids are in `setKey`: the ids in one command, then the records a page at a
   * time, `progress` after each. One script over the whole set kept Redis busy, and silent,
   * for seconds (600,000 jobs: longer than the default store deadline, so a node with that
   * many could not start). A job removed between the two is left out.
   */
  private async list(op: string, setKey: string, status: string, progress?: () => void): Promise<JobRecord[]> {
    this.check()
    const rows: Buffer[][] = []
    try {
      const ids = await this.client.smembers(setKey)
      progress?.()
      for (let from = 0; from < ids.length; from += LIST_PAGE) {
        const page = await this.scripts.jrListJobsBuffer(
          setKey,
          this.keys.jobPrefix,
          status,
          ...ids.slice(from, from + LIST_PAGE),
        )
        for (const row of page) rows.push(row)
        progress?.()
      }
    } catch (err) {
      throw this.failure(op, err)
    }
    return rows.map((row) => this.decodeRow(row))
  }

  /**
   * Puts the failed jobs stored before the failed index existed into it: a scan of every job
   * id, a bounded step per call, then the marker, so that it happens once per node. Writes
   * meanwhile index the jobs they fail themselves.
   */
  private async fillFailedIndex(progress?: () => void): Promise<void> {
    if ((await this.client.exists(this.keys.failedIndexed)) === 0) {
      let cursor = '0'
      do {
        cursor = await this.scripts.jrIndexFailed(
          this.keys.jobs,
          this.keys.failed,
          this.keys.failedIndexed,
          this.keys.jobPrefix,
          cursor,
        )
        progress?.()
      } while (cursor !== '0')
    }
    this.failedIndexed = true
  }

  private decodeRow(row: Buffer[]): JobRecord {
    const fields: Record<string, Buffer> = {}
    for (let i = 0; i + 1 < row.length; i += 2) fields[row[i]!.toString()] = row[i + 1]!
    return decodeJob(`${this.keys.jobPrefix}${fields['id']?.toString() ?? '?'}`, fields)
  }

  private check(): void {
    if (this.state !== 'open') throw this.stateError()
  }

  private stateError(): StoreError {
    const what = { created: 'not open', opening: 'still opening', open: 'open', closed: 'closed' }[this.state]
    return new StoreError(`redis store for node '${this.node}' is ${what}`)
  }

  private failure(op: string, err: unknown): StoreError {
    let detail = messageOf(err)
    if (this.client.status !== 'ready' && this.lastConnectionError !== undefined) {
      detail += ` (connection: ${this.lastConnectionError.message})`
    }
    return new StoreError(`redis ${op} failed for node '${this.node}' at ${this.label}: ${detail}`, { cause: err })
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
