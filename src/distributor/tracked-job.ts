import type { LinkedList } from '../linked-list.js'
import type { JobArgsObject } from '../protocol/args.js'
import type { WireJob } from '../protocol/messages.js'
import { JOB_RUN_OPTIONS, setRunOption } from '../protocol/parse-message.js'
import { isScheduled } from '../scheduling/cron.js'
import { Handle, type Canceller } from './job-handle.js'
import type { NodeSession } from './node-session.js'
import { NO_JOB_OPTIONS, type JobOptions } from './job-options.js'

/**
 * What one job counts against a node's window, in units (the window holds window ×
 * INSTANT_LOAD). An instant job counts whole until it finishes. A delayed or periodic job
 * counts only until the node accepts it, and a tenth as much: it is in transit, not work,
 * and counting it whole let a burst of delayed jobs move one window per round trip.
 */
export const INSTANT_LOAD = 10
export const DELAYED_LOAD = 1

export type FeedbackCallback<A extends JobArgsObject = JobArgsObject> = (args: A) => void | Promise<void>

/**
 * Where a job is, as the distributor sees it:
 *   pending  → waiting in the queue for an eligible node with room
 *   sent     → in a dispatch frame, not yet acknowledged (a drop sends it back to pending)
 *   accepted → in the store of `session`'s node (a memory node's drop sends it back to pending)
 *   done / cancelled → final; the job has left the table
 */
export type TrackedJobState = 'pending' | 'sent' | 'accepted' | 'done' | 'cancelled'

/** Bits of `TrackedJob.flags`. */
const SPOOLED = 1
const VIA_HANDLER = 2
const KEYED = 4
const HOLDS_SLOT = 8
const LIMIT_NOTICED = 16

/**
 * `pendingSince` counts tenths of a second from this instant: a small integer (a V8 Smi,
 * unboxed in the job) for 6.8 years of uptime, where epoch milliseconds would box a number
 * per job.
 */
const PENDING_EPOCH = Date.now()

/** The `pendingSince` of a job that enters the pending queue at `now` (epoch ms). */
export function pendingStamp(now: number): number {
  return Math.floor((now - PENDING_EPOCH) / 100)
}

/** Seconds from `stamp` (a `pendingSince`) to `now` (epoch ms), never negative. */
export function pendingSeconds(stamp: number, now: number): number {
  return Math.max(0, (now - PENDING_EPOCH) / 1000 - stamp / 10)
}

/**
 * Everything the distributor keeps of one job, from enqueue until its final feedback. It is
 * also the caller's handle (what `enqueue` returns): one object per job instead of two,
 * for a distributor that holds a million of them.
 */
export class TrackedJob extends Handle {
  /** The run a (re-)dispatch starts at; feedback for runs below it was delivered. */
  run = 1
  state: TrackedJobState = 'pending'
  /** The node session the job was sent to (while sent or accepted). */
  session: NodeSession | undefined = undefined
  /** Name of the node that accepted it: a cancel must reach that node, even after a reconnect. */
  owner: string | undefined = undefined
  /** Load units (INSTANT_LOAD or DELAYED_LOAD) it counts against `session`'s window; 0 for none. */
  load = 0
  /**
   * When it last entered the pending queue (enqueued, or back from a node that lost or
   * refused it), as a `pendingStamp`: how long the job next in line has waited (metrics).
   */
  pendingSince = 0
  /** SPOOLED, VIA_HANDLER, KEYED, HOLDS_SLOT and LIMIT_NOTICED in one field: a million held jobs carry one slot, not five. */
  private flags = 0
  /** The node's list of held jobs this one is on, and its neighbours there. */
  list: LinkedList<TrackedJob> | undefined = undefined
  prev: TrackedJob | undefined = undefined
  next: TrackedJob | undefined = undefined

