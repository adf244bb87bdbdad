import { reportDistributor, type DistributorMetricsSource } from '../admin/metrics/distributor-metrics.js'
import { metricsHandler } from '../admin/metrics/metrics-handler.js'
import { promClient, type MetricsRegistry } from '../admin/metrics/prom-client.js'
import type { AdminHandlerOptions } from '../admin/api/admin-handler.js'
import type { RequestHandler } from '../admin/http.js'
import { FRAME_ENVELOPE_BYTES } from '../config.js'
import { DistributorClosedError, HandedOverError, InvalidArgumentError, QueueFullError } from '../errors.js'
import { TypedEmitter } from '../events.js'
import type { ArgsOf } from '../node/registry.js'
import { encodeArgs } from '../protocol/args.js'
import { defaultAdvertise } from '../protocol/identity.js'
import type { NodeJobView } from '../protocol/messages.js'
import { Scheduler } from '../scheduling/scheduler.js'
import type { Timer } from '../scheduling/timer-heap.js'
import { Acceptance } from './acceptance.js'
import { Cancels } from './cancels.js'
import { Dispatcher } from './dispatcher.js'
import type { DistributorEventMap, DistributorEvents } from './events.js'
import { FeedbackAcks } from './feedback-acks.js'
import { checkFeedbackHandlers, type FeedbackHandlers } from './feedback-handlers.js'
import { FeedbackRouter } from './feedback-router.js'
import type { Canceller, JobHandle } from './job-handle.js'
import { JobStats } from './job-stats.js'
import { JobTable } from './job-table.js'
import { resolveLimit, type LimitOptions } from './limit-options.js'
import { Limits } from './limits.js'
import { NodePool } from './node-pool.js'
import { Operations } from './operations.js'
import { NodeSession } from './node-session.js'
import {
  resolveDistributorOptions,
  resolveEnqueueOptions,
  type DistributorOptions,
  type EnqueueOptions,
  type ResolvedDistributorOptions,
  type ResolvedEnqueueOptions,
} from './options.js'
import { NO_JOB_OPTIONS, type JobOptions } from './job-options.js'
import { PendingQueue, routeKey } from './pending-queue.js'
import { ProgressRouter } from './progress-router.js'
import { Server } from './server.js'
import { Sessions } from './sessions.js'
import { DistributorGroup } from './spool/group.js'
import type { SpooledJob } from './spool/spooled-job.js'
import { pendingSeconds, TrackedJob, type FeedbackCallback } from './tracked-job.js'
import { UniqueJobs } from './unique-jobs.js'
import { LocalUniqueKeys } from './unique-keys.js'

export type { DistributorEventMap } from './events.js'

/**
 * Holds pending jobs and the caller's feedback closures; pushes jobs to nodes over framed
 * TCP and runs feedback as it comes back.
 *
 * Lifecycle: NEW → LISTENING (start) → CLOSED (close). `enqueue` works from construction
 * (jobs wait until a node connects) until close.
 *
 * The work is done by helpers, each over a small context: the server (listening, sockets,
 * handshakes), the dispatcher (the dispatch pass; routing.ts decides where each job goes),
 * acceptance (accepted, rejected, waiting, the acceptance deadline, what a lost connection
 * gives back), the feedback router (results, closures, orphans, the ends of jobs),
 * cancels (cancel requests and second copies), the sessions (a node's link from ready to
 * closed, and its messages routed to the helper each concerns), unique jobs, limits and,
 * with `storage`, the group (spool/group.ts: the spool, the lease on the name, adoption,
 * cancel from any member, keys and limits across members). This class holds the tables
 * they share and wires them to each other. Its metrics (src/admin/metrics) read those tables when scraped,
 * and `JobStats`, which the helpers count into as jobs move.
 *
 * INVARIANTS: every job in `jobs` is in exactly one place: the pending queue, or a
 * session's `held` list (sent, or accepted by a memory node), or nowhere but its `owner`
 * name (accepted by a durable node, which keeps it across its own restarts). The dispatch
 * pass runs only when something changed that could let a job move (an enqueue, a node with
 * room), never on a timer, so an idle distributor costs nothing.
 */
