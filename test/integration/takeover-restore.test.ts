import { afterEach, expect, it } from 'vitest'
import type { FeedbackId, FeedbackRecord, NodeLeases, Store } from '../../src/storage/store.js'
import { pack } from '../../src/protocol/msgpack.js'
import { Resources, startDistributor, startNode } from '../helpers/cluster.js'
import { DurableMemoryStore } from '../helpers/durable-memory-store.js'

const res = new Resources()
afterEach(() => res.releaseAll())

/**
 * A dead peer's store: no unfinished jobs, feedback its distributor never acknowledged.
 * It tells of every read (each adoption reads it) and drops what is acknowledged.
 */
class PeerStore extends DurableMemoryStore {
  reads = 0
  private ackedNow!: () => void
  /** Settles when the node drops acknowledged feedback here. */
  readonly acked = new Promise<void>((resolve) => (this.ackedNow = resolve))
  private readonly waiters: { reads: number; resolve: () => void }[] = []
  constructor(private feedback: FeedbackRecord[]) {
    super()
  }
  override async listFeedback(): Promise<FeedbackRecord[]> {
    this.reads++
    for (const w of this.waiters.filter((w) => w.reads <= this.reads)) w.resolve()
    return this.feedback.map((f) => ({ ...f }))
  }
  override async ackFeedback(refs: readonly FeedbackId[]): Promise<void> {
    this.feedback = this.feedback.filter((f) => !refs.some((r) => r.jobId === f.jobId && r.run === f.run))
    this.ackedNow()
  }
  /** Resolves once the store has been read `reads` times. */
  readTimes(reads: number): Promise<void> {
    return new Promise((resolve) => this.waiters.push({ reads, resolve }))
  }
}

/** This node's own store, with leases: the peer 'dead' has an expired lease. */
class LeasingStore extends DurableMemoryStore implements NodeLeases {
  constructor(private readonly peer: Store) {
    super()
  }
  async acquireLease(_node: string, holder: string): Promise<string> {
    return holder
  }
  async releaseLease(): Promise<void> {}
  async listNodes(): Promise<string[]> {
    return ['heir', 'dead']
  }
  forNode(): Store {
    return this.peer
  }
}

it('a dead peer with only feedback left is re-adopted every lease period; its feedback reaches a connected distributor once and waits, filed once, for one that is not', async () => {
  const d = await startDistributor(res)
  const feedback: FeedbackRecord = {
    jobId: 'job-of-dead-peer',
    run: 1,
    distributor: `127.0.0.1:${d.port}`,
    kind: 'success',
    final: true,
    cancelled: false,
    args: pack({ x: 1 }),
  }
  const orphans: string[] = []
  d.on('feedback:orphan', (e) => orphans.push(e.id))
  const firstOrphan = d.waitFor('feedback:orphan')
  // For a distributor that never connects: it waits in the outbox, filed once however
  // often the peer is adopted again.
  const waiting: FeedbackRecord = { ...feedback, jobId: 'job-for-absent-distributor', distributor: '127.0.0.1:1' }
  const peer = new PeerStore([feedback, waiting])
  const node = await startNode(res, d, { name: 'heir', storage: new LeasingStore(peer), takeover: true, leaseMs: 100 })
  // Delivered over the link that is already up, not held until it reconnects.
  expect(await firstOrphan).toMatchObject({ id: 'job-of-dead-peer', node: 'heir', args: { x: 1 } })
  await peer.acked
  // Adopted twice more: nothing new to file, nothing sent again.
  await peer.readTimes(peer.reads + 2)
  expect(orphans).toEqual(['job-of-dead-peer'])
  expect(node.feedbackPending).toBe(1)
}, 10_000)
