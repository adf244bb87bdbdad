import type { Clock } from '../../src/scheduling/clock.js'

interface FakeTimer {
  id: number
  at: number
  fn: () => void
  unrefed: boolean
}

/** The handle a FakeClock returns: supports unref() like Node's Timeout. */
export interface FakeTimerHandle {
  readonly id: number
  unref(): FakeTimerHandle
}

/**
 * A Clock driven by hand. Time moves only through `advance`/`advanceTo` (which fire timers
 * at their instant, as the event loop would) or `setNow` (which moves time without firing
 * anything, as a suspended machine or a wall-clock jump would). `fireNext` fires the earliest
 * timer whatever the time, to simulate a wake-up earlier than the clock says.
 *
 * It also records what a test may want to assert about timer use: every delay ever passed
 * to setTimeout, and the most timers that were armed at once.
 */
export class FakeClock implements Clock {
  private time: number
  private nextId = 1
  private readonly timers = new Map<number, FakeTimer>()
  /** Every delay passed to setTimeout, in order. */
  readonly delays: number[] = []
  /** The highest number of timers armed at the same time. */
  maxArmed = 0

  constructor(start = Date.UTC(2030, 0, 1)) {
    this.time = start
  }

  now(): number {
    return this.time
  }

  setTimeout(fn: () => void, ms: number): FakeTimerHandle {
    const id = this.nextId++
    this.delays.push(ms)
    const timer: FakeTimer = { id, at: this.time + ms, fn, unrefed: false }
    this.timers.set(id, timer)
    this.maxArmed = Math.max(this.maxArmed, this.timers.size)
    return {
      id,
      unref() {
        timer.unrefed = true
        return this
      },
    }
  }

  clearTimeout(handle: unknown): void {
    if (handle !== null && typeof handle === 'object' && 'id' in handle) {
      this.timers.delete((handle as FakeTimerHandle).id)
    }
  }

  /** Timers currently armed. */
  get armed(): number {
    return this.timers.size
  }

  /** True when every armed timer was unref()ed (and at least one is armed). */
  get allUnrefed(): boolean {
    return this.timers.size > 0 && [...this.timers.values()].every((t) => t.unrefed)
  }

  /** When the earliest armed timer will fire, or undefined. */
  get nextTimerAt(): number | undefined {
    return this.earliest()?.at
  }

  advance(ms: number): void {
    this.advanceTo(this.time + ms)
  }

  /** Fires every timer due up to `target` in time order, at its own instant. */
  advanceTo(target: number): void {
    for (;;) {
      const next = this.earliest()
      if (next === undefined || next.at > target) break
      this.time = Math.max(this.time, next.at)
      this.timers.delete(next.id)
      next.fn()
    }
    this.time = Math.max(this.time, target)
  }

  /** Moves the clock without firing anything. */
  setNow(time: number): void {
    this.time = time
  }

  /** Fires the earliest timer now, whatever the clock says. Returns false if none is armed. */
  fireNext(): boolean {
    const next = this.earliest()
    if (next === undefined) return false
    this.timers.delete(next.id)
    next.fn()
    return true
  }

  private earliest(): FakeTimer | undefined {
    let best: FakeTimer | undefined
    for (const t of this.timers.values()) {
      if (best === undefined || t.at < best.at || (t.at === best.at && t.id < best.id)) best = t
    }
    return best
  }
}
