import { AuthError, HandshakeError } from '../errors.js'
import { LinkedList } from '../linked-list.js'
import type { Connection } from '../protocol/connection.js'
import { distributorProof, newNonce, nodeProof, proofMatches } from '../protocol/handshake.js'
import {
  MessageType,
  PROTOCOL_VERSION,
  type HelloMessage,
  type NotAcceptingReason,
  type WireJob,
} from '../protocol/messages.js'
import { Timer } from '../scheduling/timer-heap.js'
import type { HeldAck } from './feedback-acks.js'
import { INSTANT_LOAD, type TrackedJob } from './tracked-job.js'

interface SentFrame {
  jobs: (TrackedJob | undefined)[]
  sentAt: number
}

/** Acks that may still be in flight when a link drops: generous, since a ring write is cheap. */
const ACKED_WINDOW = 65_536

/** The last `size` ids pushed, in a fixed array: no hashing on the hot path. */
class IdRing {
  private readonly ids: (string | undefined)[]
  private next = 0

  constructor(private readonly size: number) {
    this.ids = new Array<string | undefined>(size)
  }

  push(id: string): void {
    this.ids[this.next] = id
    this.next = (this.next + 1) % this.size
  }

  /** A linear scan: only for the rare feedback that matches no job. */
  has(id: string): boolean {
    return this.ids.includes(id)
  }

  drain(): string[] {
    const out = this.ids.filter((id): id is string => id !== undefined)
    this.ids.fill(undefined)
    return out
  }
}

/** Who the distributor is, as its welcome tells a node. */
export interface WelcomeIdentity {
  group: string
  name: string
  /** Gone members of the group this one answers for. */
  answersFor: readonly string[]
}

/**
 * One node as seen by the distributor, over one connection.
 *
 * States: HANDSHAKE (challenge sent, waiting for hello) → READY (welcome sent; jobs may be
 * dispatched) → CLOSED. Only READY sessions are in the pool's routing.
 */
export class NodeSession {
  state: 'handshake' | 'ready' | 'closed' = 'handshake'
  name = ''
  jobs: ReadonlySet<string> = new Set()
  concurrency = 0
  window = 0
  durable = false
  /** The smaller of the two ends' frame limits: what a dispatch frame may not exceed. */
  maxFrameSize = Number.MAX_SAFE_INTEGER
  /** The node takes new jobs (false while it drains or its store is down). */
  accepting = true
  /** Why it does not, as it said (an older node says nothing). */
  notAccepting: NotAcceptingReason | undefined = undefined
  /** When its handshake completed (epoch ms). */
  connectedAt = 0
  /**
   * Jobs it was sent were taken back, unanswered past the acceptance deadline: it gets no
   * more until it answers a dispatch frame again.
   */
  unresponsive = false
  /** Load units against `window`: jobs sent, plus accepted instant jobs not yet finished. */
  load = 0
  /** Jobs that count against `window` (a load above 0): what metrics call in flight to this node. */
  inFlight = 0
  /**
   * Sent and not yet acknowledged, or accepted by a memory-storage node and not finished:
   * what a drop puts back in the queue.
   */
  readonly held = new LinkedList<TrackedJob>()
  /** Jobs picked for this node in the current dispatch pass, sent at its end. */
  outgoing: TrackedJob[] = []
  /** Jobs finished by this node's feedback lately, whose acks may be lost if the link drops. */
  readonly finished = new IdRing(ACKED_WINDOW)
  /** Feedback frames handled but not acknowledged yet, oldest first (FeedbackAcks); empty in the common case. */
  readonly heldAcks: HeldAck[] = []
  readonly nonce = newNonce()
  connection!: Connection
  private dispatchSeq = 0
  /**
   * Dispatch frames the node has not answered with `accepted` yet, by number, oldest first:
   * their jobs (a rejected one replaced by undefined) and when they were sent. The answer
   * names the frame, not every job again.
   */
  private readonly unanswered = new Map<number, SentFrame>()
  /** Frames whose jobs were taken back past the acceptance deadline, kept for a late answer. */
  private readonly expired = new Map<number, SentFrame>()
  /** Fires at the oldest unanswered frame's deadline (armed by Acceptance). */
  readonly acceptTimer: Timer

  constructor(onAcceptDeadline: (session: NodeSession) => void) {
    this.acceptTimer = new Timer(() => onAcceptDeadline(this))
  }

  get hasRoom(): boolean {
    return (
      this.state === 'ready' &&
      this.accepting &&
      !this.unresponsive &&
      this.load < this.window * INSTANT_LOAD &&
      !this.connection.backlogged
    )
  }

