import { MAX_TIMER_DELAY, systemClock, type Clock, type TimerHandle } from './clock.js'
import { TimerHeap, type TimerSlot } from './timer-heap.js'

/**
 * A drain that has run this long stops and goes on at the next timer turn, so that a
 * million jobs due at once do not hold the event loop for seconds: feedback goes out as it
 * is made, frames and heartbeats are read. Checked before every entry after the first
 * (a clock read costs little beside an entry's onDue, which may run a whole chain).
 */
export const DRAIN_BUDGET_MS = 20

export interface SchedulerOptions {
  /** Receives whatever an `onDue` call threw. Default: ignore. */
  onError?: (err: unknown) => void
}

/**
 * Runs each item at its absolute due time (epoch ms) from ONE native timer. Items carry
 * their own heap slot (TimerSlot): jobs are scheduled as themselves, other timers as a
 * `Timer` with a callback.
 *
 * Why one timer: a node may hold a million delayed jobs; a native timer each would cost a
 * closure and a libuv-side entry each, and the heap already knows which one is next.
 *
 * INVARIANTS
 * - At most ONE native timer is armed. When armed, `armedFor` is the due time it was armed
 *   for and no entry is due earlier, so `schedule` re-arms only for a strictly earlier entry.
 *   Cancelling the earliest entry leaves the timer alone: it wakes early, finds nothing due
 *   and re-arms, which is cheaper than re-arming on every cancel.
 * - The delay is clamped to MAX_TIMER_DELAY because Node turns anything larger into 1 ms; a
 *   far-future entry therefore wakes the timer several times before it is due.
 * - On wake-up the clock is read again and nothing runs before its due time: the wall clock
 *   can be behind the timer's monotonic clock (clamping, clock adjustments), so an early
 *   wake re-arms instead of running.
 * - A drain runs due entries in (dueAt, seq) order and stops at the first entry that was
 *   scheduled (or rescheduled) from inside `onDue`; that entry, and any due ones ordered
 *   after it, run on the next timer turn (a 0 ms timeout). Otherwise an `onDue` that
 *   re-schedules itself for "now" would keep the drain spinning forever and starve the
 *   event loop. Stopping rather than skipping keeps the (dueAt, seq) order across turns.
 *   A drain also stops once it has run DRAIN_BUDGET_MS, for the same reason.
 * - Each entry leaves the heap before its `onDue` runs, so `onDue` may schedule the same item
 *   again, cancel others (a cancelled entry never fires, even mid-drain) or call `close()`.
 * - A throwing `onDue` (or `onError`) is contained: the drain goes on and the timer is
 *   re-armed, because one bad job must not stall every other timer in the process.
 * - The native timer is unref()ed: pending entries alone never keep the process alive.
 */
export class Scheduler<T extends TimerSlot> {
  private readonly heap = new TimerHeap<T>()
  private readonly onDue: (item: T) => void
  private readonly clock: Clock
  private readonly onError: (err: unknown) => void
  private handle: unknown = undefined
  private armedFor = Infinity
  private draining = false

  constructor(onDue: (item: T) => void, clock: Clock = systemClock, options: SchedulerOptions = {}) {
    this.onDue = onDue
    this.clock = clock
    this.onError = options.onError ?? ignore
  }

  get size(): number {
    return this.heap.size
  }

  has(item: T): boolean {
    return this.heap.has(item)
  }

  nextDueAt(): number | undefined {
    return this.heap.peek()?.dueAt
  }

  /**
   * Runs `item` at `dueAt` (epoch ms; a past time means "as soon as possible"), which
   * becomes `item.dueAt`. An item scheduled already moves to the new time.
   */
  schedule(item: T, dueAt: number): void {
    this.heap.push(item, dueAt)
    // A drain arms the timer itself once it finishes.
    if (this.draining) return
    if (this.handle === undefined || dueAt < this.armedFor) this.arm()
  }

  cancel(item: T): boolean {
    if (!this.heap.remove(item)) return false
    if (this.heap.size === 0 && !this.draining) this.disarm()
    return true
  }

  /** Drops every entry and the timer. The scheduler stays usable. */
  close(): void {
    this.heap.clear()
    this.disarm()
  }

  private arm(): void {
    const next = this.heap.peek()
    if (next === undefined) {
      this.disarm()
      return
    }
    if (this.handle !== undefined) {
      if (next.dueAt === this.armedFor) return
      this.clock.clearTimeout(this.handle)
    }
    const delay = Math.min(Math.max(next.dueAt - this.clock.now(), 0), MAX_TIMER_DELAY)
    const handle = this.clock.setTimeout(this.fire, delay)
    ;(handle as TimerHandle | undefined)?.unref?.()
    this.handle = handle
    this.armedFor = next.dueAt
  }

  private disarm(): void {
    if (this.handle !== undefined) this.clock.clearTimeout(this.handle)
    this.handle = undefined
    this.armedFor = Infinity
  }

  // An arrow property: passed to setTimeout as is, one function for the scheduler's lifetime.
  private readonly fire = (): void => {
    this.handle = undefined
    this.armedFor = Infinity
    const now = this.clock.now()
    const next = this.heap.peek()
    if (next !== undefined && next.dueAt <= now) this.drain(now)
    this.arm()
  }

  private drain(now: number): void {
    const seqLimit = this.heap.nextSeq
    this.draining = true
    try {
      for (let ran = 0; ; ran++) {
        const next = this.heap.peek()
        if (next === undefined || next.dueAt > now || this.heap.peekSeq() >= seqLimit) break
        if (ran > 0 && this.clock.now() - now >= DRAIN_BUDGET_MS) break
        this.heap.pop()
        try {
          this.onDue(next)
        } catch (err) {
          try {
            this.onError(err)
          } catch {
            // onError is the last resort; there is nowhere left to report to.
          }
        }
      }
    } finally {
      this.draining = false
    }
  }
}

function ignore(): void {}
