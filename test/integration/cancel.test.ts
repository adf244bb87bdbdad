import { afterEach, describe, expect, it } from 'vitest'
import type { Distributor } from '../../src/distributor/distributor.js'
import type { JobHandle } from '../../src/distributor/job-handle.js'
import { Resources, startDistributor, startNode } from '../helpers/cluster.js'
import { DurableMemoryStore } from '../helpers/durable-memory-store.js'
import { FirstCallGate } from '../helpers/gated-stores.js'
import { dropNode, gatedNode } from '../helpers/link-drops.js'
import { connectPeer } from '../helpers/peers.js'

const res = new Resources()
afterEach(() => res.releaseAll())

/**
 * cancel() on node 'n1', whose store holds the write the cancel makes (`gate`) until the
 * link has dropped: the node's answer goes out on a link that is down. cancel()'s answer.
 */
async function cancelWithAnswerLost(d: Distributor, gate: FirstCallGate, h: JobHandle): Promise<boolean> {
  const cancelled = h.cancel()
  const release = await gate.held()
  const down = d.waitFor('node:disconnect', (e) => e.node === 'n1')
  dropNode(d, 'n1')
  await down
  release()
  return cancelled
}

/** A durable store whose first job removal waits for the test. */
class SlowRemoveStore extends DurableMemoryStore {
  readonly gate = new FirstCallGate()
  override removeJob(id: string): Promise<void> {
    return this.gate.pass(() => super.removeJob(id))
  }
}

/** A durable store whose first finishRun waits for the test. */
class SlowFinishStore extends DurableMemoryStore {
  readonly gate = new FirstCallGate()
  override finishRun(...args: Parameters<DurableMemoryStore['finishRun']>): Promise<void> {
    return this.gate.pass(() => super.finishRun(...args))
  }
}

describe('cancel with a fake node', () => {
  it('a cancel sent to a memory node that drops before answering cancels the job instead of re-running it', async () => {
    const d = await startDistributor(res)
    const fake = await connectPeer(res, d)
    await fake.handshake({ node: 'fake', jobs: ['echo'] })
    const handle = d.enqueue('echo', { keep: true })
    const dispatch = await fake.nextOfType('dispatch')
    const accepted = d.waitFor('job:accepted', (e) => e.id === handle.id)
    fake.send({ type: 'accepted', seq: dispatch.seq })
    await accepted
    const cancelled = handle.cancel()
    const request = await fake.nextOfType('cancel')
    expect(request.id).toBe(handle.id)
    let requeued = false
    d.on('job:requeue', () => (requeued = true))
    await fake.destroy() // gone without answering
    expect(await cancelled).toBe(true)
    expect(await handle.done).toEqual({ keep: true })
    expect(requeued).toBe(false)
    expect(d.pendingCount).toBe(0)
    expect(d.activeCount).toBe(0)
  })
})

