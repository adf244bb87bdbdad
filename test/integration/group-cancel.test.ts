/**
 * Cancel from any member of a distributor group: `cancel(id)` on a member that does not hold
 * the job reaches the member that does (over the group's channel in Redis), or the durable
 * node that holds it when its member is gone.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { Distributor } from '../../src/distributor/distributor.js'
import { allAccepted, Resources, startDistributor, startNode } from '../helpers/cluster.js'
import { unique, useRedis } from '../helpers/shared-redis.js'
import { within } from '../helpers/within.js'

const res = new Resources()
afterEach(() => res.releaseAll())

const redis = useRedis()

function member(group: string, name: string): Promise<Distributor> {
  return startDistributor(res, { group, name, storage: redis.url, leaseMs: 1000 })
}

async function members(group: string): Promise<[Distributor, Distributor]> {
  return [await member(group, 'a'), await member(group, 'b')]
}

describe('cancel from any member of a group', () => {
  it('a job waiting at one member for a node is cancelled from another: true there, done resolves here, no closure runs', async () => {
    const [a, b] = await members(unique('cancel'))
    let closures = 0
    const handle = a.enqueue(
      'nobody_runs_this',
      { x: 1 },
      {},
      () => void closures++,
      () => void closures++,
    )
    await handle.persisted
    expect(await within(b.cancel(handle.id), 'the cancel from b')).toBe(true)
    expect(await within(handle.done, 'done at a')).toEqual({ x: 1 })
    expect(closures).toBe(0)
    expect(a.activeCount).toBe(0)
    // Asked again, from either: nobody holds it any more.
    expect(await b.cancel(handle.id)).toBe(false)
  })

  it('a delayed job a durable node accepted from one member is cancelled from another', async () => {
    const [a, b] = await members(unique('cancel'))
    const node = await startNode(res, a, { name: unique('durable'), storage: redis.url })
    const cancelledOnNode = node.waitFor('job:cancelled')
    const handle = a.enqueue('noop', {}, { after: 3600 })
    // Accepted by the node, not only spooled: a job still waiting at a would be cancelled
    // there, and the node would have nothing to cancel.
    await within(allAccepted(a, [handle]), 'the node to accept it')
    expect(await within(b.cancel(handle.id), 'the cancel from b')).toBe(true)
    expect((await within(cancelledOnNode, 'the node to cancel it')).id).toBe(handle.id)
    await within(handle.done, 'done at a')
  })

  it('a durable node holding the job of a member that is gone answers the member that asked', async () => {
    const group = unique('cancel')
    const a = await member(group, 'a')
    const durable = unique('durable')
    const node = await startNode(res, a, { name: durable, storage: redis.url })
    const handle = a.enqueue('noop', {}, { after: 3600 })
    await handle.persisted
    // a goes (its name handed over, nobody adopts it within this test); b knows nothing of the job.
    await a.close()
    const b = await member(group, 'b')
    const connected = b.waitFor('node:connect', (e) => e.node === durable)
    node.close({ force: true }).catch(() => {})
    const again = await startNode(res, b, { name: durable, storage: redis.url })
    await connected
    const cancelledOnNode = again.waitFor('job:cancelled')
    expect(await within(b.cancel(handle.id), 'the cancel from b')).toBe(true)
    expect((await within(cancelledOnNode, 'the node to cancel it')).id).toBe(handle.id)
  })

  it('an id nobody holds: false once the group had its chance to answer', async () => {
    const [, b] = await members(unique('cancel'))
    expect(await within(b.cancel('x'.repeat(21)), 'the cancel of an unknown id')).toBe(false)
  })
})
