import { describe, expect, it } from 'vitest'
import { JobStats } from '../../src/distributor/job-stats.js'
import { Limits } from '../../src/distributor/limits.js'
import { PendingQueue, routeKey, type Route } from '../../src/distributor/pending-queue.js'
import { pendingSeconds, type TrackedJob } from '../../src/distributor/tracked-job.js'

const NOW = Date.now()

function newQueue(stats = new JobStats()): PendingQueue {
  return new PendingQueue(stats, new Limits({ wake: () => {}, wakeAt: () => {}, cancelTimer: () => {} }))
}

/** The route of `key`, where no name is limited: a plain FIFO. */
function plain(queue: PendingQueue, key: string): Route | undefined {
  return queue.routes.get(key) as Route | undefined
}

let seq = 0
function job(name: string, node?: string, priority?: number): TrackedJob {
  const n = seq++
  return {
    id: `j${n}`,
    name,
    seq: n,
    state: 'pending',
    routeKey: routeKey(name, node, undefined),
    opts: { node, priority },
  } as unknown as TrackedJob
}

/** Takes every waiting job of the route for `key`, in order, as a dispatch pass would. */
function takeAll(queue: PendingQueue, key: string): string[] {
  const route = plain(queue, key)
  const ids: string[] = []
  for (let j = route?.shift(); j !== undefined; j = route?.shift()) {
    if (route !== undefined) queue.takenFrom(route)
    ids.push(j.id)
  }
  if (route !== undefined) queue.dropEmpty(route)
  return ids
}

