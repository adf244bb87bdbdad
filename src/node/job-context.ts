import { CancelJob } from '../errors.js'
import type { Logger } from '../logger.js'
import { isScheduled, nextRun } from '../scheduling/cron.js'
import type { JobRecord } from '../storage/store.js'
import type { JobStatus } from '../storage/store.js'
import type { JobContext } from './registry.js'
import type { WorkerContext } from './worker-pool.js'

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
  readonly #record: JobRecord
  readonly #signalOf: (record: JobRecord) => AbortSignal
  #log: Logger | undefined

  /** `signalOf`: the node's, one function for every attempt (a closure per attempt cost more). */
  constructor(record: JobRecord, node: string, baseLog: Logger, signalOf: (record: JobRecord) => AbortSignal) {
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
    this.#signalOf = signalOf
  }

  /** Computed on use: a cron step costs more than most jobs read it. */
  get nextDueAt(): number | undefined {
    const record = this.#record
    if (!isScheduled(record)) return undefined
    return nextRun(record, record.run, record.runDueAt, record.runDueAt).runDueAt
  }

  get signal(): AbortSignal {
    return this.#signalOf(this.#record)
  }

  get log(): Logger {
    return (this.#log ??= this.#baseLog.child({ jobId: this.id, jobName: this.name }))
  }

  cancel(): never {
    throw new CancelJob()
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
