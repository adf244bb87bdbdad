import { InvalidArgumentError } from '../errors.js'
import { isScheduled } from '../scheduling/cron.js'
import { Timer } from '../scheduling/timer-heap.js'
import type { JobOptions } from './job-options.js'
import type { Limit, RateOptions } from './limit-options.js'
import { RateWindow } from './rate-window.js'
import type { TrackedJob } from './tracked-job.js'

/**
 * Limits per job name (docs/architecture.md, Limits): at most `concurrency` jobs of the name
 * in flight at once, and at most `rate.max` dispatched in any `rate.per` seconds, in total
 * or per `limitKey`. In flight: from the dispatch pass that gives the job to a node until
 * its final feedback, or until it goes back to the pending queue (its node was lost or
 * refused it). The dispatch pass asks `mayStart` before it gives a job of a limited name;
 * the rest of the distributor tells `release` when a job that holds a slot stops holding it.
 */

/** The key a job counts under: its `limitKey`, or '' for jobs without one. */
export function keyOf(job: TrackedJob): string {
  return job.opts.limitKey ?? ''
}

/** What the limits need of the rest of the distributor. */
export interface LimitHooks {
  /** Slots freed where jobs wait for them: a dispatch pass is due. */
  wake(): void
  /** Fires `timer` at `at` (epoch ms), on the distributor's one scheduler. */
  wakeAt(timer: Timer, at: number): void
  cancelTimer(timer: Timer): void
}

/** A line of jobs waiting for one key's slots (LimitedRoute keeps them); woken when one frees. */
export interface KeyWaker {
  wake(key: string): void
  wakeAll(): void
  /** Jobs waiting here of `key` (of every key, undefined). */
  waiting(key: string | undefined): number
}

/**
 * Slots and starts shared with the other members of a distributor group (with a spool:
 * spool/group-limits.ts, a semaphore and a window in Redis). A limit that has it counts its
 * slots in use here as before, and may use only those the group granted this member: the
 * dispatch pass asks only what is held here (synchronous), and what is missing is asked for
 * in the turn's one call, whose answer wakes the key (NameLimit.granted).
 */
export interface SharedLimits {
  /** Slots of the scope (`key`, '' in total) this member holds. */
  slots(limit: NameLimit, key: string): number
  /** Starts of the scope granted to this member, not used yet and still usable at `now`. */
  starts(limit: NameLimit, key: string, now: number): number
  /** A granted start of the scope is used (a job dispatched). */
  started(limit: NameLimit, key: string): void
  /**
   * The scope's slots in use or wanted changed (more wanted, or some to give back): looked at
   * in the turn's call. `ended`: a job of it ended here (its slot may be another member's turn).
   */
  changed(limit: NameLimit, key: string, ended?: boolean): void
  /** The limit changed in place: a refusal may be stale (raised), or slots held go back (lowered, removed). */
  relimited(limit: NameLimit): void
  /** A job of the scope may start but no start is granted here: asked for in the turn's call. */
  wantStarts(limit: NameLimit, key: string): void
  /** The limit was removed or replaced: its slots and starts go back. */
  detach(limit: NameLimit): void
}

/** The slots and dispatch times of one limited job name, counted across its routes. */
export class NameLimit {
  /** Slots in use: in total, or per key (a key leaves the map when it holds none). */
  private total = 0
  private readonly byKey = new Map<string, number>()
  /** The name's routes in the pending queue, told when a key's slot frees. */
  readonly routes = new Set<KeyWaker>()
  /** With a rate: the dispatch times per key ('' for all without perKey). */
  private windows = new Map<string, RateWindow>()
  /** Windows kept after the last sweep of idle ones: the next sweep comes at twice that. */
  private windowsSwept = 0
  /** Keys (or '') held by the rate, each woken by its timer when its window frees. */
  private readonly rateWaits = new Map<string, Timer>()
  /** With perKey: keys a job pushed back (ctx.rateLimit), with the end of their pause (epoch ms). */
  private readonly pauses = new Map<string, number>()