  /** Sends one dispatch frame, numbered, and remembers its jobs until the node answers it. */
  dispatch(jobs: TrackedJob[], wire: WireJob[], now: number): void {
    const seq = ++this.dispatchSeq
    this.unanswered.set(seq, { jobs, sentAt: now })
    this.connection.send({ type: MessageType.DISPATCH, seq, jobs: wire })
  }

  /**
   * The jobs of dispatch frame `seq`, now answered, and whether they were taken back
   * meanwhile (`late`); undefined for a frame that awaits no answer.
   */
  answered(seq: number): { jobs: readonly (TrackedJob | undefined)[]; late: boolean } | undefined {
    const frame = this.unanswered.get(seq)
    if (frame !== undefined) {
      this.unanswered.delete(seq)
      return { jobs: frame.jobs, late: false }
    }
    const taken = this.expired.get(seq)
    if (taken === undefined) return undefined
    this.expired.delete(seq)
    return { jobs: taken.jobs, late: true }
  }

  /** The node did not store `ids`: they are no longer part of frame `seq`'s answer (they may come back in a later one). */
  forget(seq: number, ids: readonly string[]): void {
    const jobs = (this.unanswered.get(seq) ?? this.expired.get(seq))?.jobs
    if (jobs === undefined || ids.length === 0) return
    // One pass over the frame: a whole frame may be rejected (a store that went down).
    const gone = new Set(ids)
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i]
      if (job !== undefined && gone.has(job.id)) jobs[i] = undefined
    }
  }

  /** When the oldest unanswered frame was sent; undefined when every frame was answered. */
  oldestUnansweredAt(): number | undefined {
    for (const frame of this.unanswered.values()) return frame.sentAt
    return undefined
  }

  /**
   * Moves the frames sent at or before `sentBy` out of the unanswered ones, kept for a late
   * answer, and returns their jobs.
   */
  expire(sentBy: number): (TrackedJob | undefined)[] {
    const jobs: (TrackedJob | undefined)[] = []
    for (const [seq, frame] of this.unanswered) {
      if (frame.sentAt > sentBy) break
      this.unanswered.delete(seq)
      this.expired.set(seq, frame)
      for (const job of frame.jobs) jobs.push(job)
    }
    return jobs
  }

  sendChallenge(auth: boolean): void {
    this.connection.send({ type: MessageType.CHALLENGE, protocolVersion: PROTOCOL_VERSION, nonce: this.nonce, auth })
  }

  /**
   * Checks a hello and, when it passes, answers welcome. Throws a HandshakeError or
   * AuthError to be sent back as the error frame.
   */
  acceptHello(
    hello: HelloMessage,
    secret: string | undefined,
    identity: WelcomeIdentity,
    heartbeatMs: number,
    maxFrameSize: number,
  ): void {
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      throw new HandshakeError(
        `protocol version ${hello.protocolVersion} is not supported (this distributor speaks ${PROTOCOL_VERSION})`,
      )
    }
    if (hello.node.length === 0 || hello.node.length > 200) throw new HandshakeError(`invalid node name`)
    if (hello.concurrency < 1 || hello.window < 1) {
      throw new HandshakeError(
        `node '${hello.node}' advertised concurrency ${hello.concurrency} and window ${hello.window}; both must be >= 1`,
      )
    }
    let proof: Buffer | undefined
    if (secret !== undefined) {
      if (!proofMatches(nodeProof(secret, this.nonce, hello.nonce, hello.node), hello.proof)) {
        throw new AuthError(
          `node '${hello.node}' failed authentication: ${hello.proof === undefined ? 'no proof' : 'wrong proof'} of the shared secret`,
        )
      }
      proof = distributorProof(secret, this.nonce, hello.nonce, hello.node)
    }
    this.name = hello.node
    this.jobs = new Set(hello.jobs)
    this.concurrency = hello.concurrency
    this.window = hello.window
    if (hello.maxFrameSize !== undefined) this.maxFrameSize = Math.min(this.maxFrameSize, hello.maxFrameSize)
    this.durable = hello.durable
    this.state = 'ready'
    this.connectedAt = Date.now()
    this.connection.authenticated()
    this.connection.send({
      type: MessageType.WELCOME,
      group: identity.group,
      name: identity.name,
      ...(identity.answersFor.length === 0 ? {} : { answersFor: [...identity.answersFor] }),
      heartbeatMs,
      maxFrameSize,
      ...(proof === undefined ? {} : { proof }),
    })
    this.connection.startHeartbeat(heartbeatMs)
  }
}
