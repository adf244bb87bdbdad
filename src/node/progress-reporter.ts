import { MessageType, type ProgressValue, type WireProgress } from '../protocol/messages.js'
import { MAX_PROGRESS_BYTES } from '../protocol/progress-value.js'
import { Timer } from '../scheduling/timer-heap.js'
import type { Store } from '../storage/store.js'
import type { DistributorLink } from './distributor-link.js'
import type { LiveJob } from './live-jobs.js'

/** A job's progress goes out at most once per window: about ten values a second. */
export const PROGRESS_WINDOW_MS = 100

/** What the reporter needs of a link. */
export type ProgressLink = Pick<DistributorLink, 'ready' | 'peerMaxFrameSize' | 'send'>

/** What the reporter needs of its node: its one scheduler, and the links. */
export interface ProgressContext {
  /** Arms `timer` `ms` from now by the node's clock. */
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
  /** The link that receives what is filed under a distributor identity. */
  linkFor(identity: string): ProgressLink | undefined
  /**
   * Performs a store write in order with the node's others (StoreOutage.persist): a durable
   * store only; while the store is down it waits, and is replayed when it is back.
   */
  persist(store: Store, write: () => Promise<void>): void
  readonly maxFrameSize: number
}

/** The window a job's last send opened: values reported within it wait for its end. */
interface Window {
  readonly timer: Timer
  /** A value came after the send that opened the window: it goes out when the window ends. */
  pending: boolean
}

/**
 * Sends the progress jobs report (`ctx.progress`), coalesced per job: a value goes out at
 * once when none went out in the last PROGRESS_WINDOW_MS, else the latest value of the
 * window goes out when it ends. What goes out in one event-loop turn shares one frame per
 * distributor link.
 *
 * The job's last value is kept on it (`LiveJob.progress`, for the admin API) and, on a
 * durable store, in its record: one update per value sent (not per value reported), so a
 * record holds what the distributor last heard, or, at most one window later, the latest.
 * A window is kept only while it is open, so a job that reports nothing costs nothing here.
 *
 * INVARIANT: when an attempt ends (`settle`), its last value is on the link before anything
 * the attempt's feedback sends: progress never arrives after the result it led to.
 */
export class ProgressReporter {
  private readonly windows = new Map<LiveJob, Window>()
  private readonly batches = new Map<ProgressLink, WireProgress[]>()
  /**
   * Jobs whose record update waits to be written (the store is down): the update writes the
   * job's last value when it goes, so an outage holds one (two, see write) per job, however
   * long it lasts.
   */
  private readonly unstored = new Set<LiveJob>()
  /** Jobs sent a value this turn whose record is to keep it: written when the turn's values go out. */
  private readonly toKeep = new Set<LiveJob>()
  private flushQueued = false

  constructor(private readonly ctx: ProgressContext) {}

  /** A running attempt of `job` reports `value` (checked already). */
  report(job: LiveJob, value: ProgressValue): void {
    // A step that reports after its chain ended (a promise it left behind) is too late: the
    // result went out already.
    if (job.phase !== 'running') return
    job.progress = value
    const window = this.windows.get(job)
    if (window !== undefined) {
      window.pending = true
      return
    }
    this.send(job)
    const opened: Window = { timer: new Timer(() => this.windowEnded(job, opened)), pending: false }
    this.windows.set(job, opened)
    this.ctx.after(opened.timer, PROGRESS_WINDOW_MS)
  }

  /**
   * `job`'s attempt ended: a value waiting for its window goes out now, and what waits for
   * the end of the turn with it (values, other jobs' record writes), ahead of the feedback
   * the caller is about to send.
   *
   * Returns true when the job's own record write is left to the caller (its last value is
   * not in its record yet): the caller knows whether the attempt's end keeps the record, and
   * calls `keep` after its own write if it does. A job whose end removes its record (the
   * usual instant job) so writes nothing for its progress.
   */
  settle(job: LiveJob): boolean {
    // The usual job never reported: one size check on the path of every attempt.
    if (this.windows.size === 0) return false
    const window = this.windows.get(job)
    if (window === undefined) return false
    this.windows.delete(job)
    this.ctx.cancelTimer(window.timer)
    if (window.pending) this.send(job)
    const unkept = this.toKeep.delete(job)
    this.flush()
    return unkept
  }

  private windowEnded(job: LiveJob, window: Window): void {
    if (!window.pending) {
      this.windows.delete(job)
      return
    }
    window.pending = false
    this.send(job)
    this.ctx.after(window.timer, PROGRESS_WINDOW_MS)
  }

  /**
   * Queues the job's last value for its link, and keeps it in the job's record; a link that
   * is down misses it (best effort), the record does not.
   */
  private send(job: LiveJob): void {
    if (job.progress === undefined) return
    // A memory node's record would only repeat `LiveJob.progress`: a durable store only.
    if (job.store.durable) this.toKeep.add(job)
    const link = this.ctx.linkFor(job.distributor)
    if (link?.ready === true) {
      let batch = this.batches.get(link)
      if (batch === undefined) this.batches.set(link, (batch = []))
      batch.push({ id: job.id, name: job.name, run: job.run, value: job.progress })
    } else if (this.toKeep.size === 0) return
    if (this.flushQueued) return
    this.flushQueued = true
    setImmediate(this.flushLater)
  }

  /**
   * Writes the job's last value into its record, in order with the node's other writes (on
   * Redis, in the turn's script call). At most once per job per turn: the values a job sends
   * within one turn make one write, of the latest.
   */
  keep(job: LiveJob): void {
    if (this.unstored.has(job)) return
    this.unstored.add(job)
    this.ctx.persist(job.store, () => this.write(job))
  }

  private write(job: LiveJob): Promise<void> {
    // Out of the set as it is written: a value reported from now on needs a write of its own.
    // A write that fails stays in the backlog (StoreOutage), and a later value adds one
    // more, which waits there with it: two per job at most, however long the outage.
    this.unstored.delete(job)
    return job.store.updateJob(job.id, { progress: job.progress })
  }

  // One function for the reporter's lifetime: a flush is queued per turn that reports.
  private readonly flushLater = (): void => this.flush()

  private flush(): void {
    this.flushQueued = false
    if (this.toKeep.size > 0) {
      for (const job of this.toKeep) this.keep(job)
      this.toKeep.clear()
    }
    for (const [link, items] of this.batches) {
      // Each value is at most MAX_PROGRESS_BYTES: as many as surely fit in half the smaller limit.
      const perFrame = Math.max(
        1,
        Math.floor(Math.min(this.ctx.maxFrameSize, link.peerMaxFrameSize) / 2 / (MAX_PROGRESS_BYTES + 256)),
      )
      for (let i = 0; i < items.length; i += perFrame) {
        link.send({ type: MessageType.PROGRESS, items: items.slice(i, i + perFrame) })
      }
    }
    this.batches.clear()
  }
}