  constructor(
    readonly name: string,
    private current: Limit,
    private readonly hooks: LimitHooks,
    /** With a spool: the group's slots and starts, which this member may use only as granted. */
    readonly shared?: SharedLimits,
  ) {}

  get limit(): Limit {
    return this.current
  }

  /** Changes the limit in place (counted the same way); dispatch times carry over. */
  set limit(limit: Limit) {
    const max = limit.rate?.max
    if (max === undefined) this.windows.clear()
    else if (max !== this.current.rate?.max)
      for (const [key, window] of this.windows) this.windows.set(key, window.resized(max))
    this.current = limit
    this.shared?.relimited(this)
  }

  get perKey(): boolean {
    return this.current.perKey
  }

  /** Slots in use for `key` (for the whole name, without perKey). */
  inUse(key: string): number {
    return this.current.perKey ? (this.byKey.get(key) ?? 0) : this.total
  }

  /** Whether `key` has a free slot (its rate aside); across a group, one granted here. */
  hasRoom(key: string): boolean {
    const concurrency = this.current.concurrency
    if (concurrency === undefined) return true
    const used = this.inUse(key)
    return used < concurrency && (this.shared === undefined || used < this.shared.slots(this, this.scopeOf(key)))
  }

  /** The key a limit counts `key` under: itself per key, '' in total. */
  private scopeOf(key: string): string {
    return this.current.perKey ? key : ''
  }

  /** Jobs of `key` (of the name, in total) waiting in the name's routes. */
  waiting(key: string): number {
    let n = 0
    for (const route of this.routes) n += route.waiting(this.current.perKey ? key : undefined)
    return n
  }

  /** The group granted slots or starts of `key` ('' in total): its jobs take turns again. */
  granted(key: string): void {
    if (this.current.perKey) for (const route of this.routes) route.wake(key)
    this.hooks.wake()
  }

  /**
   * Whether a job of `key` may be dispatched at `now`: a free slot, and its rate not spent.
   * Held by the rate, its key (or the name) is woken at the moment the window frees: one
   * timer per key held, on the distributor's scheduler; no polling.
   */
  mayStart(key: string, now: number): boolean {
    const shared = this.shared
    if (!this.hasRoom(key)) {
      // Short of granted slots (not of the limit itself): the group is asked for more.
      if (shared !== undefined && this.inUse(key) < (this.current.concurrency as number))
        shared.changed(this, this.scopeOf(key))
      return false
    }
    if (this.pauses.size > 0 && this.pausedAt(key, now)) return false
    if (this.current.rate === undefined) return true
    if (shared !== undefined) {
      // Across the group a start is granted by its window in Redis; the answer wakes the key.
      if (shared.starts(this, this.scopeOf(key), now) > 0) return true
      shared.wantStarts(this, this.scopeOf(key))
      return false
    }
    const at = this.rateFreeAt(key)
    if (at <= now) return true
    this.wakeAt(this.current.perKey ? key : '', at)
    return false
  }

  /** Whether jobs of `key` wait at `now`, for a slot or for their rate (metrics, admin API). */
  isHeld(key: string, now: number): boolean {
    return (
      !this.hasRoom(key) ||
      (this.current.rate !== undefined &&
        (this.shared === undefined
          ? this.rateFreeAt(key) > now
          : this.shared.starts(this, this.scopeOf(key), now) === 0)) ||
      (this.pauses.get(key) ?? -Infinity) > now
    )
  }

  /**
   * A job of `key` pushed back: the key (with perKey; the Limits pause the whole name
   * otherwise) dispatches nothing before `until`. The pass parks it and arms its wake-up,
   * as for a spent rate.
   */
  pause(key: string, until: number): void {
    if ((this.pauses.get(key) ?? -Infinity) < until) this.pauses.set(key, until)
  }

