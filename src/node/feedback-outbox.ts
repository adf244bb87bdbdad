import { LinkedList } from '../linked-list.js'
import type { Logger } from '../logger.js'
import { MessageType, type WireFeedback } from '../protocol/messages.js'
import { afterMicrotasks } from '../scheduling/clock.js'
import { feedbackKey, type FeedbackId, type FeedbackRecord, type Store } from '../storage/store.js'
import type { DistributorLink } from './distributor-link.js'

/** What the outbox needs of its node. */
export interface OutboxContext {
  /** The ready link that receives what is filed under distributor identity `key`. */
  linkFor(key: string): DistributorLink | undefined
  /** Other chains are running or due: feedback may wait a moment to share a frame. */
  busy(): boolean
  maxFrameSize: number
  log: Logger
}

/**
 * A feedback waiting for its distributor's ack, and the store whose outbox holds it; linked
 * into its distributor's box, so that an ack takes it out without a lookup.
 */
interface Entry {
  feedback: FeedbackRecord
  store: Store
  list: LinkedList<Entry> | undefined
  prev: Entry | undefined
  next: Entry | undefined
}

/** The feedback frames sent over a link's current connection and not yet acknowledged. */
interface SentFrames {
  /** The last frame number used: frames are numbered from 1 on every connection. */
  seq: number
  frames: { seq: number; entries: Entry[] }[]
  /** Boxes (by identity) whose results went out over this connection: new ones follow as they come. */
  boxes: Set<string>
  /** The box last added to `boxes`: a result of the same distributor as the last one costs no set lookup. */
  lastBox: string | undefined
}

/**
 * The node's side of "feedback is never lost": every result stays here (and in its store)
 * until its distributor acknowledges it, and is sent again whenever the link comes back.
 *
 * Sending: when the node is busy, the results of one event-loop turn go out together in one
 * frame per distributor; an idle node sends within the turn, for latency. The distributor
 * acknowledges frames, by number: each frame remembers the entries it carried.
 */
export class FeedbackOutbox {
  /** By distributor identity, in the order the results were produced. */
  private readonly boxes = new Map<string, LinkedList<Entry>>()
  private readonly batches = new Map<DistributorLink, Entry[]>()
  private readonly sent = new Map<DistributorLink, SentFrames>()
  private flushQueued = false

  constructor(private readonly ctx: OutboxContext) {}

  get size(): number {
    let n = 0
    for (const box of this.boxes.values()) n += box.size
    return n
  }

  /**
   * Files feedback read back from a store (restart, takeover) and sends it to distributors
   * connected now; the others get it when they connect. A store read again (a dead peer
   * adopted once more) adds none of what is filed already.
   */
  restore(feedbacks: readonly FeedbackRecord[], store: Store): void {
    const filed = new Set<string>()
    for (const box of this.boxes.values()) {
      for (const entry of box.values())
        if (entry.store === store) filed.add(feedbackKey(entry.feedback.jobId, entry.feedback.run))
    }
    const fresh = new Map<string, Entry[]>()
    for (const feedback of feedbacks) {
      if (filed.has(feedbackKey(feedback.jobId, feedback.run))) continue
      const entry = this.file(feedback, store)
      let entries = fresh.get(feedback.distributor)
      if (entries === undefined) fresh.set(feedback.distributor, (entries = []))
      entries.push(entry)
    }
    // A link that is up now would otherwise carry it only after its next reconnect.
    for (const [key, entries] of fresh) {
      const link = this.ctx.linkFor(key)
      if (link?.ready !== true) continue
      // A box this connection carried already gets only what is new; another, all it holds.
      if (this.sentOn(link).boxes.has(key)) this.send(link, entries)
      else this.sendBox(link, key)
    }
  }

  /** The keys (distributor identities, or addresses of older records) that have results waiting for an ack. */
  *waitingKeys(): IterableIterator<string> {
    for (const [key, box] of this.boxes) if (box.size > 0) yield key
  }

  /** Files a new result and sends it if its distributor is connected. */
  add(feedback: FeedbackRecord, store: Store): void {
    const entry = this.file(feedback, store)
    const link = this.ctx.linkFor(feedback.distributor)
    if (link?.ready !== true) return
    // A box new since the last route() is this connection's from now on.
    const sent = this.sentOn(link)
    if (sent.lastBox !== feedback.distributor) {
      sent.boxes.add(feedback.distributor)
      sent.lastBox = feedback.distributor
    }
    let batch = this.batches.get(link)
    if (batch === undefined) this.batches.set(link, (batch = []))
    batch.push(entry)
    if (this.flushQueued) return
    this.flushQueued = true
    // Busy: the chains that finish in this turn reach here over several microtask hops and
    // should share the frame, so it waits for the end of the turn. Idle: it goes out within
    // the turn, still sharing its frame with whatever else finishes meanwhile (a Redis reply
    // settles a whole batch of finished runs at once).
    if (this.ctx.busy()) setImmediate(this.flushLater)
    else afterMicrotasks(this.flushLater)
  }

  /**
   * The final result of job `jobId` for that distributor waits for its ack (sent or not):
   * the distributor still hears how the job ended. A scan, made only for a cancel of a job
   * the node no longer holds.
   */
  holdsFinal(identity: string, jobId: string): boolean {
    const box = this.boxes.get(identity)
    if (box === undefined) return false
    for (const entry of box.values()) if (entry.feedback.jobId === jobId && entry.feedback.final) return true
    return false
  }