export class Distributor extends TypedEmitter<DistributorEventMap> {
  readonly options: ResolvedDistributorOptions
  private readonly log
  private readonly pool = new NodePool()
  /** Counted per job name where jobs move; read by the metrics when they are scraped. */
  private readonly stats = new JobStats()
  /** Limits by job name (limits.ts): the dispatch pass enforces them. */
  private readonly limits = new Limits({
    wake: () => this.dispatcher.schedule(),
    wakeAt: (timer, at) => this.timers.schedule(timer, at),
    cancelTimer: (timer) => void this.timers.cancel(timer),
  })
  private readonly queue = new PendingQueue(this.stats, this.limits)
  private readonly jobs = new JobTable()
  private readonly events: DistributorEvents = {
    emit: (event, payload) => this.safeEmit(event, payload),
    wants: (event) => this.listenerCount(event) > 0,
  }
  private readonly server: Server
  private readonly dispatcher: Dispatcher
  private readonly acceptance: Acceptance
  private readonly feedback: FeedbackRouter
  private readonly acks: FeedbackAcks
  private readonly progress: ProgressRouter
  /** What a job's handle calls: cancel, and its progress kept beside it. */
  private readonly handleHost: Canceller = {
    cancel: (id) => this.cancel(id),
    progressOf: (handle) => this.progress.valueOf(handle as TrackedJob),
  }
  /** Every timer of the distributor but the per-connection ones: acceptance and ack deadlines. */
  private readonly timers: Scheduler<Timer>
  private readonly handlers = new Map<string, FeedbackHandlers>()
  private readonly cancels: Cancels
  /** Enqueues with a key (option `unique`), and the keys held. */
  private readonly unique: UniqueJobs
  private seq = 0
  private closed = false
  /** Resolved at start: the default name is the advertised address, known once listening. */
  private memberName: string | undefined
  private advertised: string | undefined
  /** This process holds its name (with a spool: its lease): nodes are welcomed under it. */
  private named = false
  /** With `storage`: the group's state in Redis, this member's spool, and its place in the group. */
  private readonly distributorGroup: DistributorGroup | undefined
  /** The registry the metrics report through: the application's, or one made on first read. */
  private registry: MetricsRegistry | undefined
  /** Stops reporting through the application's registry (at close). */
  private readonly unreport: (() => void) | undefined
  /** What an operator sees and steers: admin handlers, recent failures, paused names, requests to nodes. */
  private readonly ops: Operations
  /** The node sessions' lifecycle and the routing of their messages. */
  private readonly sessions: Sessions

