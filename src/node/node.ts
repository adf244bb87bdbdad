import { createRequire } from 'node:module'
import { resolve as resolvePath } from 'node:path'
import { FRAME_ENVELOPE_BYTES, retryPolicyOf, type Config } from '../config.js'
import {
  ErrorCode,
  FrameTooLargeError,
  InvalidArgumentError,
  JobsError,
  StoreError,
  TimeoutError,
  UnknownJobError,
  deserializeError,
  serializeError,
  type SerializedError,
} from '../errors.js'
import { TypedEmitter } from '../events.js'
import type { Logger } from '../logger.js'
import { decodeArgs, isPackedMap, ownArgs, packArgs, type JobArgsObject } from '../protocol/args.js'
import { HANDSHAKE_MAX_FRAME_SIZE } from '../protocol/frame.js'
import { MessageType, type Message, type WireJob } from '../protocol/messages.js'
import { ownString, pack } from '../protocol/msgpack.js'
import { computeBackoff, shouldRetry } from '../scheduling/retry.js'
import { DRAIN_BUDGET_MS, Scheduler } from '../scheduling/scheduler.js'
import { Timer, type TimerSlot } from '../scheduling/timer-heap.js'
import { MemoryStore } from '../storage/memory-store.js'
import { RedisStore } from '../storage/redis/redis-store.js'
import { StoreGuard } from '../storage/store-guard.js'
import {
  FeedbackKind,
  JobStatus,
  hasLeases,
  type FeedbackRecord,
  type JobPatch,
  type JobRecord,
  type Store,
} from '../storage/store.js'
import { runChain, type ChainOutcome } from './chain-runner.js'
import { DistributorLink, type LinkContext } from './distributor-link.js'
import { FeedbackOutbox } from './feedback-outbox.js'
import { AttemptContext } from './job-context.js'
import { loadJobDirectory } from './job-loader.js'
import { resolveNodeOptions, type NodeOptions, type ResolvedNodeOptions } from './options.js'
import { LeaseKeeper, type LeaseContext } from './lease-keeper.js'
import { LiveJobs } from './live-jobs.js'
import { JobRegistry } from './registry.js'
import { WorkerPool } from './worker-pool.js'

const VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version

export interface NodeEventMap {
  /** Started: store open, jobs loaded, unfinished jobs resumed, distributors being dialled. */
  ready: { name: string; jobs: string[]; resumed: number }
  'link:up': { distributor: string }
  'link:down': { distributor: string; reason: JobsError | undefined }
  'job:accepted': { id: string; name: string }
  'job:start': { id: string; name: string; attempt: number; run: number }
  'job:retry': { id: string; name: string; attempt: number; delayMs: number; error: SerializedError }
  'job:complete': { id: string; name: string; run: number; cancelled: boolean }
  'job:failed': { id: string; name: string; run: number; error: SerializedError }
  'job:cancelled': { id: string; name: string }
  'feedback:acked': { id: string; run: number }
  'store:down': { error: Error }
  'store:up': Record<string, never>
  close: Record<string, never>
}

/**
 * A job this node holds: its record, plus what is only meaningful while the process lives.
 * One object rather than a wrapper around the record: a node may hold a million of them.
 */
interface LiveJob extends JobRecord, TimerSlot {
  /** Where it is in this process; 'saving' until the store holds it. */
  phase: 'saving' | 'scheduled' | 'queued' | 'running' | 'done'
  /** The application asked to cancel it while it ran: act when the attempt ends. */
  cancelRequested: boolean
  /**
   * Its distributor took it back while it ran (a memory node's link dropped): the running
   * attempt is its last here, unless the distributor sends it here again meanwhile.
   */
  released?: boolean
  /** Where it is stored: this node's store, or a dead peer's after a takeover. */
  store: Store
}

/** The scheduler holds every timer: jobs' due times, attempts' timeouts, lease upkeep. */
type TimerItem = LiveJob | Timer

interface PendingWrite {
  write: () => Promise<void>
  then: () => void
}

const RESOLVED = Promise.resolve()

/** How often a node whose store failed checks whether it is back. */
const STORE_PROBE_MS = 500

export interface CloseOptions {
  /** Abandon running chains at once (they stay in storage as in progress). @default false */
  force?: boolean
  /** How long running chains may take. @default options.shutdownTimeoutMs */
  timeoutMs?: number
}

/**
 * A worker process's engine: takes jobs from distributors, stores them, runs each chain
 * when due, retries failures, and sends feedback until acknowledged.
 *
 * Lifecycle: NEW → STARTING (store, job files, resume) → RUNNING → DRAINING (close():
 * no new jobs, running chains finish or are abandoned, feedback flushes) → CLOSED.
 *
 * INVARIANTS: a job is answered `accepted` only after the store resolved its save. A
 * feedback stays in the store's outbox (and `outbox` here) until its distributor acks
 * it. At most `concurrency` chains run at once; due jobs beyond that wait in `ready`.
 */