  /** Whether `key` is paused at `now`: then it is woken when the pause ends. */
  private pausedAt(key: string, now: number): boolean {
    const until = this.pauses.get(key)
    if (until === undefined) return false
    if (until <= now) {
      this.pauses.delete(key)
      return false
    }
    this.wakeAt(key, until)
    return true
  }

  /** Cancels the rate's wake-ups: the limit was removed or replaced. */
  detach(): void {
    for (const timer of this.rateWaits.values()) this.hooks.cancelTimer(timer)
    this.rateWaits.clear()
    this.shared?.detach(this)
  }

  private rateFreeAt(key: string): number {
    const rate = this.current.rate as RateOptions
    return this.windows.get(this.current.perKey ? key : '')?.freeAt(rate.per * 1000) ?? -Infinity
  }

  private wakeAt(key: string, at: number): void {
    // One wake per key: an earlier one finds the window still full and arms it again.
    if (this.rateWaits.has(key)) return
    const timer = new Timer(() => {
      this.rateWaits.delete(key)
      if (this.current.perKey) for (const route of this.routes) route.wake(key)
      this.hooks.wake()
    })
    this.rateWaits.set(key, timer)
    this.hooks.wakeAt(timer, at)
  }

  /** A dispatch at `now` counts in its key's window. */
  private record(key: string, now: number): void {
    const rate = this.current.rate as RateOptions
    const windows = this.windows
    let window = windows.get(key)
    if (window === undefined) {
      if (windows.size >= 2 * this.windowsSwept + 64) this.sweep(now - rate.per * 1000)
      window = new RateWindow(rate.max)
      windows.set(key, window)
    }
    window.record(now)
  }

  /** Forgets the windows whose last dispatch is older than the rate's period: they hold no one back. */
  private sweep(before: number): void {
    for (const [key, window] of this.windows) if (window.newest <= before) this.windows.delete(key)
    this.windowsSwept = this.windows.size
  }

  /** Keys that hold a slot now (1 without perKey while any is held). */
  get keysInUse(): number {
    return this.limit.perKey ? this.byKey.size : this.total > 0 ? 1 : 0
  }

  /** `job` takes a slot of its key, dispatched at `now` (counted in its rate). */
  take(job: TrackedJob, now: number): void {
    if (this.current.rate !== undefined) {
      if (this.shared === undefined) this.record(this.current.perKey ? keyOf(job) : '', now)
      else this.shared.started(this, this.scopeOf(keyOf(job)))
    }
    this.count(job)
  }

  /** `job`'s slot frees; returns true when its key (or the name) was full until now. */
  free(job: TrackedJob): boolean {
    const key = keyOf(job)
    const wasFull = !this.hasRoom(key)
    if (!this.current.perKey) this.total--
    else {
      const n = (this.byKey.get(key) ?? 1) - 1
      if (n === 0) this.byKey.delete(key)
      else this.byKey.set(key, n)
    }
    // Across a group the slot stays here while jobs of its key wait, else it goes back.
    if (this.shared !== undefined && this.current.concurrency !== undefined)
      this.shared.changed(this, this.scopeOf(key), true)
    if (wasFull && this.hasRoom(key)) {
      if (this.current.perKey) for (const route of this.routes) route.wake(key)
      return true
    }
    return false
  }

  /** A job of `key` that waited here left unsent (cancelled): with a group, the scope is looked at again. */
  leftUnsent(key: string): void {
    if (this.shared !== undefined && this.current.concurrency !== undefined)
      this.shared.changed(this, this.scopeOf(key))
  }

  /** Starts counting again from `inFlight`, the jobs of the name sent to nodes and unfinished. */
  recount(inFlight: Iterable<TrackedJob>): void {
    this.total = 0
    this.byKey.clear()
    for (const job of inFlight) this.hold(job)
  }

