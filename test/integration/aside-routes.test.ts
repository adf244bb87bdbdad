import { afterEach, expect, it } from 'vitest'
import type { Distributor } from '../../src/distributor/distributor.js'
import { MessageType } from '../../src/protocol/messages.js'
import { JobRegistry } from '../../src/node/registry.js'
import { Resources, startDistributor, startNode } from '../helpers/cluster.js'
import { FakePeer } from '../helpers/fake-peer.js'
import { FlakyStore } from '../helpers/gated-stores.js'

const res = new Resources()
afterEach(() => res.releaseAll())

/** A node that only handshakes (and answers nothing after), with this frame limit. */
async function fakeNode(
  d: Distributor,
  node: string,
  jobs: string[],
  window: number,
  maxFrameSize: number,
): Promise<FakePeer> {
  const peer = res.add(await FakePeer.connect(d.port), (p) => p.destroy())
  const connected = d.waitFor('node:connect', (e) => e.node === node)
  await peer.handshake({ node, jobs, concurrency: window, window, maxFrameSize })
  await connected
  return peer
}

/** 'big' (1 MiB) is full with a job it never finishes, 'small' (64 KiB) has room for one. */
async function bigBusySmallFree(): Promise<{ d: Distributor; big: FakePeer; small: FakePeer }> {
  const d = await startDistributor(res)
  const big = await fakeNode(d, 'big', ['w', 'hold'], 1, 1024 * 1024)
  const small = await fakeNode(d, 'small', ['w'], 1, 64 * 1024)
  d.enqueue('hold', {})
  await big.nextOfType(MessageType.DISPATCH)
  return { d, big, small }
}

it('a set-aside job cancelled by the closure of one that fails beside it in the same pass is not sent', async () => {
  const { d, small } = await bigBusySmallFree()
  let j2 = ''
  let cancelled: Promise<boolean> | undefined
  const j1 = d.enqueue('w', { pad: 'x'.repeat(500_000) }, {}, undefined, () => {
    cancelled = d.cancel(j2)
  })
  const second = d.enqueue('w', { pad: 'y'.repeat(100_000) })
  j2 = second.id
  // The small job behind them goes to 'small': a pass has set both aside.
  const j3 = d.enqueue('w', {})
  expect((await small.nextOfType(MessageType.DISPATCH)).jobs.map((j) => j.id)).toEqual([j3.id])
  expect(d.pendingCount).toBe(2)
  // 'big' connects again (the new connection replaces the old) with a 256 KiB limit and
  // room: j1 fails (too large for every node now), and its error closure cancels j2,
  // which would fit.
  const big2 = await fakeNode(d, 'big', ['w', 'hold'], 10, 256 * 1024)
  await expect(j1.done).rejects.toThrow(/too large/)
  expect(await cancelled).toBe(true)
  // The pass that failed j1 sent the requeued 'hold' job to the new 'big', and j2 not.
  const frame = await big2.nextOfType(MessageType.DISPATCH)
  expect(frame.jobs.map((j) => j.name)).toEqual(['hold'])
  expect(d.pendingCount).toBe(0)
}, 10_000)

it('close() leaves no job counted as pending, set aside or unroutable', async () => {
  const { d, small } = await bigBusySmallFree()
  d.enqueue('w', { pad: 'x'.repeat(500_000) }).done.catch(() => {})
  d.enqueue('nobody-runs-this', {}).done.catch(() => {})
  d.enqueue('w', {})
  await small.nextOfType(MessageType.DISPATCH)
  expect(d.pendingCount).toBe(2)
  await d.close()
  expect(d.activeCount).toBe(0)
  expect(d.pendingCount).toBe(0)
}, 10_000)

