import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Distributor } from '../../src/distributor/distributor.js'
import { MessageType } from '../../src/protocol/messages.js'
import { Resources, startDistributor, startNode } from '../helpers/cluster.js'
import { connectPeer } from '../helpers/peers.js'
import { parsePromText, sampleValue } from '../helpers/prom-text.js'
import { within } from '../helpers/within.js'

const res = new Resources()
afterEach(() => res.releaseAll())

async function tempFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'jr-limits-'))
  res.add(dir, (d) => rm(d, { recursive: true, force: true }))
  return join(dir, 'spans')
}

/** The most runs of `key` under way at once, from the `span` job's start/end lines. */
function peakOf(lines: string[], key: string): number {
  let running = 0
  let peak = 0
  for (const line of lines) {
    if (line === `start ${key}`) peak = Math.max(peak, ++running)
    else if (line === `end ${key}`) running--
  }
  return peak
}

async function limitedNow(d: Distributor, name: string): Promise<number | undefined> {
  return sampleValue(parsePromText(await d.metrics.metrics()), 'jr_jobs_limited', { name })
}

describe('concurrency limits', () => {
  it('200 jobs of one key with concurrency 2 over 3 nodes never run more than 2 at once; another key runs meanwhile', async () => {
    const file = await tempFile()
    const d = await startDistributor(res, { limits: { span: { concurrency: 2, perKey: true } } })
    for (const name of ['n1', 'n2', 'n3']) await startNode(res, d, { name, concurrency: 4 })
    const a = Array.from({ length: 200 }, () => d.enqueue('span', { file, key: 'a', ms: 2 }, { limitKey: 'a' }))
    const b = Array.from({ length: 20 }, () => d.enqueue('span', { file, key: 'b', ms: 2 }, { limitKey: 'b' }))
    await within(Promise.all([...a, ...b].map((h) => h.done)), 'every job')
    const lines = (await readFile(file, 'utf8')).trim().split('\n')
    expect(lines).toHaveLength(440)
    expect(peakOf(lines, 'a')).toBe(2)
    expect(peakOf(lines, 'b')).toBe(2)
    // b was not held behind a's backlog: all of it ended before a's last job started.
    expect(lines.lastIndexOf('end b')).toBeLessThan(lines.lastIndexOf('start a'))
  })

  it("round-robin: key B's 10 jobs enqueued after key A's 10,000 all finish before A's 500th", async () => {
    const d = await startDistributor(res, { limits: { noop: { concurrency: 50, perKey: true } } })
    await startNode(res, d, { name: 'w1' })
    let aFinished = 0
    let aFinishedWhenBDone = -1
    let bLeft = 10
    const a = Array.from({ length: 10_000 }, () =>
      d.enqueue('noop', {}, { limitKey: 'A' }, () => {
        aFinished++
      }),
    )
    const b = Array.from({ length: 10 }, () =>
      d.enqueue('noop', {}, { limitKey: 'B' }, () => {
        if (--bLeft === 0) aFinishedWhenBDone = aFinished
      }),
    )
    await within(Promise.all([...a, ...b].map((h) => h.done)), 'every job', 60_000)
    expect(bLeft).toBe(0)
    expect(aFinishedWhenBDone).toBeGreaterThanOrEqual(0)
    expect(aFinishedWhenBDone).toBeLessThan(499)
  })

  it('a job held by its limit waits (seen as job:limited and in the metrics); raising the limit at run time lets more through', async () => {
    const d = await startDistributor(res, { limits: { echo: { concurrency: 1 } } })
    const peer = await connectPeer(res, d.port)
    await peer.handshake({ node: 'fake', jobs: ['echo'], concurrency: 10, window: 10 })
    const limited = d.waitFor('job:limited')
    const jobs = Array.from({ length: 3 }, (_, i) => d.enqueue('echo', { i }, { limitKey: `k${i}` }))
    const first = await peer.nextOfType(MessageType.DISPATCH)
    expect(first.jobs.map((j) => j.id)).toEqual([jobs[0]?.id])
    peer.send({ type: MessageType.ACCEPTED, seq: first.seq })
    expect(await limited).toEqual({ id: jobs[1]?.id, name: 'echo', key: 'k1' })
    expect(d.pendingCount).toBe(2)
    expect(await limitedNow(d, 'echo')).toBe(2)

    d.limit('echo', { concurrency: 3 })
    const second = await peer.nextOfType(MessageType.DISPATCH)
    expect(second.jobs.map((j) => j.id)).toEqual([jobs[1]?.id, jobs[2]?.id])
    expect(await limitedNow(d, 'echo')).toBe(0)
    expect(d.limitsByName).toEqual({ echo: { concurrency: 3, perKey: false } })
  })

  it('removing a limit lets its jobs go as unlimited ones', async () => {
    const d = await startDistributor(res)
    d.limit('echo', { concurrency: 1, perKey: true })
    const peer = await connectPeer(res, d.port)
    await peer.handshake({ node: 'fake', jobs: ['echo'], concurrency: 10, window: 10 })
    const jobs = Array.from({ length: 3 }, (_, i) => d.enqueue('echo', { i }, { limitKey: 'same' }))
    const first = await peer.nextOfType(MessageType.DISPATCH)
    expect(first.jobs.map((j) => j.id)).toEqual([jobs[0]?.id])
    peer.send({ type: MessageType.ACCEPTED, seq: first.seq })
    d.limit('echo', null)
    const second = await peer.nextOfType(MessageType.DISPATCH)
    expect(second.jobs.map((j) => j.id)).toEqual([jobs[1]?.id, jobs[2]?.id])
    expect(d.limitsByName).toEqual({})
  })

  it('a lost memory node gives its slots back: its job and the ones held behind it run elsewhere', async () => {
    const d = await startDistributor(res, { limits: { echo: { concurrency: 1 } } })
    const peer = await connectPeer(res, d.port)
    await peer.handshake({ node: 'fake', jobs: ['echo'], concurrency: 10, window: 10 })
    const jobs = Array.from({ length: 3 }, (_, i) => d.enqueue('echo', { i }))
    const first = await peer.nextOfType(MessageType.DISPATCH)
    peer.send({ type: MessageType.ACCEPTED, seq: first.seq })
    await d.waitFor('job:accepted', (e) => e.id === jobs[0]?.id)
    // A real node with room connects: the limit still holds the others back.
    const held = d.waitFor('job:limited')
    await startNode(res, d, { name: 'real' })
    await held
    expect(d.pendingCount).toBe(2)

    const requeued = d.waitFor('job:requeue', (e) => e.id === jobs[0]?.id)
    await peer.destroy()
    await requeued
    const results = await within(Promise.all(jobs.map((h) => h.done)), 'every job on the real node')
    expect(results.map((r) => r['result'])).toEqual(['Yay!', 'Yay!', 'Yay!'])
  })

  it('refuses bad limits and keys, naming the field, and periodic jobs of a limited name', async () => {
    expect(() => new Distributor({ limits: { export: { concurrency: 0 } } })).toThrow(/'limits.export.concurrency'/)
    expect(() => new Distributor({ limits: { export: { concurrency: 2, perkey: true } as never } })).toThrow(
      /unknown 'limits.export' option 'perkey'/,
    )
    const d = await startDistributor(res)
    expect(() => d.limit('export', { concurrency: 'two' as never })).toThrow(/'limit.concurrency' must be an integer/)
    expect(() => d.limit('', { concurrency: 2 })).toThrow(/'name'/)
    expect(() => d.enqueue('export', {}, { limitKey: '' })).toThrow(/'limitKey'/)
    d.limit('export', { concurrency: 2 })
    expect(() => d.enqueue('export', {}, { period: 60 })).toThrow(/has a limit/)
    d.enqueue('tick', {}, { period: 60 })
    expect(() => d.limit('tick', { concurrency: 1 })).toThrow(/periodic or cron job/)
    expect(d.limitsByName).toEqual({ export: { concurrency: 2, perKey: false } })
  })
})