  /**
   * `job` holds a slot of its key (without counting a dispatch in the rate: one accepted
   * after its deadline was counted when it was sent). A schedule takes none: it would hold
   * it for its whole life (one restored from a spool, or adopted, when its name got a limit
   * since). Across a group its slot is then asked for (the job runs already: a restart's,
   * an adoption's, a limit set anew).
   */
  hold(job: TrackedJob): void {
    this.count(job)
    if (this.shared !== undefined && job.holdsSlot && this.current.concurrency !== undefined)
      this.shared.changed(this, this.scopeOf(keyOf(job)))
  }

  private count(job: TrackedJob): void {
    if (isScheduled(job.opts)) return
    job.holdsSlot = true
    if (!this.current.perKey) {
      this.total++
      return
    }
    const key = keyOf(job)
    this.byKey.set(key, (this.byKey.get(key) ?? 0) + 1)
  }
}

/** Every limited job name's slots. An unlimited name is never looked up on the hot path. */
export class Limits {
  private readonly byName = new Map<string, NameLimit>()
  /**
   * Names a job pushed back (ctx.rateLimit), whether limited or not (but per key), each with
   * the timer that ends its pause: the dispatch pass skips their routes until then.
   */
  readonly pausedNames = new Map<string, Timer>()
  /** With a spool: the group's slots and starts (set before any limit is). */
  private shared: SharedLimits | undefined

  constructor(private readonly hooks: LimitHooks) {}

  /** Limits set from now on hold across the group that `shared` counts for. */
  shareWith(shared: SharedLimits): void {
    this.shared = shared
  }

  /**
   * A job of `name` and `key` (its limitKey, or '') pushed back (its node says so, or
   * another member of the group does): the key, for a name limited per key, else the name,
   * dispatches nothing before `until` (epoch ms). A later pause of the same name or key
   * extends it; an earlier one changes nothing.
   */
  pushBack(name: string, key: string, until: number): void {
    const limit = this.byName.get(name)
    if (limit?.perKey === true) {
      limit.pause(key, until)
      return
    }
    const current = this.pausedNames.get(name)
    if (current !== undefined) {
      if (current.dueAt >= until) return
      this.hooks.cancelTimer(current)
    }
    const timer = new Timer(() => {
      this.pausedNames.delete(name)
      this.hooks.wake()
    })
    this.pausedNames.set(name, timer)
    this.hooks.wakeAt(timer, until)
  }

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
      current.detach()
      this.byName.delete(name)
      // Slots its jobs hold are forgotten: `release` of such a job finds no limit.
      this.hooks.wake()
      return true
    }
    if (current !== undefined && current.limit.perKey === limit.perKey) {
      const before = current.limit
      current.limit = limit
      // Looser in either way: the keys parked for it take turns again (a pass parks the held).
      if ((limit.concurrency ?? Infinity) > (before.concurrency ?? Infinity) || !sameRate(limit, before)) {
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
    current?.detach()
    const limited = new NameLimit(name, limit, this.hooks, this.shared)
    limited.recount(inFlight)
    this.byName.set(name, limited)
    this.hooks.wake()
    return true
  }

  /** Refuses a periodic or cron job of a limited name (it would hold a slot for its whole life). */
  checkEnqueue(name: string, opts: Readonly<JobOptions>): void {
    if (this.byName.size > 0 && isScheduled(opts) && this.byName.has(name))
      throw new InvalidArgumentError(
        `job name '${name}' has a limit: periodic and cron jobs are refused for it (a schedule would hold its slot for its whole life)`,
      )
  }

  /** `job` held a slot and holds it no more: it finished, or went back to the queue. */
  release(job: TrackedJob): void {
    job.holdsSlot = false
    const limit = this.byName.get(job.name)
    if (limit?.free(job)) this.hooks.wake()
  }
}

function sameRate(a: Limit, b: Limit): boolean {
  return a.rate?.max === b.rate?.max && a.rate?.per === b.rate?.per
}