  constructor(options: DistributorOptions = {}, defaults = { alwaysUseSpecifiedNode: false }) {
    super()
    this.options = resolveDistributorOptions(options, defaults)
    const log = (this.log = this.options.logger)
    const scheduleDispatch = (): void => this.dispatcher.schedule()
    const finishCancelled = (job: TrackedJob): void => this.feedback.finishCancelled(job)
    this.cancels = new Cancels(
      { finishCancelled, foreignResult: (id, outcome) => this.distributorGroup?.cancelResult(id, outcome) },
      this.jobs,
      this.pool,
      log,
    )
    this.timers = new Scheduler<Timer>((timer) => timer.fire(), undefined, {
      onError: (err) => log.error({ err }, 'timer callback failed'),
    })
    this.acks = new FeedbackAcks(log, this.options.feedbackTimeoutMs, this.timers)
    const after = (timer: Timer, ms: number): void => this.timers.schedule(timer, Date.now() + ms)
    const cancelTimer = (timer: Timer): void => void this.timers.cancel(timer)
    this.ops = new Operations({
      log,
      after,
      cancelTimer,
      metricsSource: () => this.metricsSource(),
      counts: () => ({ pending: this.queue.size, active: this.jobs.size }),
      nodes: () => this.pool.all(),
      session: (node) => this.pool.get(node),
      routes: () => this.queue.routes.values(),
      job: (id) => this.jobs.get(id),
      cancel: (id) => this.cancel(id),
      scheduleDispatch: () => this.dispatcher.schedule(),
      retried: (session, view) => this.retried(session, view),
      pausedHere: (name, paused) => {
        this.events.emit('name:paused', { name, paused, fromGroup: false })
        this.distributorGroup?.operatorPause(name, paused)
      },
    })
    const { storage, name } = this.options
    if (storage !== undefined && name !== undefined) {
      this.distributorGroup = new DistributorGroup(
        {
          log,
          events: this.events,
          after,
          cancelTimer,
          advertise: () => this.advertise,
          broadcast: (message) => {
            for (const session of this.pool.all()) session.connection.send(message)
          },
          holds: (id) => this.jobs.get(id) !== undefined,
          cancelHeld: (id) => this.cancel(id),
          restore: (jobs, held) => this.restore(jobs, held),
          claimed: (job, answer) => this.unique.claimed(job, answer),
          paused: (name, key, seconds) => {
            const until = Date.now() + seconds * 1000
            this.limits.pushBack(name, key, until)
            const paused = this.limits.of(name)?.perKey === true ? key : ''
            this.log.debug(
              { job: name, key: paused, seconds },
              'a job pushed back on another member; its name or key paused',
            )
            this.events.emit('member:paused', { name, key: paused, seconds, until })
          },
          operatorPaused: (name, paused) => {
            this.ops.pause(name, paused, true)
            this.events.emit('name:paused', { name, paused, fromGroup: true })
          },
        },
        { ...this.options, storage, name },
      )
      // Limits hold across the group: slots and starts are granted in Redis.
      this.limits.shareWith(this.distributorGroup.limits)
    }
    this.unique = new UniqueJobs(
      {
        create: (name, args, resolved, onSuccess, onError) => this.create(name, args, resolved, onSuccess, onError),
        enter: (job, claimed) => this.enter(job, claimed, Date.now()),
        discard: (job) => this.jobs.release(job.id),
        cancel: (id) => this.cancel(id),
        runClosure: (job, closure, args) => void this.feedback.runClosure(job, closure, args),
        watchProgress: (job, onProgress) => this.progress.watch(job, onProgress),
        tracked: (id) => this.jobs.get(id),
      },
      new LocalUniqueKeys({ after, cancelTimer }),
      this.distributorGroup?.claims,
    )
    this.feedback = new FeedbackRouter(
      {
        isClosed: () => this.closed,
        scheduleDispatch,
        ended: (job, cancelled) => {
          this.cancels.answer(job, cancelled)
          if (job.holdsSlot) this.limits.release(job)
          // Closing ends no job for good: with a spool it is handed over, its record stays and
          // it is persisted only if that record was written (handOver), and so does its key;
          // without one, close() rejected its `persisted` already and forgets every key.
          if (this.closed) return undefined
          this.distributorGroup?.spool.remove(job)
          job.markPersisted()
          // A job read back from a spool may hold a key of the group: released by its id.
          if (job.keyed || (job.viaHandler && this.distributorGroup !== undefined)) return this.unique.ended(job)
          return undefined
        },
        endedElsewhere: (id) => this.unique.endedElsewhere(id),
        advanced: (job) => {
          if (job.spooled) this.distributorGroup?.spool.add(job)
        },
        failed: (failure) => {
          this.ops.failed(failure)
        },
      },
      this.cancels,
      this.jobs,
      this.queue,
      this.events,
      log,
      this.handlers,
      this.acks,
      this.stats,
    )
    this.progress = new ProgressRouter(
      { closureFailed: (id, name, err) => this.feedback.closureFailed(id, name, err) },
      this.jobs,
      this.events,
      this.handlers,
    )
    this.acceptance = new Acceptance(
      {
        scheduleDispatch,
        cancelWaits: (job) => this.cancels.waits(job),
        finishCancelled,
        stopCopy: (session, id, job) => this.cancels.stopCopy(session, id, job),
        owned: (job) => {
          this.distributorGroup?.spool.remove(job)
          job.markPersisted()
        },
        running: (job) => this.limits.of(job.name)?.hold(job),
      },
      this.jobs,
      this.queue,
      this.events,
      log,
      this.options.acceptTimeoutMs,
      this.timers,
    )
    this.dispatcher = new Dispatcher(
      {
        isClosed: () => this.closed,
        failOversized: (job, largest) => this.feedback.failOversized(job, largest),
        sent: (session, now) => this.acceptance.sent(session, now),
      },
      this.queue,
      this.pool,
      this.events,
      log,
      this.options.alwaysUseSpecifiedNode,
      this.ops.paused,
      this.limits.pausedNames,
    )
    this.server = new Server(
      {
        onReady: (session) => this.sessions.ready(session),
        onMessage: (session, message) => this.sessions.onMessage(session, message),
        onDrain: scheduleDispatch,
        onClose: (session, reason) => this.sessions.release(session, reason),
        identity: () =>
          this.named
            ? { group: this.group, name: this.name, answersFor: this.distributorGroup?.answersFor ?? [] }
            : undefined,
      },
      this.options,
      () => new NodeSession(this.acceptance.onDeadline),
      this.events,
      log,
    )
    this.sessions = new Sessions({
      log,
      events: this.events,
      pool: this.pool,
      jobs: this.jobs,
      acceptance: this.acceptance,
      feedback: this.feedback,
      progress: this.progress,
      cancels: this.cancels,
      ops: this.ops,
      acks: this.acks,
      dispatcher: this.dispatcher,
      limits: this.limits,
      isClosed: () => this.closed,
      pushedBack: (name, key, seconds) => this.distributorGroup?.pushedBack(name, key, seconds),
    })
    for (const [name, limit] of this.options.limits) this.setLimit(name, limit)
    const registry = this.options.metricsRegistry
    if (registry !== undefined) {
      this.registry = registry
      this.unreport = reportDistributor(registry, this.metricsSource(), 'metrics.registry')
    }
  }