describe('PendingQueue', () => {
  it('peek shows the next waiting job without taking it, past cancelled ones', () => {
    const queue = newQueue()
    const [a, b, c] = [job('peek'), job('peek'), job('peek')]
    for (const j of [a, b, c]) queue.push(j, NOW)
    const route = plain(queue, 'peek')
    a.state = 'cancelled'
    queue.taken(a)
    expect(route?.peek()).toBe(b)
    expect(route?.peek()).toBe(b)
    expect(route?.length).toBe(2)
    expect(route?.shift()).toBe(b)
    expect(route?.peek()).toBe(c)
    if (route !== undefined) queue.takenFrom(route)
    expect(takeAll(queue, 'peek')).toEqual([c.id])
    expect(route?.peek()).toBeUndefined()
  })

  it('keeps FIFO order per route, puts requeued jobs first in enqueue order, and skips cancelled ones', () => {
    const queue = newQueue()
    const [a, b, c, d] = [job('send'), job('send'), job('send'), job('send')]
    for (const j of [a, b, c, d]) queue.push(j, NOW)
    const route = plain(queue, 'send')
    expect(route?.shift()).toBe(a)
    expect(route?.shift()).toBe(b)
    if (route !== undefined) queue.takenFrom(route)
    if (route !== undefined) queue.takenFrom(route)
    // b then a come back (as a dropped node returns them, in any order); c is cancelled.
    queue.requeue([b, a])
    c.state = 'cancelled'
    queue.taken(c)
    expect(queue.size).toBe(3)
    expect(takeAll(queue, 'send')).toEqual([a.id, b.id, d.id])
    expect(queue.size).toBe(0)
  })

  it('serves higher priorities first, each in order, and requeued jobs keep their priority', () => {
    const queue = newQueue()
    const plainJobs = [job('prio'), job('prio'), job('prio')]
    const low = job('prio', undefined, -5)
    const high = [job('prio', undefined, 10), job('prio', undefined, 10)]
    const mid = job('prio', undefined, 3)
    for (const j of [...plainJobs, low, ...high, mid]) queue.push(j, NOW)
    const route = plain(queue, 'prio')
    expect(route?.length).toBe(7)
    expect(route?.page(1, 3)).toMatchObject({ jobs: [high[1], mid, plainJobs[0]], total: 7 })
    const first = route?.shift() as TrackedJob
    const second = route?.shift() as TrackedJob
    expect([first, second]).toEqual(high)
    if (route !== undefined) for (let i = 0; i < 2; i++) queue.takenFrom(route)
    // Back from a lost node: ahead of the plain jobs and of the later `mid`.
    queue.requeue([second, first])
    expect(takeAll(queue, 'prio')).toEqual([...high, mid, ...plainJobs, low].map((j) => j.id))
  })

  it('keeps a drained route for the next job, in order, at one job in flight', () => {
    const queue = newQueue()
    const taken: string[] = []
    const sent: string[] = []
    for (let i = 0; i < 3_000; i++) {
      const j = job('ping')
      sent.push(j.id)
      queue.push(j, NOW)
      const route = plain(queue, 'ping')
      taken.push(...takeAll(queue, 'ping'))
      // The same route object serves every job: nothing is made and dropped per job.
      expect(plain(queue, 'ping')).toBe(route)
    }
    expect(taken).toEqual(sent)
    expect(queue.size).toBe(0)
  })

  it('drops empty routes once there are many, so a pass does not walk them all', () => {
    const queue = newQueue()
    const nodes = Array.from({ length: 200 }, (_, i) => `node-${i}`)
    for (const node of nodes) queue.push(job('pinned', node), NOW)
    expect(queue.routes.size).toBe(200)
    for (const node of nodes) expect(takeAll(queue, routeKey('pinned', node, undefined))).toHaveLength(1)
    expect(queue.size).toBe(0)
    // Emptied one by one, they go until few are left; those few stay for reuse.
    expect(queue.routes.size).toBeLessThanOrEqual(64)
    expect(queue.routes.size).toBeGreaterThan(0)
    for (const route of queue.routes.values()) expect(route.length).toBe(0)
  })

  it('counts pending jobs per name, whatever route they wait on', () => {
    const stats = new JobStats()
    const queue = newQueue(stats)
    const [a, b, c] = [job('count'), job('count', 'node-1'), job('other')]
    for (const j of [a, b, c]) queue.push(j, NOW)
    expect(stats.of('count').pending).toBe(2)
    expect(stats.of('other').pending).toBe(1)
    const route = plain(queue, 'count')
    expect(route?.shift()).toBe(a)
    if (route !== undefined) queue.takenFrom(route)
    b.state = 'cancelled'
    queue.taken(b)
    expect(stats.of('count').pending).toBe(0)
    queue.requeue([a])
    expect(stats.of('count').pending).toBe(1)
    queue.clear()
    expect([...stats.values()].map((s) => s.pending)).toEqual([0, 0])
  })

  it('reports per name when the job at the head of each route entered the queue, the oldest of them', () => {
    const queue = newQueue()
    const [a, b, c] = [job('age'), job('age'), job('age', 'node-1')]
    queue.push(a, NOW - 30_000)
    queue.push(b, NOW - 60_000)
    queue.push(c, NOW - 10_000)
    // The head of route 'age' is a (30 s), of the pinned route c (10 s): b waits behind a.
    const oldest = queue.oldestHeads()
    expect(pendingSeconds(oldest.get('age') as number, NOW)).toBeCloseTo(30, 0)
    // A job put back after its node was lost waits from then on: the pinned route's head is older.
    const route = plain(queue, 'age')
    route?.shift()
    if (route !== undefined) queue.takenFrom(route)
    queue.requeue([a])
    expect(a.pendingSince).toBeGreaterThan(c.pendingSince)
    expect(queue.oldestHeads().get('age')).toBe(c.pendingSince)
  })

  it('pages a route in dispatch order, the jobs set aside after it, leaving out cancelled ones', () => {
    const queue = newQueue()
    const jobs = Array.from({ length: 10 }, () => job('page'))
    for (const j of jobs) queue.push(j, NOW)
    const route = plain(queue, 'page')
    if (route === undefined) throw new Error('no route')
    const aside = [job('page'), job('page')]
    for (const j of aside) queue.setAside(j, route)
    ;(jobs[3] as TrackedJob).state = 'cancelled'

    expect(route.page(0, 4).jobs.map((j) => j.id)).toEqual([0, 1, 2].map((i) => jobs[i]?.id))
    expect(route.page(0, 4).total).toBe(12)
    expect(route.page(8, 10).jobs.map((j) => j.id)).toEqual([jobs[8]?.id, jobs[9]?.id, aside[0]?.id, aside[1]?.id])
    expect(route.page(11, 10).jobs.map((j) => j.id)).toEqual([aside[1]?.id])
    expect(route.page(12, 10).jobs).toEqual([])
  })
})
