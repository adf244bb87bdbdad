import { afterEach, expect, it } from 'vitest'
import type { Distributor } from '../../src/distributor/distributor.js'
import { MessageType } from '../../src/protocol/messages.js'
import { Resources, startDistributor } from '../helpers/cluster.js'
import { FakePeer } from '../helpers/fake-peer.js'

const res = new Resources()
afterEach(() => res.releaseAll())

/** A node that only handshakes (and answers nothing after), with this frame limit. */
async function fakeNode(d: Distributor, node: string, jobs: string[], window: number, maxFrameSize: number): Promise<FakePeer> {
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