  /**
   * The Prometheus registry of this distributor's metrics (docs/monitoring.md): the one
   * given as `metrics.registry`, or one of their own, made (and prom-client loaded) on
   * first read.
   */
  get metrics(): MetricsRegistry {
    if (this.registry === undefined) {
      const { Registry } = promClient()
      this.registry = new Registry()
      reportDistributor(this.registry, this.metricsSource(), 'metrics')
    }
    return this.registry
  }

  /**
   * A plain `(req, res)` node:http handler serving `metrics` in the text format, to mount
   * at any path of the application's server (GET or HEAD; another method gets a 405).
   */
  metricsHandler(): RequestHandler {
    return metricsHandler(this.metrics)
  }

  /**
   * A plain `(req, res)` node:http handler serving the dashboard at its root and the JSON
   * admin API beneath it (docs/admin.md), to mount at any path of the application's server.
   * `authorize(req, action)` decides each request; without it reading is allowed and acting
   * refused. Its live streams end at close().
   */
  adminHandler(options: AdminHandlerOptions = {}): RequestHandler {
    return this.ops.handler(options)
  }

  /** Job names whose jobs wait here until resumed (admin API `pause`). */
  get pausedNames(): string[] {
    return [...this.ops.paused]
  }

  /**
   * Pauses (true) or resumes dispatch of job name `name`; its jobs wait here meanwhile. With
   * a spool, for the whole group: the other members (and those that join later) pause it too.
   */
  pause(name: string, paused = true): void {
    this.ops.pause(name, paused)
  }

  /**
   * Limits job name `name` (docs/configuration.md, Limits): at most `concurrency` of its jobs
   * in flight at once, at most `rate.max` dispatched in any `rate.per` seconds, in total or
   * per `limitKey` with `perKey`; again to change it, `null`
   * to remove it. Jobs held back wait here, keys served in turn. Throws InvalidArgumentError
   * naming the field, or when periodic or cron jobs of `name` are held here.
   */
  limit(name: string, limit: LimitOptions | null): void {
    if (typeof name !== 'string' || name.length === 0)
      throw new InvalidArgumentError(`'name' must be a non-empty string`)
    this.setLimit(name, limit === null ? null : resolveLimit('limit', limit))
    this.log.info({ job: name, limit }, limit === null ? 'job name unlimited' : 'job name limited')
  }

