import type { Logger } from '../logger.js'
import { MessageType } from '../protocol/messages.js'
import type { Scheduler } from '../scheduling/scheduler.js'
import { Timer } from '../scheduling/timer-heap.js'
import type { Message } from '../protocol/messages.js'

/** A closure or handler that returned a promise: its job, and whether it has settled. */
export interface PendingClosure {
  id: string
  name: string
  /** Settles (never rejects) once the closure's promise settled. */
  promise: Promise<void>
  settled: boolean
}

/** A feedback frame whose ack waits: for its own closures, or behind an earlier frame. */
export interface HeldAck {
  seq: number
  /** Its closures still running (none for a frame held only behind an earlier one). */
  pending: PendingClosure[] | undefined
  /** Closures of `pending` not settled yet; 0: this frame may be acknowledged. */
  waiting: number
  /** Fires at the frame's deadline; unused for a frame with nothing pending. */
  timer: Timer | undefined
}

/** What the acks need of a node's session: its held frames, its name (logs) and its link. */
export interface AckedSession {
  readonly name: string
  readonly state: string
  readonly heldAcks: HeldAck[]
  readonly connection: { send(message: Message): void }
}

/**
 * Feedback acks (docs/architecture.md, "Feedback is acknowledged after its closure ran"): a
 * frame is acknowledged once every closure or handler it ran returned, or settled when it
 * returned a promise. Acks are cumulative on a connection, so a frame still waiting holds
 * back the acks of the frames after it; each waiting frame has a deadline (`timeoutMs`),
 * past which its ack goes anyway with a warning that names the unsettled jobs, so a hung
 * closure cannot stop a node's outbox for ever.
 *
 * The common case, every closure synchronous and nothing held on the connection, sends the
 * ack at once and allocates nothing.
 *
 * INVARIANTS: `session.heldAcks` is in frame order; its head is the oldest frame not yet
 * acknowledged; a frame leaves it only when it and every frame before it may be acknowledged.
 */
export class FeedbackAcks {
  constructor(
    private readonly log: Logger,
    private readonly timeoutMs: number,
    /** The distributor's timers: one deadline per frame whose closures still run. */
    private readonly timers: Pick<Scheduler<Timer>, 'schedule' | 'cancel'>,
  ) {}

  /** Feedback frame `seq` of `session` was handled; `pending`: the closures it left running. */
  handled(session: AckedSession, seq: number, pending: PendingClosure[] | undefined): void {
    const held = session.heldAcks
    if (pending === undefined && held.length === 0) {
      session.connection.send({ type: MessageType.FEEDBACK_ACK, seq })
      return
    }
    const frame: HeldAck = { seq, pending, waiting: pending?.length ?? 0, timer: undefined }
    held.push(frame)
    if (pending === undefined) return
    for (const closure of pending) {
      const settle = (): void => this.settled(session, frame, closure)
      closure.promise.then(settle, settle)
    }
    frame.timer = new Timer(() => this.expired(session, frame))
    this.timers.schedule(frame.timer, Date.now() + this.timeoutMs)
  }

  /** One of `frame`'s closures settled. */
  private settled(session: AckedSession, frame: HeldAck, closure: PendingClosure): void {
    if (closure.settled) return
    closure.settled = true
    if (frame.waiting === 0) return
    frame.waiting--
    if (frame.waiting === 0) this.flush(session)
  }

  /** The session is gone: nothing more is acknowledged on it (the node sends again what it did not hear acknowledged). */
  drop(session: AckedSession): void {
    for (const frame of session.heldAcks) if (frame.timer !== undefined) this.timers.cancel(frame.timer)
    session.heldAcks.length = 0
  }

  private expired(session: AckedSession, frame: HeldAck): void {
    if (frame.waiting === 0) return
    for (const closure of frame.pending ?? []) {
      if (closure.settled) continue
      this.log.warn(
        { id: closure.id, job: closure.name, node: session.name, timeoutMs: this.timeoutMs },
        `feedback closure of job '${closure.name}' (${closure.id}) has not settled after ${this.timeoutMs} ms: acknowledging its feedback anyway`,
      )
    }
    frame.waiting = 0
    this.flush(session)
  }

  /** Acknowledges, in one ack, every frame at the head that may be acknowledged now. */
  private flush(session: AckedSession): void {
    const held = session.heldAcks
    let n = 0
    while (n < held.length && (held[n] as HeldAck).waiting === 0) {
      const timer = (held[n] as HeldAck).timer
      if (timer !== undefined) this.timers.cancel(timer)
      n++
    }
    if (n === 0) return
    const seq = (held[n - 1] as HeldAck).seq
    held.splice(0, n)
    if (session.state !== 'closed') session.connection.send({ type: MessageType.FEEDBACK_ACK, seq })
  }
}
