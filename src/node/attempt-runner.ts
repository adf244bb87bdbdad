import type { Config } from '../config.js'
import {
  ConnectionClosedError,
  TimeoutError,
  UnknownJobError,
  coerceError,
  deserializeError,
  serializeError,
} from '../errors.js'
import type { Logger, LogLevel } from '../logger.js'
import { decodeArgs, type JobArgsObject } from '../protocol/args.js'
import type { Clock } from '../scheduling/clock.js'
import { DRAIN_BUDGET_MS, type Scheduler } from '../scheduling/scheduler.js'
import { Timer } from '../scheduling/timer-heap.js'
import { JobStatus, type JobPatch } from '../storage/store.js'
import { runChain, type ChainOutcome } from './chain-runner.js'
import { AttemptContext, type AttemptHooks } from './job-context.js'
import type { LiveJob, TimerItem } from './live-jobs.js'
import type { NodeJobStats } from './node-job-stats.js'
import type { NodeEvents } from './node-events.js'
import type { ProgressReporter } from './progress-reporter.js'
import type { JobRegistry } from './registry.js'
import type { StoreOutage } from './store-outage.js'
import { WorkerPool } from './worker-pool.js'

/** What follows an attempt, for the runner (the AttemptRecorder). */
export interface AttemptEnd {
  /**
   * Carries out what follows an attempt (see after-attempt.ts), which ended at `now` by the
   * node's clock; returns the store write it waits for, if any. The next attempt may start
   * before that write is done. `progressUnkept`: the job's last progress value is not in its
   * record yet (ProgressReporter.settle).
   */
  afterAttempt(
    job: LiveJob,
    outcome: ChainOutcome,
    args: JobArgsObject,
    maxAttempt: number,
    now: number,
    progressUnkept: boolean,
  ): Promise<void> | undefined
}

export interface RunnerSettings {
  /** The node's name. */
  readonly name: string
  readonly log: Logger
  readonly concurrency: number
  readonly workerThreads: number
  readonly logLevel: LogLevel
  readonly registry: JobRegistry
  /** Read live: `JR.configure` in a job file applies. */
  readonly config: Config
  readonly clock: Clock
  /** Each attempt's wait (due → start) and run (start → end) are counted here, per job name. */
  readonly stats: Pick<NodeJobStats, 'of'>
}

/** A chain that threw outside its steps' handling (a bug, not a job failure) fails the attempt. */
function chainThrew(error: unknown): ChainOutcome {
  return { kind: 'error', cancelled: false, error: coerceError(error), unrecoverable: false }
}

/**
 * Runs jobs when they are due: their timers, the ready queue, and each attempt's chain
 * (on the event loop, or in the defer pool), with its timeout and its signal.
 *
 * INVARIANTS: at most `concurrency` chains run at once; due jobs beyond that wait in
 * `ready`, in the order they came due. A job in `ready` whose phase is no longer 'queued'
 * (cancelled, dropped) is skipped. After `halt()` no attempt starts.
 */
export class AttemptRunner {
  private readonly ready: LiveJob[] = []
  private readyHead = 0
  private pumping = false
  /** A pump stopped by its budget goes on in a later turn (see pump). */
  private pumpResumeQueued = false
  private halted = false
  private running = 0
  private readonly controllers = new Map<string, AbortController>()
  private idleWaiters: (() => void)[] = []
  private pool: WorkerPool | undefined
  /** Where defer threads load job files from; unset when the node was given a registry. */
  deferDirectory: string | undefined
  private warnedInlineDefer = false

  constructor(
    private readonly settings: RunnerSettings,
    private readonly scheduler: Scheduler<TimerItem>,
    private readonly outage: StoreOutage,
    private readonly events: NodeEvents,
    private readonly end: AttemptEnd,
    private readonly progress: Pick<ProgressReporter, 'report' | 'settle'>,
  ) {}

  /** Chains running now. */
  get runningCount(): number {
    return this.running
  }

  /** Due jobs waiting for a free slot (a few cancelled meanwhile may still be counted). */
  get queuedCount(): number {
    return this.ready.length - this.readyHead
  }

  /** Chains are running or due: feedback may wait a moment to share a frame. */
  get busy(): boolean {
    return this.running > 0 || this.readyHead < this.ready.length
  }

  /** Arms the job's timer, or queues it at once when due. */
  schedule(job: LiveJob): void {
    if (job.dueAt <= this.settings.clock.now()) this.enqueueReady(job)
    else {
      job.phase = 'scheduled'
      this.scheduler.schedule(job, job.dueAt)
    }
  }

