import { afterEach, expect, it } from 'vitest'
import { CancelJob } from '../../src/errors.js'
import { JobRegistry } from '../../src/node/registry.js'
import { Resources, startDistributor, startNode } from '../helpers/cluster.js'
import { GatedStore } from '../helpers/gated-stores.js'
import { dropNode } from '../helpers/link-drops.js'

const res = new Resources()
afterEach(() => res.releaseAll())

it('a durable node whose accepted was lost runs a second copy of a periodic job: once it reports, that copy is cancelled', async () => {
  const d = await startDistributor(res)
  const store = new GatedStore(1)
  const a = await startNode(res, d, { name: 'A', storage: store, reconnectMinMs: 10, reconnectMaxMs: 20 })
  const b = await startNode(res, d, { name: 'B' })
  const h = d.enqueue('echo', {}, { period: 0.05, node: 'A' })
  const save = await store.nthSave(1)
  const onB = d.waitFor('job:accepted', (e) => e.id === h.id && e.node === 'B')
  dropNode(d, 'A')
  await onB
  // Stored on A after the drop: A owns a copy the distributor does not know of, and runs it.
  const stopped = a.waitFor('job:cancelled', (e) => e.id === h.id)
  save.resolve()
  await stopped
  expect(a.jobCount).toBe(0)
  expect(await h.cancel()).toBe(true)
  expect(b.jobCount).toBe(0)
}, 10_000)

it('a memory node given back a job whose attempt still runs after a drop lets that attempt finish it, once', async () => {
  const d = await startDistributor(res)
  let calls = 0
  let finish = (): void => {}
  const registry = new JobRegistry()
  registry.define('held', async () => {
    calls++
    await new Promise<void>((resolve) => (finish = resolve))
  })
  const node = await startNode(res, d, { name: 'm1', registry, reconnectMinMs: 10, reconnectMaxMs: 20 })
  const h = d.enqueue('held', {})
  await node.waitFor('job:start', (e) => e.id === h.id)
  // Sent again once the node is back: it still runs the first attempt, and takes the job
  // as its own again instead of starting a second one beside it.
  const back = d.waitFor('job:accepted', (e) => e.id === h.id)
  dropNode(d, 'm1')
  await back
  finish()
  await h.done
  expect(calls).toBe(1)
  expect(node.runningCount).toBe(0)
  expect(node.jobCount).toBe(0)
}, 10_000)

it("a second copy's stale final result ends nothing: the holder's schedule goes on", async () => {
  const d = await startDistributor(res)
  // A's copy ends its schedule at its first run (CancelJob); B runs the job as usual.
  const ra = new JobRegistry()
  ra.define('tick', () => {
    throw new CancelJob()
  })
  const rb = new JobRegistry()
  rb.define('tick', (args, ctx) => {
    args['run'] = ctx.run
  })
  for (const registry of [ra, rb]) registry.define('ping', () => {})
  const store = new GatedStore(1)
  const a = await startNode(res, d, { name: 'A', registry: ra, storage: store, reconnectMinMs: 10, reconnectMaxMs: 20 })
  const b = await startNode(res, d, { name: 'B', registry: rb })
  const runs: number[] = []
  let onRuns: { count: number; resolve: () => void } | undefined
  const runsReach = (count: number): Promise<void> => new Promise((resolve) => (onRuns = { count, resolve }))
  const h = d.enqueue('tick', {}, { period: 0.05, node: 'A' }, (args) => {
    runs.push(args['run'] as number)
    if (onRuns !== undefined && runs.length >= onRuns.count) onRuns.resolve()
  })
  const save = await store.nthSave(1)
  const onB = d.waitFor('job:accepted', (e) => e.id === h.id && e.node === 'B')
  const aBack = d.waitFor('node:connect', (e) => e.node === 'A')
  dropNode(d, 'A')
  await onB
  await Promise.all([runsReach(3), aBack])
  let bCancelled = 0
  b.on('job:cancelled', (e) => e.id === h.id && bCancelled++)
  // A stored its copy after all: it runs its run 1 (stale: B reported runs 1 to 3) and ends.
  const aDone = a.waitFor('job:complete', (e) => e.id === h.id)
  save.resolve()
  await aDone
  // A later job's result from A comes after that one's on the same link: it was handled.
  await d.enqueue('ping', {}, { node: 'A' }).done
  const further = runs.length + 2
  await runsReach(further)
  expect(bCancelled).toBe(0)
}, 10_000)

it("the holder's own final result still ends the job when a second copy reported that run first", async () => {
  const d = await startDistributor(res)
  // A (a second copy: its accepted was lost) succeeds at once; B, the holder, ends the
  // schedule in the same run (CancelJob: a final result), once the test lets it.
  let letB = (): void => {}
  const bMayEnd = new Promise<void>((resolve) => (letB = resolve))
  const ra = new JobRegistry()
  ra.define('tick', (args, ctx) => {
    args['run'] = ctx.run
  })
  const rb = new JobRegistry()
  rb.define('tick', async () => {
    await bMayEnd
    throw new CancelJob()
  })
  for (const registry of [ra, rb]) registry.define('ping', () => {})
  const store = new GatedStore(1)
  const a = await startNode(res, d, { name: 'A', registry: ra, storage: store, reconnectMinMs: 10, reconnectMaxMs: 20 })
  const b = await startNode(res, d, { name: 'B', registry: rb })
  let delivered = 0
  const h = d.enqueue('tick', {}, { period: 60, after: 0.3, node: 'A' }, () => void delivered++)
  const save = await store.nthSave(1)
  const onB = d.waitFor('job:accepted', (e) => e.id === h.id && e.node === 'B')
  const aBack = d.waitFor('node:connect', (e) => e.node === 'A')
  dropNode(d, 'A')
  await Promise.all([onB, aBack])
  const bStarted = b.waitFor('job:start', (e) => e.id === h.id)
  const aRan = a.waitFor('job:complete', (e) => e.id === h.id)
  save.resolve()
  await Promise.all([aRan, bStarted])
  // A later result from A comes after that run's on the same link: it was handled.
  await d.enqueue('ping', {}, { node: 'A' }).done
  letB()
  expect(await h.done).toEqual({})
  expect(d.activeCount).toBe(0)
  // Run 1 reached the closure once (A's report), not again with B's.
  expect(delivered).toBe(1)
}, 10_000)