export class Node extends TypedEmitter<NodeEventMap> {
  readonly options: ResolvedNodeOptions
  readonly registry: JobRegistry
  readonly log: Logger
  private store!: Store
  private readonly config: Config
  private readonly links = new Map<string, DistributorLink>()
  private readonly live = new LiveJobs<LiveJob>()
  private readonly ready: LiveJob[] = []
  private readyHead = 0
  private pumping = false
  /** A pump stopped by its budget goes on in a later turn (see pump). */
  private pumpResumeQueued = false
  private readonly scheduler: Scheduler<TimerItem>
  /** Unacknowledged feedback per distributor key, in the order it was produced. */
  private readonly outbox: FeedbackOutbox
  private readonly controllers = new Map<string, AbortController>()
  /** Jobs being saved on arrival, by id: a frame that brings one again waits for that save. */
  private readonly saving = new Map<string, Promise<void>>()
  private running = 0
  private accepting = true
  private state: 'new' | 'starting' | 'running' | 'draining' | 'closed' = 'new'
  private idleWaiters: (() => void)[] = []
  private closing: Promise<void> | undefined
  private leaseKeeper: LeaseKeeper | undefined
  /** Stores of dead peers whose jobs this node took over. */
  private readonly adoptedStores = new Map<string, Store>()
  private storeDown = false
  /** Store writes that failed, replayed in order once the store is back. */
  private readonly backlog: PendingWrite[] = []
  /** Every store operation waits under its deadline (storeTimeoutMs). */
  private readonly storeGuard: StoreGuard
  /** Asks a store that is down whether it is back. */
  private readonly probeTimer = new Timer(() => this.probeStore())
  private pool: WorkerPool | undefined
  /** Where defer threads load job files from; unset when the node was given a registry. */
  private deferDirectory: string | undefined
  private warnedInlineDefer = false

  /**
   * @param config the JobReactor-style settings (maxAttempt, retries, remove*Jobs …); read
   *   live, so `JR.configure` in a job file applies.
   */
  constructor(options: NodeOptions, config: Config) {
    super()
    this.options = resolveNodeOptions(options)
    this.config = config
    this.log = this.options.logger
    this.registry = this.options.registry ?? new JobRegistry()
    this.outbox = new FeedbackOutbox({
      linkFor: (key) => this.links.get(key),
      busy: () => this.running > 0 || this.readyHead < this.ready.length,
      maxFrameSize: this.options.maxFrameSize,
      log: this.log,
    })
    this.scheduler = new Scheduler<TimerItem>((item) => this.onTimer(item), undefined, {
      onError: (err) => this.log.error({ err }, 'timer callback failed'),
    })
    this.storeGuard = new StoreGuard(
      { now: () => Date.now(), after: (timer, ms) => this.scheduler.schedule(timer, Date.now() + ms) },
      this.options.storeTimeoutMs,
    )
  }

  get name(): string {
    return this.options.name
  }

  /** Chains running now. */
  get runningCount(): number {
    return this.running
  }

  /** Jobs held (scheduled, queued, running), not finished. */
  get jobCount(): number {
    return this.live.size
  }

  /** Distributors this node is connected to now. */
  get connectedDistributors(): string[] {
    return [...this.links.values()].filter((l) => l.ready).map((l) => l.key)
  }

  async start(): Promise<this> {
    if (this.state !== 'new') return this
    this.state = 'starting'
    if (this.options.registry === undefined) {
      const dir = this.options.jobDirectory ?? this.config.jobDirectory
      const files = await loadJobDirectory(dir, this.registry)
      this.deferDirectory = resolvePath(dir)
      this.log.info({ dir, files: files.length, jobs: this.registry.names() }, 'job files loaded')
    }
    checkHelloFits(this.registry.names())
    this.store = this.createStore()
    await this.store.open()
    if (this.store.durable && hasLeases(this.store)) {
      this.leaseKeeper = new LeaseKeeper(this.leaseContext(), this.store, this.options.leaseMs, this.options.takeover)
      await this.leaseKeeper.acquireOwn()
      this.leaseKeeper.start()
    }
    const resumed = await this.resume(this.store)
    this.state = 'running'
    for (const d of this.options.distributors) {
      const link = new DistributorLink(this.linkContext, {
        ...d,
        secret: this.options.secret,
        tls: this.options.tls,
        maxFrameSize: this.options.maxFrameSize,
        stallTimeoutMs: this.options.stallTimeoutMs,
        handshakeTimeoutMs: this.options.handshakeTimeoutMs,
        reconnectMinMs: this.options.reconnectMinMs,
        reconnectMaxMs: this.options.reconnectMaxMs,
        log: this.log,
      })
      this.links.set(d.key, link)
      link.start()
    }
    this.safeEmit('ready', { name: this.name, jobs: this.registry.names(), resumed })
    return this
  }