  constructor(
    id: string,
    canceller: Canceller,
    readonly name: string,
    /** Replaced while pending by an enqueue with its unique key in mode 'replace'. */
    public args: Buffer,
    /**
     * Due time of `run` (absolute epoch ms), the run to dispatch next: a periodic job's runs
     * are due at its first due time + (run - 1) × period.
     */
    public dueAt: number,
    /** Options sent to the node; one shared object for jobs that set none. */
    readonly opts: Readonly<JobOptions>,
    readonly routeKey: string,
    /** Enqueue order, so jobs put back go before newer ones. */
    readonly seq: number,
    /** Made to run the closures of every caller joined to it too (see UniqueJobs). */
    public onSuccess: FeedbackCallback | undefined,
    public onError: FeedbackCallback | undefined,
  ) {
    super(id, canceller)
  }

  /** Its record is in the spool, or on its way there (see Spool). */
  get spooled(): boolean {
    return this.hasFlag(SPOOLED)
  }

  set spooled(value: boolean) {
    this.setFlag(SPOOLED, value)
  }

  /**
   * No closure of the caller is held for it (it came back from a spool: this process
   * restarted, or adopted a gone member's work): its results run the named handlers.
   */
  get viaHandler(): boolean {
    return this.hasFlag(VIA_HANDLER)
  }

  set viaHandler(value: boolean) {
    this.setFlag(VIA_HANDLER, value)
  }

  /** It counts against its name's concurrency (limits.ts) until it finishes or goes back to the queue. */
  get holdsSlot(): boolean {
    return this.hasFlag(HOLDS_SLOT)
  }

  set holdsSlot(value: boolean) {
    this.setFlag(HOLDS_SLOT, value)
  }

  /** `job:limited` was emitted for it: once per job. */
  get limitNoticed(): boolean {
    return this.hasFlag(LIMIT_NOTICED)
  }

  set limitNoticed(value: boolean) {
    this.setFlag(LIMIT_NOTICED, value)
  }

  /** It holds a unique key (option `unique`): its end releases it (see UniqueJobs). */
  get keyed(): boolean {
    return this.hasFlag(KEYED)
  }

  set keyed(value: boolean) {
    this.setFlag(KEYED, value)
  }

  private hasFlag(bit: number): boolean {
    return (this.flags & bit) !== 0
  }

  private setFlag(bit: number, value: boolean): void {
    this.flags = value ? this.flags | bit : this.flags & ~bit
  }
}

export function toWireJob(job: TrackedJob): WireJob {
  const o = job.opts
  // Nothing to send beyond the fixed fields (the usual case): the tracked job has them all,
  // and the encoder reads no more, so it goes as it is instead of as a copy per dispatch.
  if (o === NO_JOB_OPTIONS) return job
  let wire: WireJob | undefined
  for (const key of JOB_RUN_OPTIONS) {
    const value = o[key]
    // `defer: false` is what a job without the option gets on the node: not sent.
    if (value === undefined || value === false) continue
    wire ??= { id: job.id, name: job.name, args: job.args, dueAt: job.dueAt, run: job.run }
    setRunOption(wire, key, value)
  }
  return wire ?? job
}

/** `job`, out of the queue, is `session`'s: counted against its window, and held for a drop. */
export function assign(job: TrackedJob, session: NodeSession, now: number): void {
  job.state = 'sent'
  job.session = session
  job.load = isScheduled(job.opts) || job.dueAt > now ? DELAYED_LOAD : INSTANT_LOAD
  session.load += job.load
  session.inFlight++
  session.held.add(job)
}

/**
 * `job` counts `units` against its session's window from now on (0: nothing). INVARIANT:
 * a session's `inFlight` is the number of its jobs whose load is not 0.
 */
export function setLoad(job: TrackedJob, units: number): void {
  const session = job.session
  if (session !== undefined) {
    session.load += units - job.load
    if (job.load === 0) {
      if (units !== 0) session.inFlight++
    } else if (units === 0) session.inFlight--
  }
  job.load = units
}

/** The node that holds the job as the distributor sees it: sent to, or accepted by; none while pending or final. */
export function holderOf(job: TrackedJob): string | undefined {
  return job.state === 'sent' ? job.session?.name : job.state === 'accepted' ? job.owner : undefined
}

/** Bytes a job adds to a dispatch frame, roughly: args plus the fixed fields. */
export function wireSize(job: TrackedJob): number {
  return job.args.length + job.name.length + 96
}