describe('cancels across reconnects', () => {
  it('a memory node whose link drops lets go of its jobs: a cancel in the gap is final, and nothing is held twice', async () => {
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: 'm1', reconnectMinMs: 20, reconnectMaxMs: 20 })
    const delayed = d.enqueue('echo', {}, { after: 3600 })
    const periodic = d.enqueue('echo', {}, { after: 3600, period: 3600 })
    await Promise.all([delayed, periodic].map((h) => d.waitFor('job:accepted', (e) => e.id === h.id)))
    expect(node.jobCount).toBe(2)

    // The distributor takes both back (it cannot tell a dropped link from a dead node): the
    // node must not keep running them, or a cancel would stop only one copy.
    const nodeDown = node.waitFor('link:down')
    const back = d.waitFor('job:accepted', (e) => e.id === periodic.id)
    dropNode(d, 'm1')
    await nodeDown
    expect(node.jobCount).toBe(0)
    expect(await delayed.cancel()).toBe(true)

    // The node is back and gets the periodic job again: held once.
    await back
    expect(node.jobCount).toBe(1)
    expect(await periodic.cancel()).toBe(true)
    expect(node.jobCount).toBe(0)
  }, 10_000)

  it('a cancel lost with the link while a durable node saves the job waits for that node, which cancels it', async () => {
    const { d, store, node } = await gatedNode(res, 1)
    const orphans: string[] = []
    d.on('feedback:orphan', (e) => orphans.push(e.id))
    const h = d.enqueue('echo', {}, { after: 3600 })
    const save = await store.nthSave(1)
    // The cancel frame waits for the end of the turn; the link drops in this one.
    const cancelled = h.cancel()
    dropNode(d, 'n1')
    // Stored: the node owns the job now, and would run it if nobody told it otherwise.
    save.resolve()
    expect(await cancelled).toBe(true)
    expect(node.jobCount).toBe(0)
    expect(d.activeCount).toBe(0)
    expect(orphans).toEqual([])
  }, 10_000)

  it("a cancel whose answer is lost with the link is settled by the node's answer to the cancel sent again", async () => {
    const d = await startDistributor(res)
    const store = new SlowRemoveStore()
    const node = await startNode(res, d, { name: 'n1', storage: store, reconnectMinMs: 10, reconnectMaxMs: 20 })
    const h = d.enqueue('echo', { x: 1 }, { after: 3600 })
    await d.waitFor('job:accepted', (e) => e.id === h.id)
    // Removed: the node answers 'cancelled' on a link that is down, and the answer is lost.
    // Asked again after the reconnect, it no longer knows the job, nor has a result of it.
    expect(await cancelWithAnswerLost(d, store.gate, h)).toBe(true)
    expect(await h.done).toEqual({ x: 1 })
    expect(d.activeCount).toBe(0)
    expect(node.jobCount).toBe(0)
  }, 10_000)

  it('a periodic job cancelled while a run is in progress reports that run, and no orphan', async () => {
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: 'p1' })
    const orphans: unknown[] = []
    d.on('feedback:orphan', (e) => orphans.push(e))
    const runs: unknown[] = []
    const h = d.enqueue('slow', { ms: 200 }, { period: 3600 }, (args) => void runs.push(args))
    await node.waitFor('job:start', (e) => e.id === h.id)
    expect(await h.cancel()).toBe(true)
    // The run's feedback went out before the answer to the cancel.
    expect(runs).toHaveLength(1)
    expect(orphans).toEqual([])
  }, 10_000)

  it('a periodic job cancelled mid-run whose answer is lost with the link settles once the node is asked again', async () => {
    const d = await startDistributor(res)
    const store = new SlowFinishStore()
    const node = await startNode(res, d, { name: 'n1', storage: store, reconnectMinMs: 10, reconnectMaxMs: 20 })
    const h = d.enqueue('slow', { ms: 100 }, { period: 3600 })
    await node.waitFor('job:start', (e) => e.id === h.id)
    // The run ends with the cancel requested: its last result is being stored when the link
    // drops, and the node answers 'cancelled' on a link that is down. Asked again, it holds
    // neither the job nor a final result of it (only that run's, which is not final).
    expect(await cancelWithAnswerLost(d, store.gate, h)).toBe(true)
    expect(await h.done).toEqual({ ms: 100 })
    expect(d.activeCount).toBe(0)
  }, 10_000)

  it("a cancel that crosses the node's rejection of the job ends it: it is not sent elsewhere", async () => {
    const { d, store } = await gatedNode(res, 1)
    const other = await startNode(res, d, { name: 'n2' })
    const h = d.enqueue('echo', {}, { period: 3600, node: 'n1' })
    const save = await store.nthSave(1)
    // The save fails: the node drops the job and answers 'rejected' within this turn (it
    // reads nothing in between). The application cancels in the same turn, before that
    // answer arrives: the cancel is on its way to a node that did not keep the job, and
    // will answer that it does not know it.
    save.reject(new Error('store down'))
    const cancelled = h.cancel()
    expect(await cancelled).toBe(true)
    expect(d.activeCount).toBe(0)
    expect(d.pendingCount).toBe(0)
    expect(other.jobCount).toBe(0)
    // The queue's count is exact: the next job goes out.
    await d.enqueue('echo', {}, { node: 'n2' }).done
  }, 10_000)
})