  /**
   * Graceful shutdown: stop taking jobs, let running chains finish (or abandon them to
   * storage past the timeout), flush feedback, close links and the store.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.closing !== undefined) {
      // A second request (a second SIGINT) may escalate to force.
      if (options.force === true) this.abortRunning()
      return this.closing
    }
    this.closing = this.shutdown(options)
    return this.closing
  }

  private abortRunning(): void {
    for (const controller of this.controllers.values()) controller.abort(new JobsError('node shutting down', ErrorCode.CONNECTION_CLOSED))
  }

  private async shutdown(options: CloseOptions): Promise<void> {
    const wasRunning = this.state === 'running'
    this.state = 'draining'
    this.setAccepting(false)
    if (wasRunning) {
      const timeoutMs = options.force === true ? 0 : (options.timeoutMs ?? this.options.shutdownTimeoutMs)
      if (!(await this.waitIdle(timeoutMs))) {
        this.log.warn({ running: this.running }, 'shutdown timeout: abandoning running chains to storage')
        this.abortRunning()
      }
      await this.waitOutboxFlushed(Math.min(2000, timeoutMs))
    }
    this.state = 'closed'
    await this.leaseKeeper?.stop()
    this.scheduler.close()
    await this.pool?.close()
    for (const link of this.links.values()) link.close()
    await this.store?.close().catch((err: unknown) => this.log.warn({ err }, 'store close failed'))
    this.log.info('node closed')
    this.safeEmit('close', {})
  }

  // --- start-up ----------------------------------------------------------------------

  private createStore(): Store {
    const { storage } = this.options
    if (storage === 'memory') return new MemoryStore()
    return this.storeGuard.wrap(typeof storage === 'string' ? new RedisStore({ node: this.name, url: storage }) : storage)
  }

  /**
   * Re-arms every unfinished job of `store` at its absolute due time and reloads its
   * outbox: this node's own store at start, or a dead peer's after a takeover.
   */
  private async resume(store: Store, jobs = this.config.retryJobsAtStart): Promise<number> {
    this.outbox.restore((await store.listFeedback()).map((f) => this.readable(f)), store)
    if (!jobs) return 0
    const records = await store.listUnfinished()
    for (const record of records) {
      if (this.live.has(record.id)) continue
      const job: LiveJob = Object.assign(record, { phase: 'scheduled' as const, cancelRequested: false, store, timerIndex: -1 })
      this.live.add(job)
      this.schedule(job)
    }
    if (records.length > 0) this.log.info({ jobs: records.length }, 'resumed unfinished jobs from storage')
    return records.length
  }

  private leaseContext(): LeaseContext {
    return {
      name: this.name,
      log: this.log,
      adopt: (peer, store) => {
        this.adoptedStores.set(peer, store)
        return this.resume(store, true)
      },
      heldFor: (peer) => {
        const store = this.adoptedStores.get(peer)
        let n = 0
        for (const job of this.live.values()) if (job.store === store) n++
        return n
      },
      after: (timer, ms) => this.scheduler.schedule(timer, Date.now() + ms),
      cancelTimer: (timer) => {
        this.scheduler.cancel(timer)
      },
    }
  }

  // --- links -------------------------------------------------------------------------

  private readonly linkContext: LinkContext = {
    helloFields: () => ({
      node: this.name,
      version: VERSION,
      jobs: this.registry.names(),
      concurrency: this.options.concurrency,
      window: this.options.window,
      maxFrameSize: this.options.maxFrameSize,
      durable: this.store.durable,
    }),
    onReady: (link) => {
      this.log.info({ distributor: link.key, distributorName: link.distributorName }, 'connected to distributor')
      if (!this.accepting) link.send({ type: MessageType.STATE, accepting: false })
      this.outbox.resend(link)
      this.safeEmit('link:up', { distributor: link.key })
    },
    onMessage: (link, message) => this.onMessage(link, message),
    onDown: (link, reason) => {
      if (!this.store.durable) this.dropJobsOf(link)
      this.safeEmit('link:down', { distributor: link.key, reason })
    },
  }

  private onMessage(link: DistributorLink, message: Message): void {
    switch (message.type) {
      case MessageType.PING:
        return
      case MessageType.DISPATCH:
        return this.onDispatch(link, message.seq, message.jobs)
      case MessageType.FEEDBACK_ACK:
        return this.onFeedbackAck(link, message.seq)
      case MessageType.CANCEL:
        return this.onCancel(link, message.id)
      case MessageType.ERROR:
        this.log.warn({ distributor: link.key, code: message.code }, `distributor reported: ${message.message}`)
        return
      case MessageType.CHALLENGE:
      case MessageType.HELLO:
      case MessageType.WELCOME:
      case MessageType.ACCEPTED:
      case MessageType.REJECTED:
      case MessageType.STATE:
      case MessageType.FEEDBACK:
      case MessageType.CANCEL_RESULT:
      case MessageType.WAITING:
        throw new JobsError(`unexpected '${message.type}' from a distributor`, ErrorCode.PROTOCOL)
      default: {
        const never: never = message
        throw new JobsError(`unhandled message ${String(never)}`, ErrorCode.PROTOCOL)
      }
    }
  }

  private setAccepting(accepting: boolean): void {
    if (this.accepting === accepting) return
    this.accepting = accepting
    for (const link of this.links.values()) link.send({ type: MessageType.STATE, accepting })
  }

  // --- taking jobs ---------------------------------------------------------------------

