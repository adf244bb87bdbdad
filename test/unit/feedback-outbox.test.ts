import { beforeEach, describe, expect, it } from 'vitest'
import { createLogger } from '../../src/logger.js'
import { DistributorLink, type LinkContext } from '../../src/node/distributor-link.js'
import { FeedbackOutbox, type OutboxContext } from '../../src/node/feedback-outbox.js'
import { MessageType, type Message } from '../../src/protocol/messages.js'
import { MemoryStore } from '../../src/storage/memory-store.js'
import type { FeedbackId, FeedbackRecord, Store } from '../../src/storage/store.js'
import { DurableMemoryStore } from '../helpers/durable-memory-store.js'
import { LEVEL, LogCapture } from '../helpers/log-capture.js'

type FeedbackFrame = Extract<Message, { type: 'feedback' }>

const neverDialled: LinkContext = {
  helloFields: () => {
    throw new Error('a link of this test never dials')
  },
  onReady: () => {},
  onMessage: () => {},
  onDown: () => {},
}

/** A link that is never dialled: the test says when it is up, and it keeps what it is given to send. */
class RecordingLink extends DistributorLink {
  readonly frames: FeedbackFrame[] = []
  constructor(key: string) {
    super(neverDialled, {
      host: '127.0.0.1',
      port: 1,
      address: key,
      secret: undefined,
      tls: undefined,
      maxFrameSize: 16 * 1024 * 1024,
      stallTimeoutMs: 1000,
      handshakeTimeoutMs: 1000,
      reconnectMinMs: 10,
      reconnectMaxMs: 10,
      log: createLogger('silent'),
    })
    this.identity = key
  }
  /** Up: as after a welcome; down: as while it redials. */
  setConnected(up: boolean): void {
    this.state = up ? 'ready' : 'backoff'
  }
  override send(message: Message): boolean {
    if (!this.ready || message.type !== MessageType.FEEDBACK) return false
    this.frames.push(message)
    return true
  }
  /** The frames sent, as frame number and the job ids they carried. */
  get sent(): [number, string[]][] {
    return this.frames.map((f) => [f.seq, f.items.map((i) => i.id)])
  }
}

/** The node, as much as the outbox sees of it. */
class FakeNode implements OutboxContext {
  readonly links = new Map<string, RecordingLink>()
  readonly logs = new LogCapture()
  readonly log = this.logs.logger
  maxFrameSize = 16 * 1024 * 1024
  isBusy = false
  /** A gone member's identity → the one that answers for it (what DistributorDirectory keeps). */
  readonly aliases = new Map<string, string>()
  linkFor(key: string): DistributorLink | undefined {
    const own = this.links.get(key)
    if (own?.ready === true) return own
    const alias = this.aliases.get(key)
    return (alias === undefined ? undefined : this.links.get(alias)) ?? own
  }
  busy(): boolean {
    return this.isBusy
  }
  link(key: string, up = true): RecordingLink {
    const link = new RecordingLink(key)
    link.setConnected(up)
    this.links.set(key, link)
    return link
  }
}

/** A durable store that records (or fails) the acks it is asked to store. */
class AckRecordingStore extends DurableMemoryStore {
  readonly acks: FeedbackId[][] = []
  failAcks = false
  override async ackFeedback(refs: readonly FeedbackId[]): Promise<void> {
    this.acks.push([...refs])
    if (this.failAcks) throw new Error('store down')
  }
}

/** A memory store that records the acks it is asked to store (it should never be). */
class MemoryAckStore extends MemoryStore {
  readonly acks: FeedbackId[][] = []
  override async ackFeedback(refs: readonly FeedbackId[]): Promise<void> {
    this.acks.push([...refs])
  }
}

const D1 = '127.0.0.1:5001'
const D2 = '127.0.0.1:5002'

function result(jobId: string, more: Partial<FeedbackRecord> = {}): FeedbackRecord {
  return {
    jobId,
    run: 1,
    distributor: D1,
    kind: 'success',
    final: true,
    cancelled: false,
    args: Uint8Array.of(0x80),
    ...more,
  }
}