  /** The scheduler's callback for a job's timer. */
  onDue(job: LiveJob): void {
    if (job.phase === 'scheduled') this.enqueueReady(job)
  }

  /** No attempt starts from now on (the node is shutting down). */
  halt(): void {
    this.halted = true
  }

  /** Aborts the signals of the running attempts (a forced or timed-out shutdown). */
  abortAll(): void {
    for (const controller of this.controllers.values())
      controller.abort(new ConnectionClosedError('node shutting down'))
  }

  /**
   * Resolves true once no chain runs, false past `timeoutMs`. Real time, not the node's
   * clock: it bounds how long a process takes to shut down (a SIGTERM's grace period), and
   * a node on a test's clock must still close without that test moving its time.
   */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.running === 0) return Promise.resolve(true)
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs)
      this.idleWaiters.push(() => {
        clearTimeout(timer)
        resolve(true)
      })
    })
  }

  /** Stops the defer pool's threads. */
  async close(): Promise<void> {
    await this.pool?.close()
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
    // the scheduler's drain lets frames, heartbeats and feedback through in between. Real
    // time, not the node's clock: the budget bounds how long the event loop is held.
    const started = Date.now()
    // When an attempt's chain ended before runAttempt returned, its end time (read then, by
    // the node's clock) is the next attempt's start: microseconds apart, and a clock read is
    // tens of nanoseconds, as much as the rest of a counter's work per attempt.
    let now: number | undefined
    try {
      for (
        let ran = 0;
        this.running < this.settings.concurrency && this.readyHead < this.ready.length && !this.halted;
        ran++
      ) {
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
        now = this.runAttempt(job, now)
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

  /**
   * Starts an attempt at `now` (read from the clock when not given). One whose chain is
   * synchronous also ends before this returns: then it returns when it ended.
   */
  private runAttempt(job: LiveJob, now: number | undefined): number | undefined {
    const startedAt = now ?? this.settings.clock.now()
    // Late by the node's clock against a due time set by the distributor's: never below 0.
    this.settings.stats.of(job.name).wait.observe(startedAt > job.dueAt ? (startedAt - job.dueAt) / 1000 : 0)
    this.running++
    job.phase = 'running'
    job.status = JobStatus.IN_PROGRESS
    job.attempt++
    // The attempt count must survive a crash (or a crash-looping job would retry forever),
    // but the chain need not wait for it; a store that does not survive a crash need not
    // hear of it at all.
    if (job.store.durable) {
      const start: JobPatch = { status: job.status, attempt: job.attempt }
      void this.outage.persist(job.store, () => job.store.updateJob(job.id, start))
    }
    if (this.events.wants('job:start'))
      this.events.emit('job:start', { id: job.id, name: job.name, attempt: job.attempt, run: job.run })
    const { config, registry } = this.settings
    const maxAttempt = job.maxAttempt ?? config.maxAttempt
    let args: JobArgsObject
    let ctx: AttemptContext
    try {
      args = decodeArgs(job.args)
      ctx = this.contextFor(job, args)
    } catch (err) {
      // Stored args that do not decode: no attempt could read them, so the job fails for
      // good. The attempt must still end here, or its slot would stay taken for ever.
      return this.endAttempt(
        job,
        { kind: 'error', cancelled: false, error: coerceError(err), unrecoverable: true },
        { error: serializeError(err) },
        maxAttempt,
        undefined,
        startedAt,
      )
    }
    const timeout = job.timeout ?? config.timeout
    const abortable = timeout > 0 ? this.hooks.signalOf(job) : undefined
    const timer =
      abortable === undefined
        ? undefined
        : new Timer(() => this.controllers.get(job.id)?.abort(new TimeoutError(timeout)))
    if (timer !== undefined) this.scheduler.schedule(timer, startedAt + timeout * 1000)
    const lastAttempt = job.attempt >= maxAttempt
    const def = registry.get(job.name)
    if (def === undefined) {
      const error = new UnknownJobError(job.name, this.settings.name)
      args['error'] = serializeError(error)
      return this.endAttempt(
        job,
        { kind: 'error', cancelled: false, error, unrecoverable: true },
        args,
        maxAttempt,
        timer,
        startedAt,
      )
    }
    if (job.defer && this.deferDirectory !== undefined) {
      void this.runDeferred(job, args, ctx, lastAttempt, this.hooks.signalOf(job)).then((r) =>
        this.endAttempt(job, r.outcome, r.args, maxAttempt, timer, startedAt),
      )
      return undefined
    }
    if (job.defer && !this.warnedInlineDefer) {
      // A worker thread loads job files by path; definitions given in code have none.
      this.warnedInlineDefer = true
      this.settings.log.warn(
        { job: job.name },
        "defer needs a job directory: this node was given a 'registry', so deferred jobs run on its event loop",
      )
    }
    let outcome: ChainOutcome | Promise<ChainOutcome>
    try {
      outcome = runChain(def, args, ctx, lastAttempt, abortable)
    } catch (err) {
      outcome = chainThrew(err)
    }
    if (outcome instanceof Promise) {
      void outcome.then(
        (o) => this.endAttempt(job, o, args, maxAttempt, timer, startedAt),
        (err: unknown) => this.endAttempt(job, chainThrew(err), args, maxAttempt, timer, startedAt),
      )
      return undefined
    }
    return this.endAttempt(job, outcome, args, maxAttempt, timer, startedAt)
  }

  private endAttempt(
    job: LiveJob,
    outcome: ChainOutcome,
    args: JobArgsObject,
    maxAttempt: number,
    timer: Timer | undefined,
    startedAt: number,
  ): number {
    // One read of the clock for the run time, for what follows the attempt, and for the
    // start of the next one when this ended within runAttempt (see pump).
    const endedAt = this.settings.clock.now()
    this.settings.stats.of(job.name).run.observe((endedAt - startedAt) / 1000)
    if (timer !== undefined) this.scheduler.cancel(timer)
    this.controllers.delete(job.id)
    this.running--
    // Its last progress goes out before the feedback that follows the attempt.
    const progressUnkept = this.progress.settle(job)
    let recorded: Promise<void> | undefined
    try {
      recorded = this.end.afterAttempt(job, outcome, args, maxAttempt, endedAt, progressUnkept)
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
    return endedAt
  }

  private attemptNotRecorded(job: LiveJob, err: unknown): void {
    this.settings.log.error({ err, id: job.id }, 'cannot record the end of an attempt')
  }

  private attemptEnded(): void {
    if (this.running === 0 && this.idleWaiters.length > 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve()
    }
    this.pump()
  }

  /** Runs the chain in the defer pool; the pool's thread returns the args it ended with. */
  private async runDeferred(
    record: LiveJob,
    args: JobArgsObject,
    ctx: AttemptContext,
    lastAttempt: boolean,
    signal: AbortSignal,
  ): Promise<{ outcome: ChainOutcome; args: JobArgsObject }> {
    this.pool ??= new WorkerPool(
      this.settings.workerThreads,
      { jobDirectory: this.deferDirectory as string, node: this.settings.name, logLevel: this.settings.logLevel },
      this.settings.log,
    )
    const jobItself = args['jobItself'] as Record<string, unknown> | undefined
    try {
      const result = await this.pool.run(
        { type: 'run', id: record.id, args: record.args, ctx: ctx.toPlain(), lastAttempt, jobItself },
        signal,
        // Checked in the thread, at the call.
        (value) => this.progress.report(record, value),
      )
      const outcome: ChainOutcome =
        result.kind === 'success'
          ? { kind: 'success', cancelled: result.cancelled }
          : result.kind === 'rate-limited'
            ? { kind: 'rate-limited', cancelled: false, seconds: result.seconds as number }
            : {
                kind: 'error',
                cancelled: result.cancelled,
                error: deserializeError(result.error),
                unrecoverable: result.unrecoverable,
              }
      return { outcome, args: decodeArgs(result.args) }
    } catch (err) {
      const error = coerceError(err)
      args['error'] = serializeError(error)
      return { outcome: { kind: 'error', cancelled: false, error, unrecoverable: false }, args }
    }
  }

  /** What every ctx reaches of the node: one object, so that a ctx needs no closure of its own. */
  private readonly hooks: AttemptHooks = {
    /**
     * The running attempt's AbortSignal. An AbortController costs more than a no-op job: it
     * is made only for a timeout, a deferred chain, or a step that reads ctx.signal.
     */
    signalOf: (record) => {
      let controller = this.controllers.get(record.id)
      if (controller === undefined) {
        controller = new AbortController()
        this.controllers.set(record.id, controller)
      }
      return controller.signal
    },
    progress: (record, value) => this.progress.report(record, value),
  }

  private contextFor(record: LiveJob, args: JobArgsObject): AttemptContext {
    const ctx = new AttemptContext(record, this.settings.name, this.settings.log, this.hooks)
    if (this.settings.config.mergeJobItselfToArgs) {
      args['jobItself'] = {
        id: record.id,
        name: record.name,
        args: decodeArgs(record.args),
        attempt: record.attempt,
        status: record.status,
        node: this.settings.name,
        distributor: record.distributor,
        dueAt: record.dueAt,
        period: record.period,
        run: record.run,
      }
    }
    return ctx
  }
}
