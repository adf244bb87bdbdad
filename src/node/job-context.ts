import { CancelJob, RateLimited } from '../errors.js'
import type { ProgressValue } from '../protocol/messages.js'
import type { Logger } from '../logger.js'
import { checkProgress } from '../protocol/progress-value.js'
import { isScheduled, nextRun } from '../scheduling/cron.js'
import type { JobStatus } from '../storage/store.js'
import type { LiveJob } from './live-jobs.js'
import type { JobContext } from './registry.js'
import type { WorkerContext } from './worker-pool.js'

/**
 * What a ctx reaches of its node: one object for every attempt (a closure per attempt cost
 * more than a no-op job).
 */
export interface AttemptHooks {
  signalOf(record: LiveJob): AbortSignal
  progress(record: LiveJob, value: ProgressValue): void
}

/**
 * A chain's `ctx`. A class rather than an object literal: a literal with getters and
 * closures costs more per job than a no-op job itself. The logger and the signal are made
 * on first use (most steps never touch them); private fields stay out of `toPlain()` and of
 * a spread.
 */
export class AttemptContext implements JobContext {
  readonly id: string
  readonly name: string
  readonly attempt: number
  status: JobStatus
  readonly node: string
  readonly dueAt: number
  readonly period: number | undefined
  readonly cron: string | undefined
  readonly tz: string | undefined
  readonly run: number
  /** The identity (`group/name`) of the distributor that sent the job. */
  readonly distributor: string
  readonly #baseLog: Logger
  readonly #record: LiveJob
  readonly #hooks: AttemptHooks
  #log: Logger | undefined

  constructor(record: LiveJob, node: string, baseLog: Logger, hooks: AttemptHooks) {
    this.id = record.id
    this.name = record.name
    this.attempt = record.attempt
    this.status = record.status
    this.node = node
    this.dueAt = record.dueAt
    this.period = record.period
    this.cron = record.cron
    this.tz = record.tz
    this.run = record.run
    this.distributor = record.distributor
    this.#baseLog = baseLog
    this.#record = record
    this.#hooks = hooks
  }

  /** Computed on use: a cron step costs more than most jobs read it. */
  get nextDueAt(): number | undefined {
    const record = this.#record
    if (!isScheduled(record)) return undefined
    return nextRun(record, record.run, record.runDueAt, record.runDueAt).runDueAt
  }

  get signal(): AbortSignal {
    return this.#hooks.signalOf(this.#record)
  }

  progress(value: unknown): void {
    this.#hooks.progress(this.#record, checkProgress(value))
  }

  get log(): Logger {
    return (this.#log ??= this.#baseLog.child({ jobId: this.id, jobName: this.name }))
  }

  cancel(): never {
    throw new CancelJob()
  }

  rateLimit(seconds: number): never {
    throw new RateLimited(seconds)
  }

  /** The plain data, for a worker thread (functions and signals do not cross threads). */
  toPlain(): WorkerContext {
    return {
      id: this.id,
      name: this.name,
      attempt: this.attempt,
      status: this.status,
      node: this.node,
      dueAt: this.dueAt,
      period: this.period,
      cron: this.cron,
      tz: this.tz,
      run: this.run,
      nextDueAt: this.nextDueAt,
      distributor: this.distributor,
    }
  }
}