  /** Every dispatch frame gets one `accepted`, after any `rejected` for it (see DispatchMessage). */
  private onDispatch(link: DistributorLink, seq: number, jobs: WireJob[]): void {
    const generation = link.generation
    if (!this.accepting) {
      link.send({
        type: MessageType.REJECTED,
        seq,
        ids: jobs.map((j) => j.id),
        code: ErrorCode.DISTRIBUTOR_CLOSED,
        message: this.state === 'running' ? 'node storage unavailable' : 'node is shutting down',
      })
      link.send({ type: MessageType.ACCEPTED, seq })
      return
    }
    const now = Date.now()
    const fresh: LiveJob[] = []
    // Known jobs whose first save is still running: the frame's answer waits for it.
    let earlier: Promise<void>[] | undefined
    let earlierIds: string[] | undefined
    for (const wire of jobs) {
      // What a held job keeps is copied out of the frame.
      const held = wire.dueAt > now
      const id = held ? ownString(wire.id) : wire.id
      // The same job again (its acceptance crossed a reconnect): already ours, and accepted
      // with the rest of the frame once it is stored.
      const known = this.live.get(id)
      if (known !== undefined) {
        // Sent back while an attempt its distributor had taken back still runs: ours again.
        // And a cancel heard for it meanwhile was meant for another copy: a job the
        // application cancelled is not sent again.
        if (known.released === true) known.released = false
        if (known.cancelRequested) known.cancelRequested = false
        const save = this.saving.get(id)
        if (save !== undefined) {
          ;(earlier ??= []).push(save)
          ;(earlierIds ??= []).push(id)
        }
        continue
      }
      const job: LiveJob = {
        id,
        // The definition's copy of the name: one string for all jobs of a kind, not one each.
        name: this.registry.get(wire.name)?.name ?? wire.name,
        args: held ? ownArgs(wire.args) : wire.args,
        status: JobStatus.NEW,
        attempt: 0,
        run: wire.run,
        dueAt: wire.dueAt,
        runDueAt: wire.dueAt,
        defer: wire.defer ?? false,
        distributor: link.key,
        createdAt: now,
        phase: 'saving',
        cancelRequested: false,
        store: this.store,
        timerIndex: -1,
      }
      if (wire.period !== undefined) job.period = wire.period
      if (wire.maxAttempt !== undefined) job.maxAttempt = wire.maxAttempt
      if (wire.retry !== undefined) job.retry = wire.retry
      if (wire.timeout !== undefined) job.timeout = wire.timeout
      this.live.add(job)
      fresh.push(job)
    }
    // `live` is all the storage a memory node has (see persist): held as of now.
    if (earlier === undefined && (fresh.length === 0 || !this.store.durable)) {
      this.onStored(link, generation, seq, fresh)
      return
    }
    const own = fresh.length === 0 || !this.store.durable ? RESOLVED : this.store.saveJobs(fresh)
    if (own !== RESOLVED) {
      for (const job of fresh) this.saving.set(job.id, own)
    }
    void Promise.allSettled([own, ...(earlier ?? [])]).then(([mine, ...before]) => {
      for (const job of fresh) if (this.saving.get(job.id) === own) this.saving.delete(job.id)
      // A known job whose first save failed was dropped with it: not ours after all.
      const rejected = (earlierIds ?? []).filter((_, i) => before[i]?.status === 'rejected')
      const error = mine?.status === 'rejected' ? (mine.reason instanceof Error ? mine.reason : new StoreError(String(mine.reason))) : undefined
      if (error !== undefined) {
        for (const job of fresh) {
          this.live.delete(job)
          rejected.push(job.id)
        }
        this.log.error({ err: error, jobs: fresh.length }, 'cannot store jobs; rejecting them')
        // A save that timed out (or failed with its connection) may still be carried out
        // when the store wakes up: these jobs must not be found there after a restart, since
        // they go elsewhere now. Replayed with the other writes, after that save.
        const store = this.store
        const ids = fresh.map((job) => job.id)
        this.backlog.push({ write: () => Promise.all(ids.map((id) => store.removeJob(id))).then(noop), then: noop })
      }
      if (rejected.length > 0) {
        link.sendOn(generation, { type: MessageType.REJECTED, seq, ids: rejected, code: ErrorCode.STORE, message: error?.message ?? 'node storage unavailable' })
      }
      if (error === undefined) {
        this.onStored(link, generation, seq, fresh)
        return
      }
      link.sendOn(generation, { type: MessageType.ACCEPTED, seq })
      this.onStoreDown(error)
    })
  }

  private onStored(link: DistributorLink, generation: number, seq: number, fresh: LiveJob[]): void {
    link.sendOn(generation, { type: MessageType.ACCEPTED, seq })
    const announce = this.listenerCount('job:accepted') > 0
    for (const job of fresh) {
      if (announce) this.safeEmit('job:accepted', { id: job.id, name: job.name })
      if (job.phase === 'saving') {
        job.phase = 'scheduled'
        this.schedule(job)
      } else if (job.phase === 'done') {
        // Cancelled while it was being saved.
        job.store.removeJob(job.id).catch(() => {})
      }
    }
  }

  /**
   * The store failed a write: take no new jobs (the distributors route elsewhere) and
   * probe until it answers, then replay the backlog and accept again.
   */
  private onStoreDown(error: Error): void {
    if (this.storeDown) return
    this.storeDown = true
    this.log.error({ err: error }, 'store unavailable; not accepting jobs until it is back')
    this.setAccepting(false)
    this.safeEmit('store:down', { error })
    this.scheduler.schedule(this.probeTimer, Date.now() + STORE_PROBE_MS)
  }

  private probeStore(): void {
    if (this.state === 'closed') return
    this.store.ping().then(
      () => void this.onStoreUp(),
      () => this.scheduler.schedule(this.probeTimer, Date.now() + STORE_PROBE_MS),
    )
  }

  private async onStoreUp(): Promise<void> {
    this.storeDown = false
    const pending = this.backlog.splice(0)
    for (let i = 0; i < pending.length; i++) {
      const { write, then } = pending[i] as PendingWrite
      try {
        await write()
      } catch (err) {
        // Down again: keep this and the rest, in order, for the next recovery.
        this.backlog.unshift(...pending.slice(i))
        this.onStoreDown(err instanceof Error ? err : new StoreError(String(err)))
        return
      }
      then()
    }
    this.log.info({ replayed: pending.length }, 'store reachable again; accepting jobs')
    if (this.state === 'running') this.setAccepting(true)
    this.safeEmit('store:up', {})
  }

