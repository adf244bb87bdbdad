import { createRequire } from 'node:module'
import { resolve as resolvePath } from 'node:path'
import type { RequestHandler } from '../admin/http.js'
import type { MetricsRegistry } from '../admin/metrics/prom-client.js'
import type { Config } from '../config.js'
import { InvalidArgumentError, ProtocolError } from '../errors.js'
import { TypedEmitter } from '../events.js'
import type { Logger } from '../logger.js'
import { HANDSHAKE_MAX_FRAME_SIZE } from '../protocol/frame.js'
import { MessageType, type Message } from '../protocol/messages.js'
import { Admission } from './admission.js'
import { pack } from '../protocol/msgpack.js'
import { systemClock, type Clock } from '../scheduling/clock.js'
import { Scheduler } from '../scheduling/scheduler.js'
import { Timer } from '../scheduling/timer-heap.js'
import { MemoryStore } from '../storage/memory-store.js'
import { RedisStore } from '../storage/redis/redis-store.js'
import { StoreGuard } from '../storage/store-guard.js'
import { hasLeases, type Store } from '../storage/store.js'
import { AttemptRecorder } from './attempt-recorder.js'
import { AttemptRunner } from './attempt-runner.js'
import { Cancels } from './cancels.js'
import { DistributorDirectory } from './distributor-directory.js'
import type { DistributorLink } from './distributor-link.js'
import { FeedbackBuilder } from './feedback-builder.js'
import { FeedbackOutbox } from './feedback-outbox.js'
import { JobIntake } from './job-intake.js'
import { loadJobDirectory } from './job-loader.js'
import { LeaseKeeper, type LeaseContext } from './lease-keeper.js'
import { NodeLinks } from './links.js'
import { LiveJobs, type LiveJob, type TimerItem } from './live-jobs.js'
import type { NodeEventMap, NodeEvents } from './node-events.js'
import { NodeAdmin } from './node-admin.js'
import { NodeJobStats } from './node-job-stats.js'
import { NodeMetricsWiring } from './node-metrics-wiring.js'
import { ProgressReporter } from './progress-reporter.js'
import { resolveNodeOptions, type NodeOptions, type ResolvedNodeOptions } from './options.js'
import { JobRegistry } from './registry.js'
import { Resumer } from './resumer.js'
import { StoreOutage } from './store-outage.js'

export type { NodeEventMap } from './node-events.js'

