import { describe, expect, it } from 'vitest'
import { PendingQueue, routeKey } from '../../src/distributor/pending-queue.js'
import type { TrackedJob } from '../../src/distributor/tracked-job.js'

let seq = 0
function job(name: string, node?: string): TrackedJob {
  const n = seq++
  return {
    id: `j${n}`,
    name,
    seq: n,
    state: 'pending',
    routeKey: routeKey(name, node, undefined),
    opts: { node },
  } as unknown as TrackedJob
}

/** Takes every waiting job of the route for `key`, in order, as a dispatch pass would. */
function takeAll(queue: PendingQueue, key: string): string[] {
  const route = queue.routes.get(key)
  const ids: string[] = []
  for (let j = route?.shift(); j !== undefined; j = route?.shift()) {
    queue.taken()
    ids.push(j.id)
  }
  if (route !== undefined) queue.dropEmpty(route)
  return ids
}

describe('PendingQueue', () => {
  it('peek shows the next waiting job without taking it, past cancelled ones', () => {
    const queue = new PendingQueue()
    const [a, b, c] = [job('peek'), job('peek'), job('peek')]
    for (const j of [a, b, c]) queue.push(j)
    const route = queue.routes.get('peek')
    a.state = 'cancelled'
    queue.taken()
    expect(route?.peek()).toBe(b)
    expect(route?.peek()).toBe(b)
    expect(route?.length).toBe(2)
    expect(route?.shift()).toBe(b)
    expect(route?.peek()).toBe(c)
    queue.taken()
    expect(takeAll(queue, 'peek')).toEqual([c.id])
    expect(route?.peek()).toBeUndefined()
  })

  it('keeps FIFO order per route, puts requeued jobs first in enqueue order, and skips cancelled ones', () => {
    const queue = new PendingQueue()
    const [a, b, c, d] = [job('send'), job('send'), job('send'), job('send')]
    for (const j of [a, b, c, d]) queue.push(j)
    const route = queue.routes.get('send')
    expect(route?.shift()).toBe(a)
    expect(route?.shift()).toBe(b)
    queue.taken()
    queue.taken()
    // b then a come back (as a dropped node returns them, in any order); c is cancelled.
    queue.requeue([b, a])
    c.state = 'cancelled'
    queue.taken()
    expect(queue.size).toBe(3)
    expect(takeAll(queue, 'send')).toEqual([a.id, b.id, d.id])
    expect(queue.size).toBe(0)
  })

  it('keeps a drained route for the next job, in order, at one job in flight', () => {
    const queue = new PendingQueue()
    const taken: string[] = []
    const sent: string[] = []
    for (let i = 0; i < 3_000; i++) {
      const j = job('ping')
      sent.push(j.id)
      queue.push(j)
      const route = queue.routes.get('ping')
      taken.push(...takeAll(queue, 'ping'))
      // The same route object serves every job: nothing is made and dropped per job.
      expect(queue.routes.get('ping')).toBe(route)
    }
    expect(taken).toEqual(sent)
    expect(queue.size).toBe(0)
  })

  it('drops empty routes once there are many, so a pass does not walk them all', () => {
    const queue = new PendingQueue()
    const nodes = Array.from({ length: 200 }, (_, i) => `node-${i}`)
    for (const node of nodes) queue.push(job('pinned', node))
    expect(queue.routes.size).toBe(200)
    for (const node of nodes) expect(takeAll(queue, routeKey('pinned', node, undefined))).toHaveLength(1)
    expect(queue.size).toBe(0)
    // Emptied one by one, they go until few are left; those few stay for reuse.
    expect(queue.routes.size).toBeLessThanOrEqual(64)
    expect(queue.routes.size).toBeGreaterThan(0)
    for (const route of queue.routes.values()) expect(route.length).toBe(0)
  })
})