  /** Limits in force, by job name. */
  get limitsByName(): Record<string, LimitOptions> {
    const byName: Record<string, LimitOptions> = {}
    for (const { name, limit } of this.limits.values()) {
      const { concurrency, perKey, rate } = limit
      byName[name] = {
        perKey,
        ...(concurrency === undefined ? {} : { concurrency }),
        ...(rate === undefined ? {} : { rate: { ...rate } }),
      }
    }
    return byName
  }

  private setLimit(name: string, limit: Parameters<Limits['set']>[1]): void {
    if (this.limits.set(name, limit, () => this.jobs.values())) this.queue.refile(name)
  }

  /** The bound port (the real one when listening on port 0). */
  get port(): number {
    return this.server.port
  }

  /** The application this distributor belongs to (option `group`). */
  get group(): string {
    return this.options.group
  }

  /** This member's name in its group: the `name` option, else the advertised address (known from start). */
  get name(): string {
    return this.memberName ?? this.options.name ?? ''
  }

  /** The `host:port` nodes are told to dial (option `advertise`, else the listening address); known from start. */
  get advertise(): string {
    return this.advertised ?? this.options.advertise ?? ''
  }

  get listening(): boolean {
    return this.server.listening
  }

  /** Jobs waiting for a node (counted against maxPending). */
  get pendingCount(): number {
    return this.queue.size
  }

  /** Jobs enqueued and not yet finished. */
  get activeCount(): number {
    return this.jobs.size
  }

  /** Names of the nodes connected now. */
  get nodes(): string[] {
    return this.pool.all().map((s) => s.name)
  }

  async start(): Promise<this> {
    if (this.server.started) return this
    await this.distributorGroup?.connect()
    try {
      await this.server.start()
    } catch (err) {
      await this.distributorGroup?.disconnect()
      throw err
    }
    this.advertised = this.options.advertise ?? defaultAdvertise(this.options.host, this.port)
    this.memberName = this.options.name ?? this.advertised
    if (this.distributorGroup !== undefined) {
      try {
        await this.distributorGroup.join()
      } catch (err) {
        await this.server.close()
        await this.distributorGroup.disconnect()
        throw err
      }
    }
    // Hellos waited until now (see Server): each welcome says whom this member answers for.
    this.named = true
    this.server.admit()
    this.log.info(
      {
        host: this.options.host,
        port: this.port,
        tls: this.options.tls !== undefined,
        group: this.group,
        name: this.name,
      },
      'distributor listening',
    )
    this.safeEmit('listening', { host: this.options.host, port: this.port })
    return this
  }

  /**
   * Adds a job. Throws at once (nothing enqueued) on a bad name, args or option, a full
   * queue, or a closed distributor.
   */
  enqueue<N extends string>(
    name: N,
    args: ArgsOf<N> = {} as ArgsOf<N>,
    opts: EnqueueOptions = {},
    onSuccess?: FeedbackCallback<ArgsOf<N>>,
    onError?: FeedbackCallback<ArgsOf<N>>,
  ): JobHandle<ArgsOf<N>> {
    if (this.closed) throw new DistributorClosedError('distributor is closed: enqueue refused')
    if (typeof name !== 'string' || name.length === 0) {
      throw new InvalidArgumentError(`'name' must be a non-empty string, got ${typeof name}`)
    }
    if (onSuccess !== undefined && typeof onSuccess !== 'function')
      throw new InvalidArgumentError(`'onSuccess' must be a function`)
    if (onError !== undefined && typeof onError !== 'function')
      throw new InvalidArgumentError(`'onError' must be a function`)
    const now = Date.now()
    const resolved = resolveEnqueueOptions(opts, now)
    this.limits.checkEnqueue(name, resolved.job)
    const bytes = encodeArgs(args, this.options.maxFrameSize - FRAME_ENVELOPE_BYTES)
    if (resolved.unique !== undefined) {
      return this.unique.enqueue(
        name,
        bytes,
        resolved,
        resolved.unique,
        onSuccess as FeedbackCallback | undefined,
        onError as FeedbackCallback | undefined,
      ) as unknown as JobHandle<ArgsOf<N>>
    }
    return this.admit(
      name,
      bytes,
      resolved,
      onSuccess as FeedbackCallback | undefined,
      onError as FeedbackCallback | undefined,
      now,
    ) as unknown as JobHandle<ArgsOf<N>>
  }

