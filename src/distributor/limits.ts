import { checkBoolean, checkInteger, checkKnownKeys, checkPlainOptions, describe } from '../config.js'
import { InvalidArgumentError } from '../errors.js'
import { isScheduled } from '../scheduling/cron.js'
import type { JobOptions } from './options.js'
import type { TrackedJob } from './tracked-job.js'

/**
 * Concurrency limits per job name (docs/architecture.md, Limits): at most `concurrency` jobs
 * of the name in flight at once, in total or per `limitKey`. In flight: from the dispatch
 * pass that gives the job to a node until its final feedback, or until it goes back to the
 * pending queue (its node was lost or refused it). The dispatch pass asks `hasRoom` before it
 * gives a job of a limited name; the rest of the distributor tells `release` when a job that
 * holds a slot stops holding it.
 */

/** A limit as given to `distributor.limit(name, ...)` or in the `limits` option. */
export interface LimitOptions {
  /** Jobs of the name in flight at once (per key with `perKey`). */
  concurrency: number
  /** Count per `limitKey` (jobs without one share the key ''), not in total. @default false */
  perKey?: boolean
}

/** A limit, validated. */
export interface Limit {
  readonly concurrency: number
  readonly perKey: boolean
}

/** Longest `limitKey`: keys are held in memory per waiting key, and labels of events. */
export const MAX_LIMIT_KEY_LENGTH = 256
const MAX_CONCURRENCY = 1_000_000
const LIMIT_KEYS: readonly string[] = ['concurrency', 'perKey']

/** Validates one limit; errors name the field as `where.concurrency`. */
export function resolveLimit(where: string, input: unknown): Limit {
  if (typeof input !== 'object' || input === null || Array.isArray(input))
    throw new InvalidArgumentError(`'${where}' must be { concurrency, perKey? } or null, got ${describe(input)}`)
  const o = input as Record<string, unknown>
  checkKnownKeys(`'${where}'`, o, LIMIT_KEYS)
  if (o['concurrency'] === undefined) throw new InvalidArgumentError(`'${where}.concurrency' is required`)
  return {
    concurrency: checkInteger(`${where}.concurrency`, o['concurrency'], 1, MAX_CONCURRENCY),
    perKey: o['perKey'] === undefined ? false : checkBoolean(`${where}.perKey`, o['perKey']),
  }
}

/** The `limits` distributor option: job name → limit. */
export function resolveLimits(input: unknown): ReadonlyMap<string, Limit> {
  const limits = new Map<string, Limit>()
  if (input === undefined) return limits
  const o = checkPlainOptions('limits', input)
  for (const [name, limit] of Object.entries(o)) limits.set(name, resolveLimit(`limits.${name}`, limit))
  return limits
}

/** The `limitKey` enqueue option. */
export function checkLimitKey(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_LIMIT_KEY_LENGTH)
    throw new InvalidArgumentError(
      `'limitKey' must be a string of 1..${MAX_LIMIT_KEY_LENGTH} characters, got ${describe(value)}`,
    )
  return value
}

/** The key a job counts under: its `limitKey`, or '' for jobs without one. */
export function keyOf(job: TrackedJob): string {
  return job.opts.limitKey ?? ''
}

/** What the limits need of the rest of the distributor. */
export interface LimitHooks {
  /** Slots freed where jobs wait for them: a dispatch pass is due. */
  wake(): void
}

/** A line of jobs waiting for one key's slots (LimitedRoute keeps them); woken when one frees. */
export interface KeyWaker {
  wake(key: string): void
  wakeAll(): void
}

/** The slots of one limited job name, counted across its routes. */
export class NameLimit {
  /** Slots in use: in total, or per key (a key leaves the map when it holds none). */
  private total = 0
  private readonly byKey = new Map<string, number>()
  /** The name's routes in the pending queue, told when a key's slot frees. */
  readonly routes = new Set<KeyWaker>()

  constructor(
    readonly name: string,
    public limit: Limit,
  ) {}

  get perKey(): boolean {
    return this.limit.perKey
  }

  /** Slots in use for `key` (for the whole name, without perKey). */
  inUse(key: string): number {
    return this.limit.perKey ? (this.byKey.get(key) ?? 0) : this.total
  }

  hasRoom(key: string): boolean {
    return this.inUse(key) < this.limit.concurrency
  }

