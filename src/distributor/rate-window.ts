/**
 * The dispatch times of one rate-limited name or key (limits.ts), as a sliding window: the
 * last `max` of them in a ring. A job may go at `now` when fewer than `max` went in the
 * `per` before it, that is when the oldest of the last `max` went at `now - per` or
 * earlier: exact for every window of `per`, with no buckets and one number per dispatch
 * kept (at most `max`).
 */
export class RateWindow {
  private times: number[] = []
  /** Index of the oldest time once the ring is full. */
  private head = 0

  constructor(readonly max: number) {}

  /** The earliest moment (epoch ms) the next dispatch may go; in the past when it may go now. */
  freeAt(perMs: number): number {
    if (this.times.length < this.max) return -Infinity
    return (this.times[this.head] as number) + perMs
  }

  /** The latest dispatch, or -Infinity when none. */
  get newest(): number {
    const times = this.times
    if (times.length === 0) return -Infinity
    return times.length < this.max
      ? (times[times.length - 1] as number)
      : (times[(this.head + this.max - 1) % this.max] as number)
  }

  /** A dispatch went at `now`. */
  record(now: number): void {
    if (this.times.length < this.max) {
      this.times.push(now)
      return
    }
    this.times[this.head] = now
    this.head = (this.head + 1) % this.max
  }

  /** The same window for a limit of `max` dispatches: its latest times carried over. */
  resized(max: number): RateWindow {
    const next = new RateWindow(max)
    const n = this.times.length
    const start = n < this.max ? 0 : this.head
    for (let i = Math.max(0, n - max); i < n; i++) next.record(this.times[(start + i) % n] as number)
    return next
  }
}