  // --- running -------------------------------------------------------------------------

  /** Arms the job's timer, or queues it at once when due. */
  private schedule(job: LiveJob): void {
    if (job.dueAt <= Date.now()) this.enqueueReady(job)
    else {
      job.phase = 'scheduled'
      this.scheduler.schedule(job, job.dueAt)
    }
  }

  private onTimer(item: TimerItem): void {
    if (item instanceof Timer) item.fire()
    else if (item.phase === 'scheduled') this.enqueueReady(item)
  }

  private timeoutOf(record: JobRecord): number {
    return record.timeout ?? this.config.timeout
  }

  private enqueueReady(job: LiveJob): void {
    job.phase = 'queued'
    this.ready.push(job)
    this.pump()
  }

  private pump(): void {
    // An attempt of a synchronous chain ends inside runAttempt and pumps again; this loop
    // picks the next job up instead, so a long ready queue does not nest calls.
    if (this.pumping) return
    this.pumping = true
    // Synchronous chains free their slot at once, so a backlog (jobs that came due while
    // every slot was busy) would otherwise run in one go, however long: the same budget as
    // the scheduler's drain lets frames, heartbeats and feedback through in between.
    const started = Date.now()
    try {
      for (let ran = 0; this.running < this.options.concurrency && this.readyHead < this.ready.length && this.state !== 'closed'; ran++) {
        if (this.state === 'draining') return
        if (ran > 0 && Date.now() - started >= DRAIN_BUDGET_MS) {
          this.resumePumpLater()
          return
        }
        const job = this.ready[this.readyHead] as LiveJob
        this.ready[this.readyHead++] = undefined as unknown as LiveJob
        if (this.readyHead > 1024 && this.readyHead * 2 > this.ready.length) {
          this.ready.splice(0, this.readyHead)
          this.readyHead = 0
        }
        if (job.phase !== 'queued') continue
        this.runAttempt(job)
      }
    } finally {
      this.pumping = false
    }
  }

  private resumePumpLater(): void {
    if (this.pumpResumeQueued) return
    this.pumpResumeQueued = true
    setImmediate(() => {
      this.pumpResumeQueued = false
      this.pump()
    })
  }

  /** Starts an attempt; one whose chain is synchronous also ends before this returns. */
  private runAttempt(job: LiveJob): void {
    this.running++
    job.phase = 'running'
    job.status = JobStatus.IN_PROGRESS
    job.attempt++
    // The attempt count must survive a crash (or a crash-looping job would retry forever),
    // but the chain need not wait for it; a store that does not survive a crash need not
    // hear of it at all.
    if (job.store.durable) {
      const start: JobPatch = { status: job.status, attempt: job.attempt }
      void this.persist(job.store, () => job.store.updateJob(job.id, start), noop)
    }
    if (this.listenerCount('job:start') > 0) this.safeEmit('job:start', { id: job.id, name: job.name, attempt: job.attempt, run: job.run })
    const maxAttempt = job.maxAttempt ?? this.config.maxAttempt
    let args: JobArgsObject
    let ctx: AttemptContext
    try {
      args = decodeArgs(job.args)
      ctx = this.contextFor(job, args)
    } catch (err) {
      // Stored args that do not decode: no attempt could read them, so the job fails for
      // good. The attempt must still end here, or its slot would stay taken for ever.
      this.endAttempt(job, { kind: 'error', cancelled: false, error: err, unrecoverable: true }, { error: serializeError(err) }, maxAttempt, undefined)
      return
    }
    const timeout = this.timeoutOf(job)
    const abortable = timeout > 0 ? this.signalOf(job) : undefined
    const timer = abortable === undefined ? undefined : new Timer(() => this.controllers.get(job.id)?.abort(new TimeoutError(timeout)))
    if (timer !== undefined) this.scheduler.schedule(timer, Date.now() + timeout * 1000)
    const lastAttempt = job.attempt >= maxAttempt
    const def = this.registry.get(job.name)
    if (def === undefined) {
      const error = new UnknownJobError(job.name, this.name)
      args['error'] = serializeError(error)
      this.endAttempt(job, { kind: 'error', cancelled: false, error, unrecoverable: true }, args, maxAttempt, timer)
    } else if (job.defer && this.deferDirectory !== undefined) {
      void this.runDeferred(job, args, ctx, lastAttempt, this.signalOf(job)).then((r) => this.endAttempt(job, r.outcome, r.args, maxAttempt, timer))
    } else {
      if (job.defer && !this.warnedInlineDefer) {
        // A worker thread loads job files by path; definitions given in code have none.
        this.warnedInlineDefer = true
        this.log.warn({ job: job.name }, "defer needs a job directory: this node was given a 'registry', so deferred jobs run on its event loop")
      }
      let outcome: ChainOutcome | Promise<ChainOutcome>
      try {
        outcome = runChain(def, args, ctx, lastAttempt, abortable)
      } catch (err) {
        outcome = chainThrew(err)
      }
      if (outcome instanceof Promise) {
        void outcome.then(
          (o) => this.endAttempt(job, o, args, maxAttempt, timer),
          (err: unknown) => this.endAttempt(job, chainThrew(err), args, maxAttempt, timer),
        )
      } else this.endAttempt(job, outcome, args, maxAttempt, timer)
    }
  }

