import type { Logger } from '../logger.js'
import { MessageType, type WireFeedback } from '../protocol/messages.js'
import { RunIndex } from '../storage/run-index.js'
import type { FeedbackId, FeedbackRecord, Store } from '../storage/store.js'
import type { DistributorLink } from './distributor-link.js'

/** What the outbox needs of its node. */
export interface OutboxContext {
  linkFor(distributorKey: string): DistributorLink | undefined
  /** Other chains are running or due: feedback may wait a moment to share a frame. */
  busy(): boolean
  maxFrameSize: number
  log: Logger
}

/** A feedback waiting for its distributor's ack, and the store whose outbox holds it. */
interface Entry {
  feedback: FeedbackRecord
  store: Store
}

/** The feedback frames sent over a link's current connection and not yet acknowledged. */
interface SentFrames {
  /** The last frame number used: frames are numbered from 1 on every connection. */
  seq: number
  frames: { seq: number; items: FeedbackRecord[] }[]
}

/**
 * The node's side of "feedback is never lost": every result stays here (and in its store)
 * until its distributor acknowledges it, and is sent again whenever the link comes back.
 *
 * Sending: when the node is busy, the results of one event-loop turn go out together in one
 * frame per distributor; an idle node sends within the turn, for latency.
 */
export class FeedbackOutbox {
  /** By distributor key, then by job and run; each job's runs in the order produced. */
  private readonly boxes = new Map<string, RunIndex<Entry>>()
  private readonly batches = new Map<DistributorLink, FeedbackRecord[]>()
  private readonly sent = new Map<DistributorLink, SentFrames>()
  private flushQueued = false

  constructor(private readonly ctx: OutboxContext) {}

  get size(): number {
    let n = 0
    for (const box of this.boxes.values()) n += box.size
    return n
  }

  /** Files feedback read back from a store (restart, takeover), to be sent on reconnect. */
  restore(feedback: FeedbackRecord, store: Store): void {
    this.boxOf(feedback.distributor).set(feedback.jobId, { feedback, store })
  }

  /** Files a new result and sends it if its distributor is connected. */
  add(feedback: FeedbackRecord, store: Store): void {
    this.restore(feedback, store)
    const link = this.ctx.linkFor(feedback.distributor)
    if (link?.ready !== true) return
    let batch = this.batches.get(link)
    if (batch === undefined) this.batches.set(link, (batch = []))
    batch.push(feedback)
    if (this.flushQueued) return
    this.flushQueued = true
    // Busy: the chains that finish in this turn reach here over several microtask hops and
    // should share the frame, so it waits for the end of the turn. Idle: it goes out within
    // the turn, still sharing its frame with whatever else finishes meanwhile (a Redis reply
    // settles a whole batch of finished runs at once).
    if (this.ctx.busy()) setImmediate(() => this.flush())
    else queueMicrotask(() => this.flush())
  }

  /** A link (re)connected: everything still unacknowledged for it goes out again. */
  resend(link: DistributorLink): void {
    this.sent.set(link, { seq: 0, frames: [] })
    const box = this.boxes.get(link.key)
    if (box !== undefined && box.size > 0) this.send(link, box.values().map((e) => e.feedback))
  }

  /**
   * Drops the results of the frames up to `seq` here and in their stores; returns those
   * that were held (a result sent twice, after a reconnect, is dropped once).
   */
  ack(link: DistributorLink, seq: number): FeedbackRecord[] {
    const box = this.boxes.get(link.key)
    const sent = this.sent.get(link)
    const acked: FeedbackRecord[] = []
    if (box === undefined || sent === undefined) return acked
    // One store call per store (usually one): a frame's acks are one round trip.
    const byStore = new Map<Store, FeedbackId[]>()
    while (sent.frames.length > 0 && (sent.frames[0] as SentFrames['frames'][number]).seq <= seq) {
      for (const feedback of (sent.frames.shift() as SentFrames['frames'][number]).items) {
        const entry = box.delete(feedback.jobId, feedback.run)
        if (entry === undefined) continue
        acked.push(feedback)
        // A memory store was never written (see Node.persist).
        if (!entry.store.durable) continue
        let ids = byStore.get(entry.store)
        if (ids === undefined) byStore.set(entry.store, (ids = []))
        ids.push({ jobId: feedback.jobId, run: feedback.run })
      }
    }
    for (const [store, ids] of byStore) {
      store.ackFeedback(ids).catch((err: unknown) => {
        // Still in the store: re-sent after a restart, where the distributor drops the duplicate.
        this.ctx.log.warn({ err, feedbacks: ids.length }, 'cannot drop acknowledged feedback')
      })
    }
    return acked
  }

  private flush(): void {
    this.flushQueued = false
    for (const [link, items] of this.batches) this.send(link, items)
    this.batches.clear()
  }

  /** Frames of at most half the smaller of the two ends' frame limits each. */
  private send(link: DistributorLink, items: FeedbackRecord[]): void {
    const limit = Math.min(this.ctx.maxFrameSize, link.peerMaxFrameSize) / 2
    let records: FeedbackRecord[] = []
    let batch: WireFeedback[] = []
    let bytes = 0
    for (const f of items) {
      if (batch.length > 0 && bytes + f.args.length > limit) {
        this.sendFrame(link, records, batch)
        records = []
        batch = []
        bytes = 0
      }
      records.push(f)
      batch.push({ id: f.jobId, run: f.run, kind: f.kind, final: f.final, cancelled: f.cancelled, args: f.args })
      bytes += f.args.length + 64
    }
    if (batch.length > 0) this.sendFrame(link, records, batch)
  }

  /** Numbers the frame and remembers what it carried: the ack names the frame, not the items. */
  private sendFrame(link: DistributorLink, records: FeedbackRecord[], items: WireFeedback[]): void {
    let sent = this.sent.get(link)
    if (sent === undefined) this.sent.set(link, (sent = { seq: 0, frames: [] }))
    const seq = ++sent.seq
    sent.frames.push({ seq, items: records })
    link.send({ type: MessageType.FEEDBACK, seq, items })
  }

  private boxOf(key: string): RunIndex<Entry> {
    let box = this.boxes.get(key)
    if (box === undefined) this.boxes.set(key, (box = new RunIndex((e) => e.feedback.run)))
    return box
  }
}
