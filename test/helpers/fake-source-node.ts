import type { Timer } from '../../src/scheduling/timer-heap.js'
import { LogCapture } from './log-capture.js'
import { within } from './within.js'

/**
 * The node as a discovery source (DNS or the group registry) sees it, with `A` the address
 * type the source reports. Timers are not run by a clock: the test fires the armed one by
 * hand. A source ends every resolution or read by arming its next timer (before it reports
 * a change), which is how a test knows one is done.
 */
export class FakeSourceNode<A> {
  readonly logs = new LogCapture()
  readonly log = this.logs.logger
  readonly changes: A[][] = []
  /** Every delay passed to `after`, in order. */
  readonly delays: number[] = []
  armed: Timer | undefined
  private readonly waiters: { check: () => boolean; resolve: () => void }[] = []

  after(timer: Timer, ms: number): void {
    this.armed = timer
    this.delays.push(ms)
    this.poke()
  }
  cancelTimer(timer: Timer): void {
    if (this.armed === timer) this.armed = undefined
  }
  onChange(addresses: readonly A[]): void {
    this.changes.push([...addresses])
    this.poke()
  }

  /** Resolves once `check` holds (now or after a change or an arming). */
  until(check: () => boolean, what: string): Promise<void> {
    if (check()) return Promise.resolve()
    return within(new Promise<void>((resolve) => this.waiters.push({ check, resolve })), what)
  }

  /** Runs `kick` (a start, or a fire of the armed timer) and resolves with the next timer's delay. */
  async round(kick: () => void, what = 'the next round'): Promise<number> {
    const armings = this.delays.length
    kick()
    await this.until(() => this.delays.length > armings, what)
    return this.delays[armings] as number
  }

  /** Fires the armed timer, as the node's scheduler would when it falls due, and resolves once that round is done. */
  fire(): Promise<number> {
    const timer = this.armed
    if (timer === undefined) throw new Error('no timer is armed')
    this.armed = undefined
    return this.round(() => timer.fire(), 'the round the timer started')
  }

  private poke(): void {
    for (const waiter of [...this.waiters]) {
      if (!waiter.check()) continue
      this.waiters.splice(this.waiters.indexOf(waiter), 1)
      waiter.resolve()
    }
  }
}