  /** Keys that hold a slot now (1 without perKey while any is held). */
  get keysInUse(): number {
    return this.limit.perKey ? this.byKey.size : this.total > 0 ? 1 : 0
  }

  /**
   * `job` takes a slot of its key. A schedule takes none: it would hold it for its whole life
   * (one restored from a spool, or adopted, when its name got a limit since).
   */
  take(job: TrackedJob): void {
    if (isScheduled(job.opts)) return
    job.holdsSlot = true
    if (!this.limit.perKey) {
      this.total++
      return
    }
    const key = keyOf(job)
    this.byKey.set(key, (this.byKey.get(key) ?? 0) + 1)
  }

  /** `job`'s slot frees; returns true when its key (or the name) was full until now. */
  free(job: TrackedJob): boolean {
    const key = keyOf(job)
    const wasFull = !this.hasRoom(key)
    if (!this.limit.perKey) this.total--
    else {
      const n = (this.byKey.get(key) ?? 1) - 1
      if (n === 0) this.byKey.delete(key)
      else this.byKey.set(key, n)
    }
    if (wasFull && this.hasRoom(key)) {
      if (this.limit.perKey) for (const route of this.routes) route.wake(key)
      return true
    }
    return false
  }

  /** Starts counting again from `inFlight`, the jobs of the name sent to nodes and unfinished. */
  recount(inFlight: Iterable<TrackedJob>): void {
    this.total = 0
    this.byKey.clear()
    for (const job of inFlight) this.take(job)
  }
}

/** Every limited job name's slots. An unlimited name is never looked up on the hot path. */
export class Limits {
  private readonly byName = new Map<string, NameLimit>()

  constructor(private readonly hooks: LimitHooks) {}

  /** The limit of job name `name`, if it has one. */
  of(name: string): NameLimit | undefined {
    return this.byName.size === 0 ? undefined : this.byName.get(name)
  }

  /** Every limited name, with its limit and slots. */
  values(): IterableIterator<NameLimit> {
    return this.byName.values()
  }

  /**
   * Sets (or with null removes) the limit of `name`. `held`: every unfinished job the
   * distributor holds, read when the slots must be counted from scratch (a name limited
   * anew, or counted otherwise). Returns whether the name's pending jobs must be filed
   * anew (limited anew, unlimited, or counted otherwise): the caller rebuilds its routes.
   */
  set(name: string, limit: Limit | null, held: () => Iterable<TrackedJob>): boolean {
    const current = this.byName.get(name)
    if (limit === null) {
      if (current === undefined) return false
      this.byName.delete(name)
      // Slots its jobs hold are forgotten: `release` of such a job finds no limit.
      this.hooks.wake()
      return true
    }
    if (current !== undefined && current.limit.perKey === limit.perKey) {
      const raised = limit.concurrency > current.limit.concurrency
      current.limit = limit
      if (raised) {
        for (const route of current.routes) route.wakeAll()
        this.hooks.wake()
      }
      return false
    }
    const scheduled: TrackedJob[] = []
    const inFlight: TrackedJob[] = []
    for (const job of held()) {
      if (job.name !== name) continue
      if (isScheduled(job.opts)) scheduled.push(job)
      if (job.state === 'sent' || job.state === 'accepted') inFlight.push(job)
    }
    if (scheduled.length > 0)
      throw new InvalidArgumentError(
        `job name '${name}' has ${scheduled.length} periodic or cron job(s) held here (such as ${scheduled[0]?.id}): a schedule would hold its slot for its whole life; cancel them or limit another name`,
      )
    // Limited anew, or counted the other way (per key or in total): its routes are made anew.
    const limited = new NameLimit(name, limit)
    limited.recount(inFlight)
    this.byName.set(name, limited)
    this.hooks.wake()
    return true
  }

  /** Refuses a periodic or cron job of a limited name (it would hold a slot for its whole life). */
  checkEnqueue(name: string, opts: Readonly<JobOptions>): void {
    if (this.byName.size > 0 && isScheduled(opts) && this.byName.has(name))
      throw new InvalidArgumentError(
        `job name '${name}' has a concurrency limit: periodic and cron jobs are refused for it (a schedule would hold its slot for its whole life)`,
      )
  }

  /** `job` held a slot and holds it no more: it finished, or went back to the queue. */
  release(job: TrackedJob): void {
    job.holdsSlot = false
    const limit = this.byName.get(job.name)
    if (limit?.free(job)) this.hooks.wake()
  }
}
