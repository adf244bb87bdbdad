import type { Socket } from 'node:net'
import { ConnectionClosedError, HandshakeError, HeartbeatTimeoutError, JobsError, ProtocolError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { ByteBudget } from './byte-budget.js'
import { encodeMessageFrame } from './encode.js'
import { FrameDecoder, type FrameSink } from './frame.js'
import { Heartbeat, type HeartbeatContext } from './heartbeat.js'
import { MessageType, type Message } from './messages.js'
import { parseMessage } from './parse-message.js'
import { unpack } from './msgpack.js'

export interface ConnectionOptions {
  maxFrameSize: number
  /** A peer that keeps its receive window shut this long is dropped. */
  stallTimeoutMs: number
  log: Logger
  /**
   * Until `authenticated()`: the largest frame accepted from the peer, and the budget that
   * the bytes buffered for this connection are charged to (shared by every connection still
   * in its handshake). Absent: `maxFrameSize` from the start.
   */
  handshake?: { maxFrameSize: number; budget?: ByteBudget }
}

export interface ConnectionHandler {
  onMessage(message: Message): void
  /** Writes that waited for the peer have gone out: there is room for more. */
  onDrain?(): void
  /** Called exactly once; `reason` is absent for a clean close we asked for. */
  onClose(reason: JobsError | undefined): void
}

/** Queued bytes past which we write at once instead of waiting for the end of the turn. */
const FLUSH_THRESHOLD = 64 * 1024

/**
 * Owns one socket: wires it to a FrameDecoder, validates every frame into a Message,
 * coalesces writes, and runs the heartbeat.
 *
 * States: OPEN → CLOSING (error frame sent, socket ending) → CLOSED. Nothing is delivered
 * to the handler after CLOSING; `onClose` fires once, on the socket's 'close'.
 *
 * Writes: frames queue in `outbox` and go out as one write at the end of the event-loop turn
 * (setImmediate, not a microtask: what a turn's I/O callbacks produce shares the write, e.g.
 * a node's `accepted` and the feedback of the job it just ran, or the distributor's acks and
 * its next dispatch; fewer writes and fewer wake-ups of the peer). When
 * the socket reports back-pressure we stop writing until 'drain'; the queue keeps growing
 * only as far as callers allow (the distributor stops dispatching to a backlogged peer),
 * and a peer that does not drain within `stallTimeoutMs` is dropped.
 */
export class Connection implements FrameSink, HeartbeatContext {
  private readonly decoder: FrameDecoder
  private outbox: Buffer[] = []
  private outboxBytes = 0
  private flushQueued = false
  private waitingForDrain = false
  private stalledSince = 0
  private receivedAt = Date.now()
  private sentAt = Date.now()
  private heartbeat: Heartbeat | undefined
  private closeReason: JobsError | undefined
  private state: 'open' | 'closing' | 'closed' = 'open'
  /** Set until the peer proved itself: what its buffered bytes are charged to, and how many. */
  private budget: ByteBudget | undefined
  private charged = 0
  readonly remote: string

  constructor(
    readonly socket: Socket,
    private readonly options: ConnectionOptions,
    private readonly handler: ConnectionHandler,
  ) {
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`
    this.decoder = new FrameDecoder(this, options.handshake?.maxFrameSize ?? options.maxFrameSize)
    this.budget = options.handshake?.budget
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('drain', () => {
      this.waitingForDrain = false
      this.stalledSince = 0
      this.flush()
      if (!this.waitingForDrain) this.handler.onDrain?.()
    })
    socket.on('error', (err) => {
      if (this.state === 'open')
        this.closeReason ??= new ConnectionClosedError(`connection to ${this.remote} failed: ${err.message}`)
    })
    socket.on('end', () => {
      // The peer will send no more; without allowHalfOpen Node ends our side too.
      if (this.state === 'open') this.closeReason ??= new ConnectionClosedError(`${this.remote} closed the connection`)
    })
    socket.on('close', () => this.onSocketClose())
  }

  get isOpen(): boolean {
    return this.state === 'open'
  }

  /** True while writes wait for the peer to read: callers should not add more work. */
  get backlogged(): boolean {
    return this.waitingForDrain
  }

  /** Queues a message; false when the connection is no longer open. */
  send(message: Message): boolean {
    if (this.state !== 'open') return false
    const frame = encodeMessageFrame(message, this.options.maxFrameSize)
    this.outbox.push(frame)
    this.outboxBytes += frame.length
    if (this.outboxBytes >= FLUSH_THRESHOLD) this.flush()
    else if (!this.flushQueued) {
      this.flushQueued = true
      setImmediate(this.flushLater)
    }
    return true
  }

  /** The peer proved itself: frames up to `maxFrameSize` from now on, charged to no budget. */
  authenticated(): void {
    this.decoder.maxFrameSize = this.options.maxFrameSize
    this.releaseBudget()
  }

  startHeartbeat(intervalMs: number): void {
    this.heartbeat?.stop()
    this.heartbeat = new Heartbeat(this, intervalMs)
    this.heartbeat.start()
  }

  /**
   * Closes the connection. With a reason, the peer first gets an error frame naming it
   * (best effort), and `onClose` reports the reason.
   */
  close(reason?: JobsError): void {
    if (this.state !== 'open') return
    this.closeReason = reason
    if (reason !== undefined) {
      this.options.log.warn({ peer: this.remote, code: reason.code, err: reason.message }, 'closing connection')
      try {
        this.send({ type: MessageType.ERROR, code: reason.code, message: reason.message })
      } catch {
        // the error frame itself is best effort
      }
    }
    this.flush()
    this.state = 'closing'
    this.heartbeat?.stop()
    this.socket.end()
    // A peer that never reads would keep a half-closed socket forever.
    const timer = setTimeout(() => this.socket.destroy(), 2000).unref()
    this.socket.once('close', () => clearTimeout(timer))
  }

  // --- FrameSink ---------------------------------------------------------------------

  onFrame(body: Uint8Array): void {
    if (this.state !== 'open') return
    let message: Message
    try {
      message = parseMessage(unpack(body))
    } catch (err) {
      const reason = err instanceof JobsError ? err : new ProtocolError(`undecodable frame: ${(err as Error).message}`)
      this.close(reason)
      return
    }
    try {
      this.handler.onMessage(message)
    } catch (err) {
      if (err instanceof JobsError) {
        this.close(err)
        return
      }
      // A handler bug must not leave the link half-processed: drop it and let the
      // guarantees (re-dispatch, feedback re-send) recover.
      this.options.log.error({ err, peer: this.remote }, 'message handler failed')
      this.close(new ProtocolError(`internal error handling '${message.type}'`))
    }
  }

  // --- HeartbeatContext ----------------------------------------------------------------

  now(): number {
    return Date.now()
  }

  lastReceivedAt(): number {
    return this.receivedAt
  }

  lastSentAt(): number {
    return this.sentAt
  }

  sendPing(): void {
    this.send({ type: MessageType.PING })
  }

  stalledMs(): number {
    return this.stalledSince === 0 ? 0 : Date.now() - this.stalledSince
  }

  stallTimeoutMs(): number {
    return this.options.stallTimeoutMs
  }

  onSilent(silentMs: number): void {
    this.close(new HeartbeatTimeoutError(`peer ${this.remote} silent for ${silentMs} ms`))
    // A silent peer will not read our FIN either.
    this.socket.destroy()
  }

  onStalled(stalledMs: number): void {
    this.close(new HeartbeatTimeoutError(`peer ${this.remote} stopped reading for ${stalledMs} ms`))
    this.socket.destroy()
  }

  // --- internals -------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    this.receivedAt = Date.now()
    if (this.budget !== undefined) {
      // Charged for all it buffers while the chunk is read, then for what stays buffered.
      const holding = this.decoder.pending + chunk.length
      if (!this.budget.charge(holding - this.charged)) {
        const limit = this.budget.limit
        this.releaseBudget()
        this.close(
          new HandshakeError(
            `connections still in their handshake hold ${limit} bytes already (maxHandshakeBytes); try again later`,
          ),
        )
        this.socket.destroy()
        return
      }
      this.charged = holding
    }
    try {
      this.decoder.push(chunk)
    } catch (err) {
      this.close(err instanceof JobsError ? err : new ProtocolError(String(err)))
      this.socket.destroy()
    }
    // The peer may have proven itself in this chunk (authenticated() released the budget).
    if (this.budget !== undefined) {
      this.budget.charge(this.decoder.pending - this.charged)
      this.charged = this.decoder.pending
    }
  }

  private releaseBudget(): void {
    this.budget?.charge(-this.charged)
    this.budget = undefined
    this.charged = 0
  }

  // One function for the connection's lifetime: at one job in flight a flush is queued per frame.
  private readonly flushLater = (): void => this.flush()

  private flush(): void {
    this.flushQueued = false
    if (this.outbox.length === 0 || this.waitingForDrain || this.socket.destroyed) return
    const data = this.outbox.length === 1 ? (this.outbox[0] as Buffer) : Buffer.concat(this.outbox, this.outboxBytes)
    this.outbox = []
    this.outboxBytes = 0
    this.sentAt = Date.now()
    if (!this.socket.write(data)) {
      this.waitingForDrain = true
      this.stalledSince = Date.now()
    }
  }

  private onSocketClose(): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.heartbeat?.stop()
    this.decoder.reset()
    this.releaseBudget()
    this.outbox = []
    this.handler.onClose(this.closeReason)
  }
}