it('a job set aside for its size is served before the jobs behind it once a node that takes it has room', async () => {
  const d = await startDistributor(res)
  const releases = new Map<string, () => void>()
  const registry = new JobRegistry()
  registry.define('hold', (args) => new Promise<void>((resolve) => releases.set(String(args['k']), resolve)))
  registry.define('work', () => {})
  const big = await startNode(res, d, { name: 'big', registry, concurrency: 1, window: 1 })
  const small = await startNode(res, d, { name: 'small', registry, concurrency: 1, window: 1, maxFrameSize: 64 * 1024 })
  for (const [k, node] of [
    ['big', big],
    ['small', small],
  ] as const) {
    const held = d.enqueue('hold', { k }, { node: k })
    await node.waitFor('job:start', (e) => e.id === held.id)
  }
  const large = d.enqueue('work', { pad: 'x'.repeat(100_000) })
  const smalls = Array.from({ length: 6 }, (_, i) => d.enqueue('work', { i }))
  const onBig: string[] = []
  d.on('job:accepted', (e) => e.node === 'big' && e.name === 'work' && onBig.push(e.id))
  // 'small' has room again: the large job goes aside, the small ones go on to 'small'.
  releases.get('small')?.()
  await smalls[0]?.done
  releases.get('big')?.()
  await large.done
  expect(onBig[0]).toBe(large.id)
  await Promise.all(smalls.map((h) => h.done))
}, 10_000)

it('a job only a node whose store is down takes, for its size, waits for that node instead of failing', async () => {
  const d = await startDistributor(res)
  const store = new FlakyStore()
  const big = await startNode(res, d, { name: 'big', storage: store })
  await startNode(res, d, { name: 'small', maxFrameSize: 64 * 1024 })
  store.down = true
  const storeDown = big.waitFor('store:down')
  // Refused by 'big' (its store is down), it runs on 'small'.
  const probe = d.enqueue('echo', {}, { node: 'big' })
  await storeDown
  await probe.done
  const large = d.enqueue('echo', { pad: 'x'.repeat(100_000) })
  let settled = false
  large.done.then(
    () => (settled = true),
    () => (settled = true),
  )
  // A job behind it ran: a dispatch pass has seen the large one, and kept it.
  await d.enqueue('echo', {}).done
  expect(settled).toBe(false)
  const storeUp = big.waitFor('store:up')
  store.down = false
  await storeUp
  expect((await large.done)['result']).toBe('Yay!')
}, 10_000)

it('a set-aside job a free node takes is not held behind one waiting for a node whose store is down', async () => {
  const d = await startDistributor(res)
  const registry = new JobRegistry()
  const releases = new Map<string, () => void>()
  registry.define('hold', (args) => new Promise<void>((resolve) => releases.set(String(args['k']), resolve)))
  registry.define('work', () => {})
  const store = new FlakyStore()
  const big = await startNode(res, d, { name: 'big', registry, storage: store })
  const medium = await startNode(res, d, {
    name: 'medium',
    registry,
    concurrency: 1,
    window: 1,
    maxFrameSize: 256 * 1024,
  })
  await startNode(res, d, { name: 'small', registry, maxFrameSize: 64 * 1024 })
  const held = d.enqueue('hold', { k: 'medium' }, { node: 'medium' })
  await medium.waitFor('job:start', (e) => e.id === held.id)
  store.down = true
  const storeDown = big.waitFor('store:down')
  // Refused by 'big' (its store is down), it runs elsewhere.
  await d.enqueue('work', {}, { node: 'big' }).done
  await storeDown
  // Only 'big' takes the first; 'medium' takes the second once it has room.
  const onlyBig = d.enqueue('work', { pad: 'x'.repeat(500_000) })
  const mediumSized = d.enqueue('work', { pad: 'y'.repeat(100_000) })
  // A job behind them ran: a pass has set both aside.
  await d.enqueue('work', {}).done
  releases.get('medium')?.()
  await held.done
  await mediumSized.done
  expect(d.pendingCount).toBe(1)
  const storeUp = big.waitFor('store:up')
  store.down = false
  await storeUp
  await onlyBig.done
  expect(d.pendingCount).toBe(0)
}, 10_000)
