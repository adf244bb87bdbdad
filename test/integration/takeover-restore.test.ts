import { afterEach, expect, it } from 'vitest'
import { MemoryStore } from '../../src/storage/memory-store.js'
import type { FeedbackRecord, NodeLeases, Store } from '../../src/storage/store.js'
import { pack } from '../../src/protocol/msgpack.js'
import { Resources, startDistributor, startNode } from '../helpers/cluster.js'

const res = new Resources()
afterEach(() => res.releaseAll())

/** A dead peer's store: no unfinished jobs, one feedback its distributor never acknowledged. */
class PeerStore extends MemoryStore {
  override readonly durable = true as unknown as false
  constructor(private readonly feedback: FeedbackRecord[]) {
    super()
  }
  override async listFeedback(): Promise<FeedbackRecord[]> {
    return this.feedback.map((f) => ({ ...f }))
  }
}

/** This node's own store, with leases: the peer 'dead' has an expired lease. */
class LeasingStore extends MemoryStore implements NodeLeases {
  override readonly durable = true as unknown as false
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

it('a dead peer with only feedback left is re-adopted every lease period; its feedback must be filed once', async () => {
  const d = await startDistributor(res)
  const feedback: FeedbackRecord = {
    jobId: 'job-of-dead-peer', run: 1, distributor: `127.0.0.1:${d.port}`,
    kind: 'success', final: true, cancelled: false, args: pack({ x: 1 }),
  }
  const store = new LeasingStore(new PeerStore([feedback]))
  const node = await startNode(res, d, { name: 'heir', storage: store as never, takeover: true, leaseMs: 100 })
  await new Promise((r) => setTimeout(r, 700))
  const outbox = (node as unknown as { outbox: { size: number } }).outbox
  expect(outbox.size).toBe(1)
}, 10_000)
