import type { Logger } from '../logger.js'
import { MessageType, type CancelResultMessage } from '../protocol/messages.js'
import type { JobTable } from './job-table.js'
import type { NodePool } from './node-pool.js'
import type { NodeSession } from './node-session.js'
import { holderOf, type TrackedJob } from './tracked-job.js'

/** What cancels need of the rest of the distributor. */
export interface CancelsContext {
  /** Ends `job` as cancelled. */
  finishCancelled(job: TrackedJob): void
  /** A node answered a cancel of a job this distributor does not hold (asked for another member of its group). */
  foreignResult(id: string, outcome: CancelResultMessage['outcome']): void
}

/**
 * Cancels of jobs a node holds, and second copies (docs/architecture.md, "Cancels and
 * second copies"). A cancel goes to the node holding the job: the session it was sent to,
 * or its `owner` once accepted, when that node is back if it is away. Only the holder's
 * answer counts. A node that reports on a job it does not hold is a peer that took the
 * holder's jobs over, or runs a second copy, which is stopped.
 */
export class Cancels {
  /** Jobs a cancel was sent for, not answered yet, with the `cancel()` calls waiting on it. */
  private readonly requests = new Map<TrackedJob, ((cancelled: boolean) => void)[]>()
  /** Nodes told to stop a second copy of a job (see reportedByOther); rare, and gone with the job. */
  private readonly stoppedCopies = new WeakMap<TrackedJob, Set<string>>()

  constructor(
    private readonly ctx: CancelsContext,
    private readonly jobs: JobTable,
    private readonly pool: NodePool,
    private readonly log: Logger,
  ) {}

  /** Asks the node holding `job` (sent or accepted) to cancel it; resolves with its answer. */
  request(job: TrackedJob): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const waiters = this.requests.get(job)
      if (waiters !== undefined) waiters.push(resolve)
      else this.requests.set(job, [resolve])
      this.send(job)
    })
  }

  /** A `cancel()` waits on `job`. */
  waits(job: TrackedJob): boolean {
    return this.requests.has(job)
  }

  /** Settles the `cancel()` calls waiting on `job`: true when it ended cancelled. */
  answer(job: TrackedJob, cancelled: boolean): void {
    const waiters = this.requests.get(job)
    if (waiters === undefined) return
    this.requests.delete(job)
    for (const waiter of waiters) waiter(cancelled)
  }

  /** `session`'s node is back: the cancels waiting for it go out. */
  resend(session: NodeSession): void {
    for (const job of this.requests.keys()) if (job.owner === session.name) this.send(job)
  }

  private send(job: TrackedJob): void {
    const target = job.state === 'sent' ? job.session : job.owner === undefined ? undefined : this.pool.get(job.owner)
    // Not reachable now: the request stays in `requests` and goes out when the node is back.
    target?.connection.send({ type: MessageType.CANCEL, id: job.id })
  }

  onResult(session: NodeSession, message: CancelResultMessage): void {
    const job = this.jobs.get(message.id)
    if (job === undefined) {
      this.ctx.foreignResult(message.id, message.outcome)
      return
    }
    if (!this.requests.has(job)) return
    // Only the node holding it speaks for it: not one it was sent to before, nor a second copy.
    const holder = holderOf(job)
    if (holder !== undefined && holder !== session.name) return
    if (message.outcome === 'cancelled') {
      this.ctx.finishCancelled(job)
      return
    }
    if (message.outcome === 'unknown') {
      // The node neither holds it nor has a result of it waiting (a node that restarted
      // without it, a cancel whose answer was lost with a link, a job back in our queue
      // meanwhile): nothing will run it or report on it any more. It ends here.
      this.ctx.finishCancelled(job)
    }
    // 'finished': its final feedback is on the way and settles the waiters.
  }

  /**
   * A node that does not hold `job` as we see it reports on it. With its holder away and the
   * job stored there, it is a peer that adopted the holder's jobs (takeover): it holds the
   * job now, and a cancel goes to it. Otherwise it is a second copy: a durable node's
   * `accepted` was lost with its link, and the job went to another node too. Both would run
   * on (a periodic one forever) and a cancel would reach one, so the copy that would go on
   * stops: the reporting one, or, if the job ends with this result, its holder's. A stale
   * result (a run already reported) ends nothing, and a copy told to stop never takes over.
   */
  reportedByOther(
    session: NodeSession,
    job: TrackedJob,
    holder: string | undefined,
    final: boolean,
    stale: boolean,
  ): void {
    const holding = holder === undefined ? undefined : this.pool.get(holder)
    const stopping = this.stoppedCopies.get(job)?.has(session.name) === true
    if (holder !== undefined && holding === undefined && job.state === 'accepted' && !stale && !stopping) {
      job.owner = session.name
      if (this.requests.has(job)) this.send(job)
    } else if (!final) this.stopCopy(session, job.id, job)
    else if (!stale && holding !== undefined) this.stopCopy(holding, job.id, job)
  }

  /**
   * Cancels `id` on that node for a copy nobody asked it to run. Its answer settles nothing:
   * answers count only for a job with a `cancel()` waiting, from the node holding it.
   */
  stopCopy(session: NodeSession, id: string, job?: TrackedJob): void {
    this.log.warn({ id, node: session.name }, 'a node runs a second copy of a job; cancelling that copy')
    session.connection.send({ type: MessageType.CANCEL, id })
    if (job === undefined) return
    let nodes = this.stoppedCopies.get(job)
    if (nodes === undefined) this.stoppedCopies.set(job, (nodes = new Set()))
    nodes.add(session.name)
  }
}