  /** A new job, validated: it waits for a node from now on. */
  private admit(
    name: string,
    bytes: Buffer,
    resolved: ResolvedEnqueueOptions,
    onSuccess: FeedbackCallback | undefined,
    onError: FeedbackCallback | undefined,
    now: number,
  ): TrackedJob {
    const job = this.create(name, bytes, resolved, onSuccess, onError)
    this.enter(job, false, now)
    return job
  }

  /** A new job, validated and counted against maxPending, not yet waiting. */
  private create(
    name: string,
    bytes: Buffer,
    resolved: ResolvedEnqueueOptions,
    onSuccess: FeedbackCallback | undefined,
    onError: FeedbackCallback | undefined,
  ): TrackedJob {
    // Jobs whose unique key's claim is on its way count too: a Redis outage must not let them pile up.
    if (this.queue.size + this.unique.claimingCount >= this.options.maxPending)
      throw new QueueFullError(this.options.maxPending)
    const job = new TrackedJob(
      this.jobs.newId(),
      this.handleHost,
      name,
      bytes,
      resolved.dueAt,
      resolved.job,
      routeKey(name, resolved.job.node, resolved.job.notNode),
      this.seq++,
      onSuccess,
      onError,
    )
    if (resolved.onProgress !== undefined) this.progress.watch(job, resolved.onProgress)
    return job
  }

  /**
   * `job` waits for a node from now on. `claimed`: its record was written with its unique
   * key's claim, which took a while: its id was handed out before others since.
   */
  private enter(job: TrackedJob, claimed: boolean, now: number): void {
    if (claimed) this.jobs.fill(job)
    else this.jobs.add(job)
    this.queue.push(job, now).enqueued++
    if (!claimed) this.distributorGroup?.spool.add(job)
    if (this.listenerCount('job:enqueue') > 0) this.safeEmit('job:enqueue', { id: job.id, name: job.name })
    if (!this.pool.knows(job.name)) this.dispatcher.unroutable(job)
    this.dispatcher.schedule()
  }

  /**
   * Registers the feedback handlers for job name `name` (replacing any registered before):
   * a result of a job this distributor holds no closure for (it restarted since the
   * enqueue) runs `success(args, info)` or `error(args, info)`; without a handler for its
   * name it is a `feedback:orphan` event. Its progress runs `progress(value, info)`
   * (without one it is dropped). Throws InvalidArgumentError on a bad name or a handler that
   * is not a function.
   */
  onFeedback<N extends string>(name: N, handlers: FeedbackHandlers<ArgsOf<N>>): void {
    checkFeedbackHandlers(name, handlers)
    this.handlers.set(name, { ...handlers } as FeedbackHandlers)
  }

  /**
   * Cancels a job by id: a job not yet run never runs, a periodic job stops. Resolves true
   * when it was cancelled before finishing, false when it had finished (or is unknown here).
   * Neither feedback closure runs for it; `done` resolves with the args as last known.
   */
  cancel(id: string): Promise<boolean> {
    // Closed (or closing: a closure that close() runs may cancel another job): every job
    // ended with close(), and nothing would answer a cancel sent now.
    if (this.closed) return Promise.resolve(false)
    const job = this.jobs.get(id)
    // Its unique key's claim on its way; or another member of the group may hold it, or a
    // durable node whose member is gone.
    if (job === undefined)
      return this.unique.cancelClaiming(id) ?? this.distributorGroup?.cancel(id) ?? Promise.resolve(false)
    if (job.state === 'pending') {
      this.feedback.finishCancelled(job)
      return Promise.resolve(true)
    }
    return this.cancels.request(job)
  }