const VERSION = (createRequire(import.meta.url)('../../package.json') as { version: string }).version

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
 * The node owns its lifecycle, its store and links, and wires its parts, each of which
 * sees only a small context: `JobIntake` (dispatch frames, saved before `accepted`),
 * `AttemptRunner` (timers, the ready queue, attempts), `AttemptRecorder` (what follows an
 * attempt, decided by the pure `decideAfterAttempt`), `Cancels` (cancels, and a memory
 * node's link that drops), `StoreOutage` (store writes while the store is down),
 * `FeedbackBuilder` and `FeedbackOutbox` (results until acknowledged), `LeaseKeeper`,
 * `NodeAdmin` (what an operator asks through a distributor's admin API), and
 * `NodeLinks` (links.ts: the `LinkSet`, one link per address its sources list: static,
 * `dns:` names, the registry; what a link's handshake and loss mean). `NodeMetricsWiring`
 * (node-metrics-wiring.ts) holds its metrics' registry and endpoint; they read these parts
 * when scraped, and `NodeJobStats`, which the runner and the recorder count into.
 *
 * Time: every due time, timeout and deadline is read from `clock` and armed on the one
 * scheduler; only the network (links, heartbeats), the pump's budget and the shutdown's
 * waits run on real time.
 *
 * INVARIANTS: a job is answered `accepted` only after the store resolved its save. A
 * feedback stays in the store's outbox (and `outbox` here) until its distributor acks
 * it. At most `concurrency` chains run at once; due jobs beyond that wait in the ready queue.
 */
export class Node extends TypedEmitter<NodeEventMap> {
  readonly options: ResolvedNodeOptions
  readonly registry: JobRegistry
  readonly log: Logger
  private store!: Store
  private readonly config: Config
  private readonly clock: Clock
  /** The links, one per address the sources list, and the sources that keep them current. */
  private readonly links: NodeLinks
  /** Which link receives what is filed under a distributor identity. */
  private readonly directory = new DistributorDirectory()
  /** Counted by distributor: a link is let go only once nothing is held for it. */
  private readonly live = new LiveJobs<LiveJob>(
    (job) => job.distributor,
    () => this.links.requestRecheck(),
  )
  private readonly scheduler: Scheduler<TimerItem>
  /** Unacknowledged feedback per distributor identity, in the order it was produced. */
  private readonly outbox: FeedbackOutbox
  private readonly builder: FeedbackBuilder
  private readonly outage: StoreOutage
  private readonly intake: JobIntake
  private readonly runner: AttemptRunner
  private readonly cancels: Cancels
  /** Whether it takes new jobs, and why not. */
  private readonly admission: Admission
  private readonly admin: NodeAdmin
  private state: 'new' | 'starting' | 'running' | 'draining' | 'closed' = 'new'
  private closing: Promise<void> | undefined
  private leaseKeeper: LeaseKeeper | undefined
  private readonly resumer: Resumer
  /** Every store operation waits under its deadline (storeTimeoutMs). */
  private readonly storeGuard: StoreGuard
  /** Retries, waits and run times per job name, read by the metrics when scraped. */
  private readonly jobStats = new NodeJobStats()
  /** The metrics' registry, handler and (with `metricsPort`) endpoint. */
  private readonly metricsWiring: NodeMetricsWiring

  /** Arms `timer` on the scheduler, `ms` from now by the node's clock. */
  private readonly after = (timer: Timer, ms: number): void => this.scheduler.schedule(timer, this.clock.now() + ms)

  private readonly events: NodeEvents = {
    wants: (event) => this.listenerCount(event) > 0,
    emit: (event, payload) => this.safeEmit(event, payload),
  }

  /**
   * @param config the JobReactor-style settings (maxAttempt, retries, remove*Jobs …); read
   *   live, so `JR.configure` in a job file applies.
   * @param clock where the node reads the time and arms its timers (due times, timeouts,
   *   retries, leases, the store's deadline and probe). A test passes a fake one to move
   *   time by hand; an argument rather than an option, like the Scheduler's: it is not a
   *   setting a user makes, and `jr-node` has no flag for it.
   */
  constructor(options: NodeOptions, config: Config, clock: Clock = systemClock) {
    super()
    const opts = (this.options = resolveNodeOptions(options))
    this.config = config
    this.clock = clock
    const log = (this.log = opts.logger)
    this.admission = new Admission({
      log,
      running: () => this.state === 'running',
      changed: () => this.links.sendState(),
    })
    this.registry = opts.registry ?? new JobRegistry()
    // The parts reach one another only through the contexts made here.
    const now = (): number => clock.now()
    const linkFor = (identity: string): DistributorLink | undefined => this.directory.linkFor(identity)
    const schedule = (job: LiveJob): void => this.runner.schedule(job)
    this.scheduler = new Scheduler<TimerItem>((item) => this.onTimer(item), clock, {
      onError: (err) => log.error({ err }, 'timer callback failed'),
    })
    this.storeGuard = new StoreGuard({ now, after: this.after }, opts.storeTimeoutMs)
    this.links = new NodeLinks(
      {
        log,
        after: this.after,
        cancelTimer: (timer) => void this.scheduler.cancel(timer),
        now,
        helloFields: () => ({
          node: this.name,
          version: VERSION,
          jobs: this.registry.names(),
          concurrency: this.options.concurrency,
          window: this.options.window,
          maxFrameSize: this.options.maxFrameSize,
          durable: this.store.durable,
        }),
        state: () => this.admission.message(),
        filedKeys: () => [this.live.ownerKeys(), this.outage.owners(), this.outbox.waitingKeys()],
        onMessage: (link, message) => this.onMessage(link, message),
        ready: (link) => this.outbox.resend(link),
        lost: (link) => {
          if (!this.store.durable) this.cancels.dropJobsOf(link)
          // What it received goes to a member that answers for it, if one is connected.
          this.outbox.route()
        },
      },
      this.directory,
      this.events,
      opts,
    )
    this.outbox = new FeedbackOutbox({ linkFor, busy: () => this.runner.busy, maxFrameSize: opts.maxFrameSize, log })
    this.builder = new FeedbackBuilder({ maxFrameSize: opts.maxFrameSize, linkFor, log })
    this.outage = new StoreOutage({
      log,
      ping: () => (this.state === 'closed' ? undefined : this.store.ping()),
      after: this.after,
      changed: (error) => {
        this.admission.storeChanged(error === undefined)
        if (error !== undefined) this.safeEmit('store:down', { error })
        else this.safeEmit('store:up', {})
      },
      // A job's end is stored and its result filed: a link may be owed nothing now.
      settled: () => this.links.requestRecheck(),
    })
    const unschedule = (job: LiveJob): void => void this.scheduler.cancel(job)
    this.cancels = new Cancels(
      { linkFor, schedule, unschedule },
      this.live,
      this.outage,
      this.outbox,
      this.events,
      config,
    )
    const progress = new ProgressReporter({
      after: this.after,
      cancelTimer: (timer) => void this.scheduler.cancel(timer),
      linkFor,
      persist: (store, write) => void this.outage.persist(store, write),
      maxFrameSize: opts.maxFrameSize,
    })
    const recorder = new AttemptRecorder(
      {
        log,
        config,
        builder: this.builder,
        outbox: this.outbox,
        waiting: (job) => linkFor(job.distributor)?.send({ type: MessageType.WAITING, ids: [job.id] }),
        rateLimited: (job, seconds) =>
          linkFor(job.distributor)?.send({ type: MessageType.RATE_LIMITED, id: job.id, seconds }),
        stats: this.jobStats,
        keepProgress: (job) => progress.keep(job),
      },
      this.live,
      this.cancels,
      this.outage,
      this.events,
    )
    const { name, concurrency, workerThreads, logLevel } = opts
    this.runner = new AttemptRunner(
      { name, log, concurrency, workerThreads, logLevel, registry: this.registry, config, clock, stats: this.jobStats },
      this.scheduler,
      this.outage,
      this.events,
      recorder,
      progress,
    )
    this.resumer = new Resumer(
      { log, schedule, readable: (feedback) => this.builder.readable(feedback) },
      this.live,
      this.outbox,
    )
    const refusal = (): string | undefined => this.admission.refusal()
    this.intake = new JobIntake(
      { store: () => this.store, log, refusal, schedule, now },
      this.live,
      this.registry,
      this.outage,
      this.events,
    )
    this.admin = new NodeAdmin(
      { store: () => this.store, now, schedule, quiet: (q) => this.admission.quiet(q) },
      this.live,
    )
    this.metricsWiring = new NodeMetricsWiring(
      {
        name: this.name,
        runner: this.runner,
        scheduler: this.scheduler,
        live: this.live,
        outbox: this.outbox,
        links: this.links,
        jobStats: this.jobStats,
        storeUp: () => this.admission.storeUp,
      },
      opts,
      log,
    )
  }

  /**
   * The Prometheus registry of this node's metrics (docs/monitoring.md): the one given as
   * `metrics.registry`, or one of their own, made (and prom-client loaded) on first read or
   * at start with `metricsPort`. A registry of their own also holds prom-client's default
   * metrics of the process (CPU, memory, heap, GC, event-loop delay), labelled `node`.
   */
  get metrics(): MetricsRegistry {
    return this.metricsWiring.registry
  }

  /** A plain `(req, res)` node:http handler serving `metrics` in the text format (GET or HEAD). */
  metricsHandler(): RequestHandler {
    return this.metricsWiring.handler()
  }

  /** With `metricsPort`: the port the metrics are served on (the real one for port 0), once started. */
  get metricsPort(): number | undefined {
    return this.metricsWiring.port
  }

  get name(): string {
    return this.options.name
  }

  /** Chains running now. */
  get runningCount(): number {
    return this.runner.runningCount
  }

  /** Results not yet acknowledged by their distributor (in the store's outbox too). */
  get feedbackPending(): number {
    return this.outbox.size
  }

  /** Jobs held (scheduled, queued, running), not finished. */
  get jobCount(): number {
    return this.live.size
  }

  /** Addresses of the distributors this node is connected to now. */
  get connectedDistributors(): string[] {
    return [...this.links.links()].filter((l) => l.ready).map((l) => l.address)
  }

  async start(): Promise<this> {
    if (this.state !== 'new') return this
    this.state = 'starting'
    // First: a port that is taken fails the start before anything else is opened.
    await this.metricsWiring.serve()
    try {
      return await this.open()
    } catch (err) {
      await this.metricsWiring.stopServing()
      throw err
    }
  }

  private async open(): Promise<this> {
    if (this.options.registry === undefined) {
      const dir = this.options.jobDirectory ?? this.config.jobDirectory
      const files = await loadJobDirectory(dir, this.registry)
      this.runner.deferDirectory = resolvePath(dir)
      this.log.info({ dir, files: files.length, jobs: this.registry.names() }, 'job files loaded')
    }
    checkHelloFits(this.registry.names())
    // Every job name's series from the start, at zero: a rate over them needs no first event.
    for (const name of this.registry.names()) this.jobStats.of(name)
    this.store = this.createStore()
    await this.store.open()
    if (this.store.durable && hasLeases(this.store)) {
      this.leaseKeeper = new LeaseKeeper(this.leaseContext(), this.store, this.options.leaseMs, this.options.takeover)
      await this.leaseKeeper.acquireOwn()
      this.leaseKeeper.start()
    }
    const resumed = await this.resumer.resume(this.store, this.config.retryJobsAtStart)
    this.state = 'running'
    this.links.start()
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
      if (options.force === true) this.runner.abortAll()
      return this.closing
    }
    this.closing = this.shutdown(options)
    return this.closing
  }

  private async shutdown(options: CloseOptions): Promise<void> {
    const wasRunning = this.state === 'running'
    this.state = 'draining'
    this.runner.halt()
    this.admission.drain()
    if (wasRunning) {
      const timeoutMs = options.force === true ? 0 : (options.timeoutMs ?? this.options.shutdownTimeoutMs)
      if (!(await this.runner.whenIdle(timeoutMs))) {
        this.log.warn({ running: this.runner.runningCount }, 'shutdown timeout: abandoning running chains to storage')
        this.runner.abortAll()
      }
      await this.waitOutboxFlushed(Math.min(2000, timeoutMs))
    }
    this.state = 'closed'
    this.links.stopSources()
    await this.leaseKeeper?.stop()
    this.scheduler.close()
    await this.runner.close()
    this.links.close()
    await this.store?.close().catch((err: unknown) => this.log.warn({ err }, 'store close failed'))
    // Last: the metrics watched the whole shutdown.
    await this.metricsWiring.close()
    this.log.info('node closed')
    this.safeEmit('close', {})
  }

  // --- start-up ----------------------------------------------------------------------

  private createStore(): Store {
    const { storage } = this.options
    if (storage === 'memory') return new MemoryStore()
    return this.storeGuard.wrap(
      typeof storage === 'string' ? new RedisStore({ node: this.name, url: storage }) : storage,
    )
  }

  private leaseContext(): LeaseContext {
    return {
      name: this.name,
      log: this.log,
      adopt: (peer, store) => this.resumer.adopt(peer, store),
      heldFor: (peer) => this.resumer.heldFor(peer),
      after: this.after,
      cancelTimer: (timer) => {
        this.scheduler.cancel(timer)
      },
    }
  }

  private onTimer(item: TimerItem): void {
    if (item instanceof Timer) item.fire()
    else this.runner.onDue(item)
  }

  private onMessage(link: DistributorLink, message: Message): void {
    switch (message.type) {
      case MessageType.PING:
        return
      case MessageType.DISPATCH:
        return this.intake.onDispatch(link, message.seq, message.jobs)
      case MessageType.FEEDBACK_ACK:
        return this.onFeedbackAck(link, message.seq)
      case MessageType.CANCEL:
        return this.cancels.onCancel(link, message.id)
      case MessageType.ANSWERS:
        link.answersFor.push(...message.names)
        this.directory.answers(link, message.names)
        this.outbox.route()
        this.links.requestRecheck()
        return
      case MessageType.ADMIN:
        void this.admin.answer(message.req, message.request, link.identity, (result) => link.send(result))
        return
      case MessageType.ERROR:
        this.log.warn({ distributor: link.address, code: message.code }, `distributor reported: ${message.message}`)
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
      case MessageType.RATE_LIMITED:
      case MessageType.ADMIN_RESULT:
      case MessageType.PROGRESS:
        throw new ProtocolError(`unexpected '${message.type}' from a distributor`)
      default: {
        const never: never = message
        throw new ProtocolError(`unhandled message ${String(never)}`)
      }
    }
  }

  private onFeedbackAck(link: DistributorLink, seq: number): void {
    const report = this.listenerCount('feedback:acked') > 0
    this.outbox.ack(link, seq, report ? (f) => this.safeEmit('feedback:acked', { id: f.jobId, run: f.run }) : undefined)
    this.links.requestRecheck()
  }

  /**
   * Waits up to `timeoutMs` for every distributor to acknowledge the outbox. Real time, not
   * the node's clock, for the reason given at AttemptRunner.whenIdle.
   */
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
