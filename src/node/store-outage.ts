import { StoreError } from '../errors.js'
import type { Logger } from '../logger.js'
import { Timer } from '../scheduling/timer-heap.js'
import type { Store } from '../storage/store.js'

/** What the outage guard needs of its node. */
export interface OutageContext {
  readonly log: Logger
  /** Asks the node's store whether it answers; undefined once the node is closed (probing stops). */
  ping(): Promise<void> | undefined
  /** Fires `timer` once, `ms` from now, on the node's scheduler. */
  after(timer: Timer, ms: number): void
  /**
   * The store went down (`error`) or is back (undefined): the node stops or resumes taking
   * jobs and says so.
   */
  changed(error: Error | undefined): void
  /** The dependents of the last write made for `owner` (see persist) ran. */
  settled?(owner: string): void
}

/** A store write and what depends on it. */
interface PendingWrite {
  write: () => Promise<unknown>
  /** What depends on the write: runs once it is stored. Not `then`, which would make this a thenable. */
  after: () => void
}

/** How often a node whose store failed checks whether it is back. */
export const STORE_PROBE_MS = 500

function noop(): void {}

/**
 * The node's store writes, and what happens while its store is down.
 *
 * States: UP → (a write fails) → DOWN: writes wait in `backlog`, the node takes no new jobs,
 * the store is pinged every STORE_PROBE_MS → (it answers) → REPLAYING: the backlog is
 * written in order, and writes made meanwhile join its end → UP once it is empty; a write
 * that fails during the replay keeps it and the rest, in order, and goes back to DOWN.
 *
 * INVARIANT: writes reach the store in the order they were made, and what depends on a
 * write (feedback going out, a job back on its timer) happens only after it. A write made
 * during the replay must not overtake it: a job's end written before its replayed
 * attempt-start would be overwritten by it (a job that failed for good, stored as in
 * progress again, runs again at the next start).
 */
export class StoreOutage {
  private down = false
  /** The backlog is being written: new writes wait behind it. */
  private replaying = false
  /** Store writes that failed, replayed in order once the store is back. */
  private readonly backlog: PendingWrite[] = []
  /** Asks a store that is down whether it is back. */
  private readonly probeTimer = new Timer(() => this.probe())
  /** Writes per owner whose dependents have not run yet (see persist). */
  private readonly writing = new Map<string, number>()

  constructor(private readonly ctx: OutageContext) {}

  /**
   * Performs a store write, then what depends on it (feedback goes out only once stored).
   * While the store is down the pair waits in the backlog and is replayed, in order, when
   * it is back: a finished job's feedback is delayed, never dropped.
   *
   * A store that does not survive the process (memory storage) is not written at all: it
   * could only ever give back what the node's own tables and outbox hold already, and the
   * distributor keeps every job it sent to such a node until its final feedback (see
   * docs/architecture.md#at-least-once).
   *
   * `owner`: the distributor the write's dependents concern (a job's end, whose result goes
   * to it). Until they ran, `owners()` lists it: the job has left the node's table and its
   * result is not in the outbox yet, and the node must not let go of that distributor's link
   * in between.
   */
  persist(
    store: Store,
    write: () => Promise<void>,
    then: () => void = noop,
    owner?: string,
  ): Promise<void> | undefined {
    if (!store.durable) {
      then()
      return undefined
    }
    const after = owner === undefined ? then : this.owned(owner, then)
    if (this.down || this.replaying) {
      this.backlog.push({ write, after })
      return undefined
    }
    return write().then(after, (err: unknown) => {
      this.backlog.push({ write, after })
      this.failed(err instanceof Error ? err : new StoreError(String(err)))
    })
  }

  /** Distributors whose writes' dependents have not run yet. */
  owners(): IterableIterator<string> {
    return this.writing.keys()
  }

  /** Counts `owner`'s write until its dependents ran, then tells the node if it was the last. */
  private owned(owner: string, then: () => void): () => void {
    this.writing.set(owner, (this.writing.get(owner) ?? 0) + 1)
    return () => {
      try {
        then()
      } finally {
        const left = (this.writing.get(owner) ?? 1) - 1
        if (left > 0) this.writing.set(owner, left)
        else {
          this.writing.delete(owner)
          this.ctx.settled?.(owner)
        }
      }
    }
  }

  /** A write replayed with the others once the store is back, after those queued before it. */
  replayLater(write: () => Promise<unknown>): void {
    this.backlog.push({ write, after: noop })
  }

  /**
   * The store failed a write: take no new jobs (the distributors route elsewhere) and
   * probe until it answers, then replay the backlog and accept again.
   */
  failed(error: Error): void {
    if (this.down) return
    this.down = true
    this.ctx.log.error({ err: error }, 'store unavailable; not accepting jobs until it is back')
    this.ctx.changed(error)
    this.ctx.after(this.probeTimer, STORE_PROBE_MS)
  }

  private probe(): void {
    this.ctx.ping()?.then(
      () => void this.recover(),
      () => this.ctx.after(this.probeTimer, STORE_PROBE_MS),
    )
  }

  private async recover(): Promise<void> {
    this.down = false
    this.replaying = true
    let replayed = 0
    // Writes made during the replay join the backlog's end; it is UP once the backlog is empty.
    for (let entry = this.backlog[0]; entry !== undefined; entry = this.backlog[0]) {
      try {
        await entry.write()
      } catch (err) {
        // Down again: this write and the rest stay, in order, for the next recovery.
        this.replaying = false
        this.failed(err instanceof Error ? err : new StoreError(String(err)))
        return
      }
      this.backlog.shift()
      replayed++
      entry.after()
      // A write made before the outage failed meanwhile: down again, the rest waits.
      if (this.down) break
    }
    this.replaying = false
    if (this.down) return
    this.ctx.log.info({ replayed }, 'store reachable again; accepting jobs')
    this.ctx.changed(undefined)
  }
}
