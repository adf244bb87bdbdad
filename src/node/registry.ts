import { InvalidArgumentError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { JobArgsObject } from '../protocol/args.js'
import type { ProgressValue } from '../protocol/messages.js'
import type { JobStatus } from '../storage/store.js'

/**
 * Declare job names and their args once, and `enqueue` and `job` are typed:
 *
 * ```ts
 * declare module 'job-reactor' {
 *   interface JobArgs { send_mail: { to: string; sent?: boolean } }
 * }
 * ```
 */
// biome-ignore lint/suspicious/noEmptyInterface: users augment JobArgs, and only an interface merges
export interface JobArgs {}

/** Args type of job `N`: the declared one, else any plain object. */
export type ArgsOf<N extends string> = N extends keyof JobArgs ? JobArgs[N] & JobArgsObject : JobArgsObject

/** What every step of a chain gets besides the args. */
export interface JobContext {
  id: string
  name: string
  /** 1 on the first attempt of a run. */
  attempt: number
  /** 'in progress' while the job and callbacks run; 'error' or 'failed' (last attempt) in errbacks. */
  status: JobStatus
  /** The node's name. */
  node: string
  /** When this attempt was due (epoch ms). */
  dueAt: number
  /** Seconds between runs of a periodic job. */
  period: number | undefined
  /** The cron expression of a cron job. */
  cron: string | undefined
  /** The IANA time zone of `cron` (undefined: UTC). */
  tz: string | undefined
  /** Scheduled jobs (`period` or `cron`): the run number, 1-based. */
  run: number
  /**
   * Scheduled jobs: when the run after this one is due (epoch ms), as the schedule stands; a
   * run that ends after that time skips to the first one due after its end. Undefined for a
   * job that runs once.
   */
  nextDueAt: number | undefined
  /** The distributor the job came from. */
  distributor: string
  /** Aborts when the attempt times out or the node shuts down. */
  signal: AbortSignal
  /** A pino child logger bound to the job. */
  log: Logger
  /** Ends the job as cancelled (same as `throw new CancelJob()`). */
  cancel(): never
  /**
   * Pushes back (an upstream answered 429): ends the attempt without counting it, runs the
   * job again after `seconds` (0 < seconds <= 86,400, else InvalidArgumentError), and holds
   * back its name (or key) at its distributor meanwhile. Same as `throw new RateLimited(seconds)`.
   */
  rateLimit(seconds: number): never
  /**
   * Reports how far the job got: a finite number or a small plain object (at most 16 KiB
   * as msgpack; else InvalidArgumentError). Coalesced to about ten a second per job, the
   * latest value winning; the last one reaches the caller before the run's feedback.
   */
  progress(value: ProgressValue): void
}

export type JobStep<A extends JobArgsObject = JobArgsObject> = (args: A, ctx: JobContext) => unknown

export interface NamedStep {
  name: string
  fn: JobStep
}

export interface JobDefinition {
  name: string
  run: JobStep
  callbacks: NamedStep[]
  errbacks: NamedStep[]
}

/** Job definitions of one node (two nodes in one process keep separate registries). */
export class JobRegistry {
  private readonly jobs = new Map<string, JobStep>()
  private readonly callbacks = new Map<string, NamedStep[]>()
  private readonly errbacks = new Map<string, NamedStep[]>()
  /** Built on first use per job, dropped when a step is added: one lookup per attempt. */
  private readonly definitions = new Map<string, JobDefinition>()

  define(name: string, run: JobStep): void {
    checkStepArgs('job', name, run)
    if (this.jobs.has(name)) throw new InvalidArgumentError(`job '${name}' is defined twice`)
    this.jobs.set(name, run)
    this.definitions.delete(name)
  }

  addCallback(jobName: string, name: string, fn: JobStep): void {
    checkStepArgs('jobCallback', jobName, fn)
    pushTo(this.callbacks, jobName, { name, fn })
    this.definitions.delete(jobName)
  }

  addErrback(jobName: string, name: string, fn: JobStep): void {
    checkStepArgs('jobErrback', jobName, fn)
    pushTo(this.errbacks, jobName, { name, fn })
    this.definitions.delete(jobName)
  }

  get(name: string): JobDefinition | undefined {
    let def = this.definitions.get(name)
    if (def !== undefined) return def
    const run = this.jobs.get(name)
    if (run === undefined) return undefined
    def = { name, run, callbacks: this.callbacks.get(name) ?? [], errbacks: this.errbacks.get(name) ?? [] }
    this.definitions.set(name, def)
    return def
  }

  has(name: string): boolean {
    return this.jobs.has(name)
  }

  /** Names with a job definition (callbacks alone do not make a job). */
  names(): string[] {
    return [...this.jobs.keys()]
  }
}

function checkStepArgs(what: string, name: unknown, fn: unknown): void {
  if (typeof name !== 'string' || name.length === 0)
    throw new InvalidArgumentError(`${what}: the job name must be a non-empty string`)
  if (typeof fn !== 'function') throw new InvalidArgumentError(`${what}('${name}'): the step must be a function`)
}

function pushTo(map: Map<string, NamedStep[]>, key: string, step: NamedStep): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [step])
  else list.push(step)
}

// ---------------------------------------------------------------------------------------
// `job()`, `jobCallback()` and `jobErrback()` are called at the top level of job files. The
// registry they write to lives on globalThis, not in this module, because a job file may
// import another copy of this package (the built one, while tests run the sources) and
// must still reach the node that is loading it.

interface RegistrySlot {
  current: JobRegistry | undefined
  fallback: JobRegistry
  /** Tail of the chain of loads; loads run one at a time. */
  loading: Promise<unknown>
}

const SLOT_KEY = Symbol.for('job-reactor.registry')

function slot(): RegistrySlot {
  const g = globalThis as unknown as Record<symbol, RegistrySlot | undefined>
  return (g[SLOT_KEY] ??= { current: undefined, fallback: new JobRegistry(), loading: Promise.resolve() })
}

/** The registry job files write to outside of a node's load (e.g. imported by hand). */
export function defaultRegistry(): JobRegistry {
  return slot().fallback
}

/**
 * Runs `load` with `registry` as the target of job()/jobCallback()/jobErrback(). Loads are
 * serialised process-wide so two nodes loading at once cannot write into each other.
 */
export function loadInto<T>(registry: JobRegistry, load: () => Promise<T>): Promise<T> {
  const s = slot()
  const run = s.loading.then(async () => {
    const previous = s.current
    s.current = registry
    try {
      return await load()
    } finally {
      s.current = previous
    }
  })
  s.loading = run.catch(() => undefined)
  return run
}

function target(): JobRegistry {
  const s = slot()
  return s.current ?? s.fallback
}

/** Defines job `name`: the first step of its chain. */
export function job<N extends string>(name: N, run: JobStep<ArgsOf<N>>): void {
  target().define(name, run as JobStep)
}

/** Adds a callback to job `jobName`: runs after the job (and earlier callbacks) succeeded. */
export function jobCallback<N extends string>(jobName: N, name: string, fn: JobStep<ArgsOf<N>>): void {
  target().addCallback(jobName, name, fn as JobStep)
}

/** Adds an errback to job `jobName`: runs, in order, after a step failed (`args.error` is set). */
export function jobErrback<N extends string>(jobName: N, name: string, fn: JobStep<ArgsOf<N>>): void {
  target().addErrback(jobName, name, fn as JobStep)
}