describe('priority', () => {
  it('a high-priority job enqueued behind 5,000 pending runs before them', async () => {
    const d = await startDistributor(res)
    const finished: string[] = []
    const plain = Array.from({ length: 5_000 }, () => d.enqueue('noop', {}, {}, () => void finished.push('plain')))
    const low = d.enqueue('noop', {}, { priority: -1 }, () => void finished.push('low'))
    const high = d.enqueue('noop', {}, { priority: 5 }, () => void finished.push('high'))
    expect(d.pendingCount).toBe(5_002)
    // One slot: the node runs the jobs one by one, in the order they are dispatched.
    await startNode(res, d, { name: 'w1', concurrency: 1 })
    await within(Promise.all([...plain, low, high].map((h) => h.done)), 'every job', 60_000)
    expect(finished[0]).toBe('high')
    expect(finished.at(-1)).toBe('low')
    expect(finished.filter((f) => f === 'plain')).toHaveLength(5_000)
  })
})

describe('rate limits', () => {
  it('300 jobs at { max: 50, per: 1 } over 2 nodes: no window of 1 s holds more than 50 dispatches', async () => {
    const d = await startDistributor(res, { limits: { noop: { rate: { max: 50, per: 1 } } } })
    for (const name of ['n1', 'n2']) await startNode(res, d, { name, concurrency: 100 })
    const times: number[] = []
    d.on('job:dispatch', (e) => void times.push(e.at))
    const jobs = Array.from({ length: 300 }, () => d.enqueue('noop', {}))
    await within(Promise.all(jobs.map((h) => h.done)), 'every job', 30_000)
    expect(times).toHaveLength(300)
    for (let i = 0; i + 50 < times.length; i++)
      expect((times[i + 50] as number) - (times[i] as number)).toBeGreaterThanOrEqual(1000)
  })

  it('jobs held by a rate wait as limited ones, per key; a rate raised at run time lets them go', async () => {
    const d = await startDistributor(res)
    d.limit('echo', { rate: { max: 2, per: 60 }, perKey: true })
    const peer = await connectPeer(res, d.port)
    await peer.handshake({ node: 'fake', jobs: ['echo'], concurrency: 10, window: 10 })
    const limited = d.waitFor('job:limited')
    const a = Array.from({ length: 4 }, (_, i) => d.enqueue('echo', { i }, { limitKey: 'a' }))
    const b = d.enqueue('echo', {}, { limitKey: 'b' })
    const first = await peer.nextOfType(MessageType.DISPATCH)
    expect(first.jobs.map((j) => j.id)).toEqual([a[0]?.id, b.id, a[1]?.id])
    peer.send({ type: MessageType.ACCEPTED, seq: first.seq })
    expect(await limited).toEqual({ id: a[2]?.id, name: 'echo', key: 'a' })
    expect(await limitedNow(d, 'echo')).toBe(2)

    d.limit('echo', { rate: { max: 10, per: 60 }, perKey: true })
    const second = await peer.nextOfType(MessageType.DISPATCH)
    expect(second.jobs.map((j) => j.id)).toEqual([a[2]?.id, a[3]?.id])
    expect(await limitedNow(d, 'echo')).toBe(0)
    expect(d.limitsByName).toEqual({ echo: { perKey: true, rate: { max: 10, per: 60 } } })
  })
})