  private endAttempt(job: LiveJob, outcome: ChainOutcome, args: JobArgsObject, maxAttempt: number, timer: Timer | undefined): void {
    if (timer !== undefined) this.scheduler.cancel(timer)
    this.controllers.delete(job.id)
    this.running--
    let recorded: Promise<void> | undefined
    try {
      recorded = this.afterAttempt(job, outcome, args, maxAttempt)
    } catch (err) {
      this.attemptNotRecorded(job, err)
    }
    if (recorded === undefined) this.attemptEnded()
    else {
      recorded.then(
        () => this.attemptEnded(),
        (err: unknown) => {
          this.attemptNotRecorded(job, err)
          this.attemptEnded()
        },
      )
    }
  }

  private attemptNotRecorded(job: LiveJob, err: unknown): void {
    this.log.error({ err, id: job.id }, 'cannot record the end of an attempt')
  }

  private attemptEnded(): void {
    if (this.running === 0 && this.idleWaiters.length > 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve()
    }
    this.pump()
  }

  /** Runs the chain in the defer pool; the pool's thread returns the args it ended with. */
  private async runDeferred(
    record: JobRecord,
    args: JobArgsObject,
    ctx: AttemptContext,
    lastAttempt: boolean,
    signal: AbortSignal,
  ): Promise<{ outcome: ChainOutcome; args: JobArgsObject }> {
    this.pool ??= new WorkerPool(
      this.options.workerThreads,
      { jobDirectory: this.deferDirectory as string, node: this.name, logLevel: this.options.logLevel },
      this.log,
    )
    const jobItself = args['jobItself'] as Record<string, unknown> | undefined
    try {
      const result = await this.pool.run({ type: 'run', id: record.id, args: record.args, ctx: ctx.toPlain(), lastAttempt, jobItself }, signal)
      const outcome: ChainOutcome =
        result.kind === 'success'
          ? { kind: 'success', cancelled: result.cancelled }
          : { kind: 'error', cancelled: result.cancelled, error: deserializeError(result.error), unrecoverable: result.unrecoverable }
      return { outcome, args: decodeArgs(result.args) }
    } catch (err) {
      args['error'] = serializeError(err)
      return { outcome: { kind: 'error', cancelled: false, error: err, unrecoverable: false }, args }
    }
  }

  /**
   * The running attempt's AbortSignal. An AbortController costs more than a no-op job: it is
   * made only for a timeout, a deferred chain, or a step that reads ctx.signal. An arrow
   * property, so that a ctx needs no closure of its own to reach it.
   */
  private readonly signalOf = (record: JobRecord): AbortSignal => {
    let controller = this.controllers.get(record.id)
    if (controller === undefined) {
      controller = new AbortController()
      this.controllers.set(record.id, controller)
    }
    return controller.signal
  }

  private contextFor(record: JobRecord, args: JobArgsObject): AttemptContext {
    const ctx = new AttemptContext(record, this.name, this.log, this.signalOf)
    if (this.config.mergeJobItselfToArgs) {
      args['jobItself'] = {
        id: record.id,
        name: record.name,
        args: decodeArgs(record.args),
        attempt: record.attempt,
        status: record.status,
        node: this.name,
        distributor: record.distributor,
        dueAt: record.dueAt,
        period: record.period,
        run: record.run,
      }
    }
    return ctx
  }

  /**
   * Decides what follows an attempt: retry, next run, or the end with its feedback. Returns
   * the store write it waits for, if any.
   */
  private afterAttempt(job: LiveJob, outcome: ChainOutcome, args: JobArgsObject, maxAttempt: number): Promise<void> | undefined {
    const now = Date.now()
    if (outcome.kind === 'error' && !outcome.cancelled) {
      const error = serializeError(outcome.error)
      job.lastError = error
      if (!outcome.unrecoverable && !job.cancelRequested && shouldRetry(job.attempt, maxAttempt)) {
        const delayMs = computeBackoff(job.retry ?? retryPolicyOf(this.config), job.attempt)
        job.status = JobStatus.ERROR
        job.dueAt = now + delayMs
        this.safeEmit('job:retry', { id: job.id, name: job.name, attempt: job.attempt, delayMs, error })
        this.log.debug({ id: job.id, job: job.name, attempt: job.attempt, delayMs, err: error.message }, 'attempt failed; retrying')
        const patch: JobPatch = { status: job.status, dueAt: job.dueAt, lastError: error }
        return this.persist(
          job.store,
          () => job.store.updateJob(job.id, patch),
          () => {
            if (this.reschedule(job)) this.links.get(job.distributor)?.send({ type: MessageType.WAITING, ids: [job.id] })
          },
        )
        return
      }
      this.log.warn({ id: job.id, job: job.name, attempt: job.attempt, err: error.message }, 'job failed')
      this.safeEmit('job:failed', { id: job.id, name: job.name, run: job.run, error })
    }
    const succeeded = outcome.kind === 'success' && !outcome.cancelled
    if (job.cancelRequested && !(succeeded && job.period === undefined)) {
      // The application cancelled it while it ran. A periodic run that succeeded still
      // reports that run; otherwise there is no feedback, only the cancel.
      return this.endCancelled(job, true, succeeded ? this.feedbackOf(job, FeedbackKind.SUCCESS, false, false, args) : undefined)
    }
    const kind = outcome.kind === 'success' ? FeedbackKind.SUCCESS : FeedbackKind.ERROR
    const periodic = job.period !== undefined && !outcome.cancelled
    const feedback = this.feedbackOf(job, kind, !periodic, outcome.cancelled, args)
    if (periodic) {
      // No drift: the next run is due one period after this run was due; runs missed while
      // the node was down (or a run longer than the period) are skipped, not replayed.
      const periodMs = (job.period as number) * 1000
      const missed = Math.max(1, Math.ceil((now - job.runDueAt) / periodMs))
      const patch: JobPatch = {
        status: JobStatus.NEW,
        attempt: 0,
        run: job.run + missed,
        runDueAt: job.runDueAt + missed * periodMs,
        dueAt: job.runDueAt + missed * periodMs,
      }
      if (kind === FeedbackKind.ERROR) patch.failedAt = now
      Object.assign(job, patch)
      return this.persist(
        job.store,
        () => job.store.finishRun(job.id, patch, feedback, false),
        () => {
          this.safeEmit('job:complete', { id: job.id, name: job.name, run: feedback.run, cancelled: false })
          this.outbox.add(feedback, job.store)
          this.reschedule(job)
        },
      )
    }
    const status = outcome.cancelled ? JobStatus.CANCELLED : kind === FeedbackKind.SUCCESS ? JobStatus.COMPLETE : JobStatus.FAILED
    const remove =
      status === JobStatus.COMPLETE
        ? this.config.removeDoneJobs
        : status === JobStatus.CANCELLED
          ? this.config.removeCancelledJobs
          : this.config.removeFailedJobs
    job.phase = 'done'
    job.status = status
    this.live.delete(job)
    // The usual end of a job on a memory node: nothing to write (see persist), so no
    // closures either.
    if (!job.store.durable) {
      this.finished(job, feedback, outcome.cancelled)
      return undefined
    }
    const patch: JobPatch = { status }
    if (status === JobStatus.FAILED) patch.failedAt = now
    return this.persist(
      job.store,
      () => job.store.finishRun(job.id, patch, feedback, remove),
      () => this.finished(job, feedback, outcome.cancelled),
    )
  }