  /** Results waiting to share a frame go out now, ahead of what the caller sends next. */
  flushNow(): void {
    if (this.batches.size > 0) this.flush()
  }

  /** A link (re)connected: everything still unacknowledged for it goes out again. */
  resend(link: DistributorLink): void {
    this.sent.set(link, { seq: 0, frames: [], boxes: new Set(), lastBox: undefined })
    this.route()
  }

  /**
   * Sends each box to the link that receives it now, unless that connection carried it
   * already: after a link came up or went down, or a distributor said it answers for a gone
   * member of its group. A result may so reach two members (the first connection dropped
   * before its ack): at-least-once, and the second drops what it knows as a duplicate.
   */
  route(): void {
    for (const [key, box] of this.boxes) {
      if (box.size === 0) continue
      const link = this.ctx.linkFor(key)
      if (link?.ready === true && !this.sentOn(link).boxes.has(key)) this.sendBox(link, key)
    }
  }

  /** Everything filed under `key` goes over `link`'s connection, and what follows too. */
  private sendBox(link: DistributorLink, key: string): void {
    this.sentOn(link).boxes.add(key)
    const box = this.boxes.get(key)
    if (box !== undefined && box.size > 0) this.send(link, box.values())
  }

  private sentOn(link: DistributorLink): SentFrames {
    let sent = this.sent.get(link)
    if (sent === undefined) this.sent.set(link, (sent = { seq: 0, frames: [], boxes: new Set(), lastBox: undefined }))
    return sent
  }

  /**
   * Drops the results of the frames up to `seq` here and in their stores; `each` hears of
   * every one that was held (a result sent twice, after a reconnect, is dropped once).
   */
  ack(link: DistributorLink, seq: number, each?: (feedback: FeedbackRecord) => void): void {
    const sent = this.sent.get(link)
    if (sent === undefined) return
    // One store call per store (usually one): a frame's acks are one round trip. Made on
    // the first durable result: an ack of a memory node's feedback (one per frame, on the
    // path of every job at one in flight) allocates nothing here.
    let byStore: Map<Store, FeedbackId[]> | undefined
    while (sent.frames.length > 0 && (sent.frames[0] as SentFrames['frames'][number]).seq <= seq) {
      for (const entry of (sent.frames.shift() as SentFrames['frames'][number]).entries) {
        // Acknowledged already (it went out twice: after a reconnect, or to two members).
        if (entry.list === undefined) continue
        entry.list.remove(entry)
        const { feedback, store } = entry
        each?.(feedback)
        // A memory store was never written (see StoreOutage.persist).
        if (!store.durable) continue
        byStore ??= new Map()
        let ids = byStore.get(store)
        if (ids === undefined) byStore.set(store, (ids = []))
        ids.push({ jobId: feedback.jobId, run: feedback.run })
      }
    }
    if (byStore === undefined) return
    for (const [store, ids] of byStore) {
      store.ackFeedback(ids).catch((err: unknown) => {
        // Still in the store: re-sent after a restart, where the distributor drops the duplicate.
        this.ctx.log.warn({ err, feedbacks: ids.length }, 'cannot drop acknowledged feedback')
      })
    }
  }

  private file(feedback: FeedbackRecord, store: Store): Entry {
    let box = this.boxes.get(feedback.distributor)
    if (box === undefined) this.boxes.set(feedback.distributor, (box = new LinkedList<Entry>()))
    const entry: Entry = { feedback, store, list: undefined, prev: undefined, next: undefined }
    box.add(entry)
    return entry
  }

  // One function for the outbox's lifetime: a flush is queued per frame of feedback.
  private readonly flushLater = (): void => this.flush()

  private flush(): void {
    this.flushQueued = false
    for (const [link, entries] of this.batches) this.send(link, entries)
    this.batches.clear()
  }

  /** Frames of at most half the smaller of the two ends' frame limits each. */
  private send(link: DistributorLink, entries: Entry[]): void {
    const limit = Math.min(this.ctx.maxFrameSize, link.peerMaxFrameSize) / 2
    let frame: Entry[] = []
    let bytes = 0
    for (const entry of entries) {
      const size = entry.feedback.args.length + 64
      if (frame.length > 0 && bytes + size > limit) {
        this.sendFrame(link, frame)
        frame = []
        bytes = 0
      }
      frame.push(entry)
      bytes += size
    }
    if (frame.length > 0) this.sendFrame(link, frame)
  }

  /** Numbers the frame and remembers what it carried: the ack names the frame, not the items. */
  private sendFrame(link: DistributorLink, entries: Entry[]): void {
    const sent = this.sentOn(link)
    const seq = ++sent.seq
    sent.frames.push({ seq, entries })
    const items = entries.map(
      ({ feedback: f }): WireFeedback => ({
        id: f.jobId,
        name: f.name,
        run: f.run,
        kind: f.kind,
        final: f.final,
        cancelled: f.cancelled,
        args: f.args,
      }),
    )
    link.send({ type: MessageType.FEEDBACK, seq, items })
  }
}
