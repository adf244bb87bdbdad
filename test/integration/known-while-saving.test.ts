import { afterEach, expect, it } from 'vitest'
import type { Distributor } from '../../src/distributor/distributor.js'
import { MemoryStore } from '../../src/storage/memory-store.js'
import type { JobRecord } from '../../src/storage/store.js'
import { Resources, startDistributor, startNode } from '../helpers/cluster.js'

const res = new Resources()
afterEach(() => res.releaseAll())

/** A "durable" store whose first saveJobs waits until the test settles it. */
class GatedStore extends MemoryStore {
  override readonly durable = true as unknown as false
  first: { resolve: () => void; reject: (e: Error) => void } | undefined
  private waiters: (() => void)[] = []
  override saveJobs(jobs: readonly JobRecord[]): Promise<void> {
    if (this.first !== undefined) return super.saveJobs(jobs)
    return new Promise<void>((resolve, reject) => {
      this.first = { resolve: () => void super.saveJobs(jobs).then(resolve, reject), reject }
      for (const w of this.waiters.splice(0)) w()
    })
  }
  async firstSave(): Promise<NonNullable<GatedStore['first']>> {
    while (this.first === undefined) await new Promise<void>((r) => this.waiters.push(r))
    return this.first
  }
}

function dropNode(d: Distributor, name: string): void {
  const session = (d as unknown as { pool: { get(n: string): { connection: { socket: { destroy(): void } } } } }).pool.get(name)
  session.connection.socket.destroy()
}

it('a job re-sent while its first save is still running is not accepted until that save succeeds', async () => {
  const d = await startDistributor(res)
  const store = new GatedStore()
  await startNode(res, d, { name: 'n1', storage: store as never, reconnectMinMs: 10, reconnectMaxMs: 20 })

  const j1 = d.enqueue('echo', { n: 1 })
  const save = await store.firstSave()

  // The link drops while j1 is being saved; the distributor puts j1 back and, once the node
  // is back, sends it again. The node knows j1 (still being saved): its answer must wait.
  const accepted: string[] = []
  d.on('job:accepted', (e) => accepted.push(e.id))
  const resent = d.waitFor('job:dispatch', (e) => e.id === j1.id)
  dropNode(d, 'n1')
  await resent
  await new Promise((r) => setImmediate(r))
  expect(accepted).toEqual([])

  // The first save fails: the node forgets j1 and must say so, so that it is sent again
  // once the node's store is back.
  save.reject(new Error('store down'))
  const outcome = await Promise.race([
    j1.done.then(() => 'done', () => 'failed'),
    new Promise((r) => setTimeout(() => r('never settled'), 4000)),
  ])
  expect(outcome).toBe('done')
}, 10_000)
