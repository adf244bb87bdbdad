import { NodeTimeoutError, NodeUnavailableError } from '../errors.js'
import { MessageType, type AdminRequest, type AdminResultMessage, type NodeJobView } from '../protocol/messages.js'
import { Timer } from '../scheduling/timer-heap.js'
import type { NodeSession } from './node-session.js'

/** What asking nodes needs of the distributor: its timers, and what a retry's answer means for it. */
export interface NodeRequestsContext {
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
  /**
   * `session`'s node runs failed job `job` again. Called as the answer is read, before
   * anything after it on the link: the new run's result may be in the same read.
   */
  retried(session: NodeSession, job: NodeJobView): void
}

interface Waiting {
  session: NodeSession
  request: AdminRequest
  /** Past its deadline (its caller was told): a retry still waits for its answer, see ask. */
  late: boolean
  timer: Timer
  resolve(result: AdminResultMessage): void
  reject(err: Error): void
}

/**
 * Requests of the admin API that only a node can answer (its scheduled jobs, one of its
 * jobs, a retry, quiet), each numbered and answered once: every wait ends, by the answer,
 * by the deadline, or when the node's link drops.
 */
export class NodeRequests {
  private seq = 0
  private readonly waiting = new Map<number, Waiting>()

  constructor(
    private readonly ctx: NodeRequestsContext,
    private readonly timeoutMs: number,
  ) {}

  ask(session: NodeSession, request: AdminRequest): Promise<AdminResultMessage> {
    return new Promise((resolve, reject) => {
      const req = ++this.seq
      if (session.state !== 'ready' || !session.connection.send({ type: MessageType.ADMIN, req, request })) {
        reject(new NodeUnavailableError(`node '${session.name}' is not connected`))
        return
      }
      const timer = new Timer(() => {
        const waiting = this.waiting.get(req)
        // A retry answered late still starts a run whose result comes here: its answer is
        // still awaited (until the link drops), so that the job is held again when it comes.
        if (waiting !== undefined && request.op === 'retry') waiting.late = true
        else this.waiting.delete(req)
        reject(new NodeTimeoutError(session.name, this.timeoutMs))
      })
      this.waiting.set(req, { session, request, late: false, timer, resolve, reject })
      this.ctx.after(timer, this.timeoutMs)
    })
  }

  /** An answer; one for no request of this link's (late, or made up) is dropped. */
  onResult(session: NodeSession, message: AdminResultMessage): void {
    const waiting = this.waiting.get(message.req)
    if (waiting === undefined || waiting.session !== session) return
    this.waiting.delete(message.req)
    this.ctx.cancelTimer(waiting.timer)
    if (waiting.request.op === 'retry' && message.job !== undefined) this.ctx.retried(session, message.job)
    if (!waiting.late) waiting.resolve(message)
  }

  /** `session`'s link dropped: what it was asked will not be answered. */
  drop(session: NodeSession): void {
    for (const [req, waiting] of this.waiting) {
      if (waiting.session !== session) continue
      this.waiting.delete(req)
      this.ctx.cancelTimer(waiting.timer)
      if (!waiting.late)
        waiting.reject(new NodeUnavailableError(`node '${session.name}' disconnected before it answered`))
    }
  }
}