/** Every microtask queued so far has run (an idle node's send). */
const microtasks = async (): Promise<void> => {
  for (let i = 0; i < 10; i++) await Promise.resolve()
}
/** The end of this turn of the event loop (a busy node's send). */
const endOfTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

describe('FeedbackOutbox', () => {
  let node: FakeNode
  let outbox: FeedbackOutbox
  let store: Store

  beforeEach(() => {
    node = new FakeNode()
    outbox = new FeedbackOutbox(node)
    store = new MemoryStore()
  })

  describe('sending', () => {
    it('an idle node sends within the turn: the results of one turn share one frame, numbered from 1', async () => {
      const link = node.link(D1)
      outbox.add(
        result('a', {
          kind: 'error',
          final: false,
          run: 3,
          cancelled: true,
          args: Uint8Array.of(0x81, 0xa1, 0x78, 0x01),
        }),
        store,
      )
      outbox.add(result('b'), store)
      expect(link.frames).toEqual([])
      await microtasks()
      expect(link.frames).toEqual([
        {
          type: MessageType.FEEDBACK,
          seq: 1,
          items: [
            {
              id: 'a',
              run: 3,
              kind: 'error',
              final: false,
              cancelled: true,
              args: Uint8Array.of(0x81, 0xa1, 0x78, 0x01),
            },
            { id: 'b', run: 1, kind: 'success', final: true, cancelled: false, args: Uint8Array.of(0x80) },
          ],
        },
      ])
      outbox.add(result('c'), store)
      await microtasks()
      expect(link.sent).toEqual([
        [1, ['a', 'b']],
        [2, ['c']],
      ])
    })

    it('a busy node waits for the end of the turn, so results that finish over several hops share a frame', async () => {
      const link = node.link(D1)
      node.isBusy = true
      outbox.add(result('a'), store)
      await microtasks()
      outbox.add(result('b'), store)
      await microtasks()
      expect(link.frames).toEqual([])
      await endOfTurn()
      expect(link.sent).toEqual([[1, ['a', 'b']]])
    })

    it('one frame per distributor, each numbered on its own', async () => {
      const one = node.link(D1)
      const two = node.link(D2)
      outbox.add(result('a'), store)
      outbox.add(result('b', { distributor: D2 }), store)
      outbox.add(result('c'), store)
      await microtasks()
      expect(one.sent).toEqual([[1, ['a', 'c']]])
      expect(two.sent).toEqual([[1, ['b']]])
    })

    it('flushNow sends the waiting results at once, and the end of the turn sends them no second time', async () => {
      const link = node.link(D1)
      node.isBusy = true
      outbox.add(result('a'), store)
      outbox.flushNow()
      expect(link.sent).toEqual([[1, ['a']]])
      await endOfTurn()
      expect(link.sent).toEqual([[1, ['a']]])
    })
  })

  describe('frame limits', () => {
    /** A result that counts `size` bytes in a frame (its args plus 64 for the rest). */
    const sized = (jobId: string, size: number): FeedbackRecord => result(jobId, { args: new Uint8Array(size - 64) })

    it('a frame holds at most half the smaller of the two ends’ frame limits', async () => {
      node.maxFrameSize = 4000
      const link = node.link(D1)
      link.peerMaxFrameSize = 1000
      for (const id of ['a', 'b', 'c', 'd', 'e', 'f', 'g']) outbox.add(sized(id, 150), store)
      await microtasks()
      // 500 bytes a frame: three results of 150.
      expect(link.sent).toEqual([
        [1, ['a', 'b', 'c']],
        [2, ['d', 'e', 'f']],
        [3, ['g']],
      ])
    })

    it('the node’s own limit counts when the distributor’s is larger, and a result over the limit goes alone', async () => {
      node.maxFrameSize = 1000
      const link = node.link(D1)
      link.peerMaxFrameSize = 16 * 1024 * 1024
      outbox.add(sized('huge', 2000), store)
      for (const id of ['a', 'b', 'c']) outbox.add(sized(id, 250), store)
      outbox.add(sized('big', 2000), store)
      outbox.add(sized('d', 250), store)
      await microtasks()
      expect(link.sent).toEqual([
        [1, ['huge']],
        [2, ['a', 'b']],
        [3, ['c']],
        [4, ['big']],
        [5, ['d']],
      ])
    })
  })

  describe('acks and re-sending', () => {
    it('an ack takes out every frame up to its number; a lower one takes out nothing', async () => {
      const link = node.link(D1)
      for (const id of ['a', 'b', 'c']) {
        outbox.add(result(id), store)
        await microtasks()
      }
      expect(link.sent).toEqual([
        [1, ['a']],
        [2, ['b']],
        [3, ['c']],
      ])
      const acked: string[] = []
      const each = (f: FeedbackRecord): void => void acked.push(f.jobId)
      outbox.ack(link, 0, each)
      expect(acked).toEqual([])
      expect(outbox.size).toBe(3)
      outbox.ack(link, 2, each)
      expect(acked).toEqual(['a', 'b'])
      expect(outbox.size).toBe(1)
      outbox.ack(link, 2, each)
      expect(acked).toEqual(['a', 'b'])
      outbox.ack(link, 3, each)
      expect(acked).toEqual(['a', 'b', 'c'])
      expect(outbox.size).toBe(0)
    })

    it('what waits for a distributor that is not connected goes out when its link is back, in the order produced, numbered afresh', async () => {
      const link = node.link(D1)
      outbox.add(result('a'), store)
      await microtasks()
      outbox.add(result('b'), store)
      await microtasks()
      expect(link.sent).toEqual([
        [1, ['a']],
        [2, ['b']],
      ])
      link.setConnected(false)
      outbox.add(result('c'), store)
      await endOfTurn()
      expect(link.sent).toEqual([
        [1, ['a']],
        [2, ['b']],
      ])

      link.setConnected(true)
      outbox.resend(link)
      expect(link.sent).toEqual([
        [1, ['a']],
        [2, ['b']],
        [1, ['a', 'b', 'c']],
      ])
      // An ack of the new connection's frame 1 covers all three, once each.
      const acked: string[] = []
      outbox.ack(link, 1, (f) => acked.push(f.jobId))
      expect(acked).toEqual(['a', 'b', 'c'])
      expect(outbox.size).toBe(0)
      outbox.resend(link)
      expect(link.frames).toHaveLength(3)
    })

    it('a result that went out twice on one connection (re-sent, then its batch) is dropped once', async () => {
      const link = node.link(D1)
      node.isBusy = true
      outbox.add(result('a'), store)
      // The link drops and comes back before the end of the turn: the result goes out with
      // the re-sent ones, and again with its batch.
      link.setConnected(false)
      link.setConnected(true)
      outbox.resend(link)
      await endOfTurn()
      expect(link.sent).toEqual([
        [1, ['a']],
        [2, ['a']],
      ])
      const acked: string[] = []
      outbox.ack(link, 2, (f) => acked.push(f.jobId))
      expect(acked).toEqual(['a'])
      expect(outbox.size).toBe(0)
      outbox.add(result('b'), store)
      await endOfTurn()
      expect(link.sent.at(-1)).toEqual([3, ['b']])
      expect(outbox.size).toBe(1)
    })

    it('acks reach each durable store in one call, and a memory store is never written', async () => {
      const link = node.link(D1)
      const durable = new AckRecordingStore()
      const memory = new MemoryAckStore()
      outbox.add(result('a'), durable)
      outbox.add(result('b'), memory)
      outbox.add(result('c', { run: 2 }), durable)
      await microtasks()
      outbox.ack(link, 1)
      expect(durable.acks).toEqual([
        [
          { jobId: 'a', run: 1 },
          { jobId: 'c', run: 2 },
        ],
      ])
      expect(memory.acks).toEqual([])
    })

    it('a store that cannot drop acknowledged results is logged, and the outbox lets go of them all the same', async () => {
      const link = node.link(D1)
      const durable = new AckRecordingStore()
      durable.failAcks = true
      outbox.add(result('a'), durable)
      await microtasks()
      outbox.ack(link, 1)
      expect(outbox.size).toBe(0)
      const [warned] = await node.logs.waitFor((e) => e.msg === 'cannot drop acknowledged feedback', 1, 'the warning')
      expect(warned).toMatchObject({ level: LEVEL.warn, feedbacks: 1 })
    })

    it('holdsFinal: a final result waits for its ack, sent or not', async () => {
      const link = node.link(D1, false)
      outbox.add(result('done'), store)
      outbox.add(result('periodic', { final: false }), store)
      expect(outbox.holdsFinal(D1, 'done')).toBe(true)
      expect(outbox.holdsFinal(D1, 'periodic')).toBe(false)
      expect(outbox.holdsFinal(D2, 'done')).toBe(false)
      link.setConnected(true)
      outbox.resend(link)
      expect(outbox.holdsFinal(D1, 'done')).toBe(true)
      outbox.ack(link, 1)
      expect(outbox.holdsFinal(D1, 'done')).toBe(false)
    })
  })

  describe('routing to the member that answers', () => {
    it('results of a gone member go to the member that answers for it, once; its own link back later gets none of them again', async () => {
      const gone = node.link(D1, false)
      const adopter = node.link(D2)
      outbox.add(result('a'), store)
      outbox.add(result('b'), store)
      await microtasks()
      expect(adopter.sent).toEqual([])

      node.aliases.set(D1, D2)
      outbox.route()
      expect(adopter.sent).toEqual([[1, ['a', 'b']]])
      // Routed already: a second look sends nothing twice, a new result follows on its own.
      outbox.route()
      outbox.add(result('c'), store)
      await microtasks()
      expect(adopter.sent).toEqual([
        [1, ['a', 'b']],
        [2, ['c']],
      ])
      outbox.ack(adopter, 2)
      expect(outbox.size).toBe(0)

      gone.setConnected(true)
      outbox.resend(gone)
      expect(gone.sent).toEqual([])
    })

    it('a box sent to its own member goes to the one answering for it when that link goes down', async () => {
      const own = node.link(D1)
      const other = node.link(D2)
      node.aliases.set(D1, D2)
      outbox.add(result('a'), store)
      await microtasks()
      expect(own.sent).toEqual([[1, ['a']]])
      expect(other.sent).toEqual([])

      own.setConnected(false)
      outbox.route()
      expect(other.sent).toEqual([[1, ['a']]])
      // The ack of either copy drops it.
      outbox.ack(other, 1)
      expect(outbox.size).toBe(0)
    })
  })

  describe('restore', () => {
    it('sends stored results to connected distributors at once, keeps the others for their link, and files a store’s results once', () => {
      const up = node.link(D1)
      const down = node.link(D2, false)
      const peerStore = new MemoryStore()
      const stored = [result('a'), result('b', { distributor: D2 }), result('c')]
      outbox.restore(stored, peerStore)
      expect(up.sent).toEqual([[1, ['a', 'c']]])
      expect(down.sent).toEqual([])
      expect(outbox.size).toBe(3)

      // The same store read again (a dead peer adopted once more): nothing new is filed or sent.
      outbox.restore(stored, peerStore)
      expect(outbox.size).toBe(3)
      expect(up.sent).toEqual([[1, ['a', 'c']]])
      // Another store's results are its own, even under the same ids.
      outbox.restore([result('a')], new MemoryStore())
      expect(outbox.size).toBe(4)
      expect(up.sent).toEqual([
        [1, ['a', 'c']],
        [2, ['a']],
      ])

      down.setConnected(true)
      outbox.resend(down)
      expect(down.sent).toEqual([[1, ['b']]])
    })
  })
})