  /** A job's end is stored: its feedback goes out. */
  private finished(job: LiveJob, feedback: FeedbackRecord, cancelled: boolean): void {
    if (job.status !== JobStatus.FAILED && this.listenerCount('job:complete') > 0) {
      this.safeEmit('job:complete', { id: job.id, name: job.name, run: job.run, cancelled })
    }
    this.outbox.add(feedback, job.store)
    if (job.cancelRequested) this.answerCancel(job, 'finished')
  }

  /**
   * Performs a store write, then what depends on it (feedback goes out only once stored).
   * While the store is down the pair waits in `backlog` and is replayed, in order, when
   * it is back: a finished job's feedback is delayed, never dropped.
   *
   * A store that does not survive the process (memory storage) is not written at all: it
   * could only ever give back what `live` and the outbox hold already, and the distributor
   * keeps every job it sent to such a node until its final feedback (see docs/architecture.md#at-least-once).
   */
  private persist(store: Store, write: () => Promise<void>, then: () => void): Promise<void> | undefined {
    if (!store.durable) {
      then()
      return undefined
    }
    if (this.storeDown) {
      this.backlog.push({ write, then })
      return undefined
    }
    return write().then(then, (err: unknown) => {
      this.backlog.push({ write, then })
      this.onStoreDown(err instanceof Error ? err : new StoreError(String(err)))
    })
  }

  // --- feedback ------------------------------------------------------------------------

  /**
   * A stored result goes into frames as the bytes it was stored as (protocol 4): bytes that
   * are not one map would break every frame they travel in, and the frame would be re-sent
   * for ever. Such a result is replaced by error feedback that says so.
   */
  private readable(feedback: FeedbackRecord): FeedbackRecord {
    if (isPackedMap(feedback.args)) return feedback
    this.log.error({ id: feedback.jobId, run: feedback.run }, 'stored feedback args do not decode; sending error feedback instead')
    const error = new StoreError('the stored result of this run could not be read')
    return { ...feedback, kind: FeedbackKind.ERROR, args: pack({ error: serializeError(error) }) }
  }

  /**
   * The feedback record of a run. Args that cannot be sent back (not serialisable, or over
   * the frame limit of either end) turn it into error feedback that says so, carrying the
   * original args: a frame the distributor would refuse must never reach the outbox.
   */
  private feedbackOf(record: JobRecord, kind: FeedbackKind, final: boolean, cancelled: boolean, args: JobArgsObject): FeedbackRecord {
    const limit = Math.min(this.options.maxFrameSize, this.links.get(record.distributor)?.peerMaxFrameSize ?? Infinity) - FRAME_ENVELOPE_BYTES
    let encoded: Buffer | undefined
    let problem: JobsError | undefined
    try {
      encoded = packArgs(args)
      if (encoded.length > limit) problem = new FrameTooLargeError(encoded.length, limit)
    } catch (err) {
      problem = new JobsError(`the job left args that cannot be sent back: ${(err as Error).message}`, ErrorCode.INVALID_ARG)
    }
    if (problem !== undefined || encoded === undefined) {
      encoded = pack({ ...decodeArgs(record.args), error: serializeError(problem) })
      kind = FeedbackKind.ERROR
    }
    return { jobId: record.id, run: record.run, distributor: record.distributor, kind, final, cancelled, args: encoded }
  }