  /**
   * Stops taking enqueues, rejects every unfinished job's `done` with
   * DistributorClosedError (their error closures get it as `args.error`), and closes every
   * connection. Nodes keep the feedback of jobs they accepted and deliver it to whichever
   * distributor next listens at this address (through its named feedback handlers there,
   * or as `feedback:orphan`). With a spool, once start() took the member's name, every job
   * is handed over instead (see handOver): `done` rejects with HandedOverError and no closure
   * runs.
   */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const unpersisted = new DistributorClosedError('distributor closed before the job was persisted')
    // A spooled distributor that never held its name (not started, or NameTakenError) wrote
    // nothing: nothing can be handed over, its jobs fail as without a spool.
    // Jobs whose unique key's claim is on its way are no table's yet; their callers hear what the others do.
    const jobs = [...this.jobs.values(), ...this.unique.claiming()]
    if (this.distributorGroup === undefined || !this.named) {
      const err = new DistributorClosedError('distributor closed before the job finished')
      for (const job of jobs) job.failPersisted(unpersisted)
      this.distributorGroup?.close()
      this.unique.clear(err)
      this.feedback.failAll(err)
    } else {
      // A hand-over (DistributorGroup.handOver): each `done` rejects with HandedOverError.
      const handedOver = new HandedOverError()
      this.feedback.handOverAll(handedOver)
      this.unique.clear(handedOver)
      await this.distributorGroup.handOver(jobs, unpersisted)
    }
    this.jobs.clear()
    this.queue.clear()
    this.acceptance.close()
    this.ops.close()
    this.timers.close()
    await this.server.close()
    await this.distributorGroup?.disconnect()
    this.unreport?.()
    this.safeEmit('close', {})
  }

  /** What the metrics read, when scraped: counters kept where jobs move, and the tables as they are. */
  private metricsSource(): DistributorMetricsSource {
    const distributor = this
    return {
      group: this.group,
      get member() {
        return distributor.name
      },
      jobStats: () => this.stats.values(),
      oldestPendingSeconds: () => {
        const now = Date.now()
        const seconds = new Map<string, number>()
        for (const [name, stamp] of this.queue.oldestHeads()) seconds.set(name, pendingSeconds(stamp, now))
        return seconds
      },
      nodes: () => this.pool.all(),
      spoolUp: () => this.distributorGroup?.spoolUp,
      limited: () => this.queue.limited(),
    }
  }

  /**
   * `session`'s node runs failed job `view` again (an operator's retry): it is held here again, as the
   * node's, so that its result is delivered (through the named handlers: its closures ran
   * with the failure) and a cancel reaches it.
   */
  private retried(session: NodeSession, view: NodeJobView): void {
    this.ops.failures.forget(view.id)
    if (this.jobs.get(view.id) !== undefined || this.closed) return
    const args = view.args === undefined ? encodeArgs({}, this.options.maxFrameSize) : Buffer.from(view.args)
    const job = this.heldAgain(view.id, view.name, args, view.dueAt, NO_JOB_OPTIONS, view.run)
    if (this.jobs.restoreAll([job]).length === 1) this.acceptance.retriedOn(session, job)
  }

  /**
   * A job this process holds no closure for (read back from a spool, or retried by an
   * operator): tracked again under its id, its results for the named handlers.
   */
  private heldAgain(id: string, name: string, args: Buffer, dueAt: number, opts: JobOptions, run: number): TrackedJob {
    const job = new TrackedJob(
      id,
      this.handleHost,
      name,
      args,
      dueAt,
      opts,
      routeKey(name, opts.node, opts.notNode),
      this.seq++,
      undefined,
      undefined,
    )
    job.run = run
    job.viaHandler = true
    return job
  }

  // --- the group -----------------------------------------------------------------------

  /**
   * Jobs read back from a spool (DistributorGroup says which) wait for nodes again; their
   * results run the named handlers. `held` hears of each job not held here already.
   */
  private restore(spooled: SpooledJob[], held: (job: TrackedJob) => void): void {
    const now = Date.now()
    const jobs = spooled.map((s) => this.heldAgain(s.id, s.name, s.args, s.dueAt, s.opts, s.run))
    for (const job of this.jobs.restoreAll(jobs)) {
      held(job)
      this.queue.push(job, now)
      if (!this.pool.knows(job.name)) this.dispatcher.unroutable(job)
    }
    this.dispatcher.schedule()
  }

  protected override onListenerError(event: string, err: unknown): void {
    this.log.error({ err, event }, 'event listener threw')
  }
}
