/** What the heartbeat needs of a connection; a test fakes it in a few lines. */
export interface HeartbeatContext {
  /** Epoch ms of the last frame received from the peer. */
  lastReceivedAt(): number
  /** Epoch ms of the last frame written to the peer. */
  lastSentAt(): number
  sendPing(): void
  /** The peer has been silent for `maxMissed` intervals. */
  onSilent(silentMs: number): void
  /** How long our writes have waited for the peer to read (0 when they are not waiting). */
  stalledMs(): number
  stallTimeoutMs(): number
  onStalled(stalledMs: number): void
  now(): number
}

/**
 * Detects half-open connections. Every interval: if we wrote nothing for a whole interval
 * we ping, so a live peer always hears from us; if the peer was silent for `maxMissed`
 * intervals it is gone; so is a peer that stopped reading our writes for the stall timeout.
 * Any frame counts as a sign of life, so a busy link sends no pings.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly ctx: HeartbeatContext,
    readonly intervalMs: number,
    private readonly maxMissed = 3,
  ) {}

  start(): void {
    if (this.timer !== undefined || this.intervalMs <= 0) return
    this.timer = setInterval(() => this.tick(), this.intervalMs)
    this.timer.unref()
  }

  tick(): void {
    const now = this.ctx.now()
    const silentMs = now - this.ctx.lastReceivedAt()
    if (silentMs >= this.intervalMs * this.maxMissed) {
      this.stop()
      this.ctx.onSilent(silentMs)
      return
    }
    const stalledMs = this.ctx.stalledMs()
    if (stalledMs > 0 && stalledMs >= this.ctx.stallTimeoutMs()) {
      this.stop()
      this.ctx.onStalled(stalledMs)
      return
    }
    if (now - this.ctx.lastSentAt() >= this.intervalMs * 0.9) this.ctx.sendPing()
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }
}