  private onFeedbackAck(link: DistributorLink, seq: number): void {
    const report = this.listenerCount('feedback:acked') > 0
    this.outbox.ack(link, seq, report ? (f) => this.safeEmit('feedback:acked', { id: f.jobId, run: f.run }) : undefined)
  }

  // --- cancel --------------------------------------------------------------------------

  /**
   * A memory node's link dropped: its distributor takes back every unfinished job it sent
   * here and dispatches it again (it cannot tell a dropped link from a dead node). So they
   * end here: those not running now never run, and a running one's attempt is its last
   * here (no retry, no next run), its result still sent if the link comes back. Kept, they
   * would run twice, and a cancel would stop only one of the two.
   */
  private dropJobsOf(link: DistributorLink): void {
    for (const job of this.live.values()) {
      if (job.distributor !== link.key) continue
      if (job.phase === 'running') {
        // Still held while it runs: one id is never run twice at once here (a copy sent
        // back meanwhile is "already ours", and its own again).
        job.released = true
        continue
      }
      this.scheduler.cancel(job)
      // The ready queue skips it.
      job.phase = 'done'
      this.live.delete(job)
    }
  }

  /**
   * After an attempt that leaves the job here (a retry, a periodic job's next run): puts it
   * on the timer, unless it ended meanwhile or its distributor took it back. True when put.
   */
  private reschedule(job: LiveJob): boolean {
    if (job.phase === 'done') return false
    if (job.released === true) {
      job.phase = 'done'
      this.live.delete(job)
      return false
    }
    this.schedule(job)
    return true
  }

  private onCancel(link: DistributorLink, id: string): void {
    const job = this.live.get(id)
    if (job === undefined) {
      // Finished, and its result not yet acknowledged: that result settles it. Otherwise
      // nothing here will ever run it or report on it.
      link.send({ type: MessageType.CANCEL_RESULT, id, outcome: this.outbox.holdsFinal(link.key, id) ? 'finished' : 'unknown' })
      return
    }
    if (job.phase === 'running') {
      // Let the attempt end; a success then is reported as finished, anything else cancels.
      job.cancelRequested = true
      return
    }
    this.scheduler.cancel(job)
    const wasSaving = job.phase === 'saving'
    job.phase = 'done'
    this.live.delete(job)
    const finish = wasSaving ? undefined : this.endCancelled(job, false)
    if (finish === undefined) this.answerCancel(job, 'cancelled')
    else void finish.then(() => this.answerCancel(job, 'cancelled'))
  }

  private endCancelled(job: LiveJob, answer = true, lastFeedback?: FeedbackRecord): Promise<void> | undefined {
    job.phase = 'done'
    job.status = JobStatus.CANCELLED
    this.live.delete(job)
    const remove = this.config.removeCancelledJobs
    return this.persist(
      job.store,
      () => {
        if (lastFeedback !== undefined) return job.store.finishRun(job.id, { status: JobStatus.CANCELLED }, lastFeedback, remove)
        return remove ? job.store.removeJob(job.id) : job.store.updateJob(job.id, { status: JobStatus.CANCELLED })
      },
      () => {
        if (lastFeedback !== undefined) this.outbox.add(lastFeedback, job.store)
        this.safeEmit('job:cancelled', { id: job.id, name: job.name })
        if (answer) this.answerCancel(job, 'cancelled')
      },
    )
  }

  private answerCancel(record: JobRecord, outcome: 'cancelled' | 'finished'): void {
    // The job's last result (a periodic run that ended as it was cancelled) goes first: the
    // distributor forgets the job on this answer and would take the result for an orphan.
    this.outbox.flushNow()
    this.links.get(record.distributor)?.send({ type: MessageType.CANCEL_RESULT, id: record.id, outcome })
  }

  // --- shutdown helpers ----------------------------------------------------------------

  private waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.running === 0) return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs)
      this.idleWaiters.push(() => {
        clearTimeout(timer)
        resolve(true)
      })
    })
  }

  private waitOutboxFlushed(timeoutMs: number): Promise<void> {
    if (this.outbox.size === 0 || this.connectedDistributors.length === 0) return Promise.resolve()
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.off('feedback:acked', check)
        resolve()
      }
      const check = (): void => {
        if (this.outbox.size === 0) done()
      }
      const timer = setTimeout(done, timeoutMs)
      this.on('feedback:acked', check)
    })
  }

  protected override onListenerError(event: string, err: unknown): void {
    this.log.error({ err, event }, 'event listener threw')
  }
}

function noop(): void {}

/** Room in a hello for what is not a job name: the node name (up to 200), nonce, proof, numbers. */
const HELLO_FIXED_BYTES = 1024

/** The hello lists every job name, and a distributor reads at most HANDSHAKE_MAX_FRAME_SIZE before the handshake. */
function checkHelloFits(names: string[]): void {
  const bytes = pack(names).length
  if (bytes > HANDSHAKE_MAX_FRAME_SIZE - HELLO_FIXED_BYTES) {
    throw new InvalidArgumentError(
      `this node's ${names.length} job names take ${bytes} bytes in its hello; at most ${HANDSHAKE_MAX_FRAME_SIZE - HELLO_FIXED_BYTES} fit in a handshake frame (split the jobs over nodes with separate job directories)`,
    )
  }
}

/** A chain that threw outside its steps' handling (a bug, not a job failure) fails the attempt. */
function chainThrew(error: unknown): ChainOutcome {
  return { kind: 'error', cancelled: false, error, unrecoverable: false }
}
