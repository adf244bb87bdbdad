import { afterEach, describe, expect, it } from 'vitest'
import { ErrorCode, JobFailedError } from '../../src/errors.js'
import type { WireFeedback } from '../../src/protocol/messages.js'
import { pack } from '../../src/protocol/msgpack.js'
import { MemoryStore } from '../../src/storage/memory-store.js'
import { FeedbackKind, JobStatus } from '../../src/storage/store.js'
import { Resources, startDistributor } from '../helpers/cluster.js'
import { answers, nodeOnFakeDistributor, welcome, wireJob as job } from '../helpers/node-on-fake-distributor.js'
import { connectPeer } from '../helpers/peers.js'

const res = new Resources()
afterEach(() => res.releaseAll())

describe('feedback from a fake node', () => {
  it('resolves done with the args of a final success feedback, runs onSuccess, and acks it', async () => {
    const d = await startDistributor(res)
    const fake = await connectPeer(res, d)
    await fake.handshake({ node: 'fake', jobs: ['echo'] })

    const successes: unknown[] = []
    const handle = d.enqueue('echo', { n: 1 }, {}, (args) => void successes.push(args))
    const dispatch = await fake.nextOfType('dispatch')
    expect(dispatch.seq).toBe(1)
    expect(dispatch.jobs.map((j) => j.id)).toEqual([handle.id])

    const accepted = d.waitFor('job:accepted', (e) => e.id === handle.id)
    fake.send({ type: 'accepted', seq: dispatch.seq })
    expect(await accepted).toEqual({ id: handle.id, name: 'echo', node: 'fake' })

    const result = { n: 1, result: 'from the fake', nested: { list: [1, 2] } }
    fake.send({
      type: 'feedback',
      seq: 1,
      items: [{ id: handle.id, run: 1, kind: 'success', final: true, cancelled: false, args: pack(result) }],
    })
    await expect(handle.done).resolves.toEqual(result)
    expect(successes).toEqual([result])
    const ack = await fake.nextOfType('feedback-ack')
    expect(ack).toEqual({ type: 'feedback-ack', seq: 1 })
    expect(d.activeCount).toBe(0)
  })

  it('rejects done with JobFailedError on a final error feedback, runs onError, and acks it', async () => {
    const d = await startDistributor(res)
    const fake = await connectPeer(res, d)
    await fake.handshake({ node: 'fake', jobs: ['echo'] })

    const errors: unknown[] = []
    const handle = d.enqueue('echo', { n: 2 }, {}, undefined, (args) => void errors.push(args))
    const dispatch = await fake.nextOfType('dispatch')
    fake.send({ type: 'accepted', seq: dispatch.seq })
    const failure = { n: 2, error: { name: 'Error', message: 'exploded' } }
    fake.send({
      type: 'feedback',
      seq: 1,
      items: [{ id: handle.id, run: 1, kind: 'error', final: true, cancelled: false, args: pack(failure) }],
    })
    const err = await handle.done.then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(JobFailedError)
    expect((err as JobFailedError).code).toBe('ERR_JOB_FAILED')
    expect((err as JobFailedError).args).toEqual(failure)
    expect((err as JobFailedError).message).toContain('exploded')
    expect(errors).toEqual([failure])
    expect(await fake.nextOfType('feedback-ack')).toEqual({ type: 'feedback-ack', seq: 1 })
  })

  it('emits feedback:orphan for feedback about an unknown job, and acks it too', async () => {
    const d = await startDistributor(res)
    const fake = await connectPeer(res, d)
    await fake.handshake({ node: 'fake', jobs: ['echo'] })

    const orphan = d.waitFor('feedback:orphan')
    fake.send({
      type: 'feedback',
      seq: 1,
      items: [{ id: 'no-such-job', run: 2, kind: 'error', final: true, cancelled: false, args: pack({ lost: true }) }],
    })
    expect(await orphan).toEqual({ id: 'no-such-job', run: 2, kind: 'error', node: 'fake', args: { lost: true } })
    expect(await fake.nextOfType('feedback-ack')).toEqual({ type: 'feedback-ack', seq: 1 })
    expect(fake.isOpen).toBe(true)
  })

  it('acks a re-sent feedback for the same job and run, and runs onSuccess only once', async () => {
    const d = await startDistributor(res)
    const fake = await connectPeer(res, d)
    await fake.handshake({ node: 'fake', jobs: ['echo'] })

    let successCalls = 0
    let orphans = 0
    let successEvents = 0
    d.on('feedback:orphan', () => orphans++)
    d.on('job:success', () => successEvents++)
    const handle = d.enqueue('echo', { n: 3 }, {}, () => void successCalls++)
    const dispatch = await fake.nextOfType('dispatch')
    fake.send({ type: 'accepted', seq: dispatch.seq })

    const items = [
      { id: handle.id, run: 1, kind: 'success', final: true, cancelled: false, args: pack({ n: 3, done: true }) },
    ] as const
    fake.send({ type: 'feedback', seq: 1, items: [...items] })
    await expect(handle.done).resolves.toEqual({ n: 3, done: true })
    expect(await fake.nextOfType('feedback-ack')).toEqual({ type: 'feedback-ack', seq: 1 })

    // As a node does when it reconnects before it saw the ack: the same feedback again (in
    // the next frame: this connection's frame numbers go on).
    fake.send({ type: 'feedback', seq: 2, items: [...items] })
    expect(await fake.nextOfType('feedback-ack')).toEqual({ type: 'feedback-ack', seq: 2 })
    expect(successCalls).toBe(1)
    expect(successEvents).toBe(1)
    // A duplicate of a finished job is not an orphan either.
    expect(orphans).toBe(0)
  })

  it('acks a batched feedback by its frame number, and several frames one by one in order', async () => {
    const d = await startDistributor(res)
    const fake = await connectPeer(res, d)
    await fake.handshake({ node: 'fake', jobs: ['echo'], window: 2, concurrency: 2 })

    const a = d.enqueue('echo', { k: 'a' })
    const b = d.enqueue('echo', { k: 'b' })
    const seen = new Set<string>()
    while (seen.size < 2) {
      const dispatch = await fake.nextOfType('dispatch')
      for (const job of dispatch.jobs) seen.add(job.id)
      fake.send({ type: 'accepted', seq: dispatch.seq })
    }
    expect([...seen].sort()).toEqual([a.id, b.id].sort())
    fake.send({
      type: 'feedback',
      seq: 1,
      items: [
        { id: b.id, run: 1, kind: 'success', final: true, cancelled: false, args: pack({ k: 'b', ok: 1 }) },
        { id: 'stray', run: 1, kind: 'success', final: true, cancelled: false, args: pack({}) },
        { id: a.id, run: 1, kind: 'success', final: true, cancelled: false, args: pack({ k: 'a', ok: 1 }) },
      ],
    })
    await expect(Promise.all([a.done, b.done])).resolves.toEqual([
      { k: 'a', ok: 1 },
      { k: 'b', ok: 1 },
    ])
    expect(await fake.nextOfType('feedback-ack')).toEqual({ type: 'feedback-ack', seq: 1 })

    // More frames back to back, orphans or not: one ack each, in the order sent.
    for (const seq of [2, 3, 4]) {
      fake.send({
        type: 'feedback',
        seq,
        items: [{ id: `stray-${seq}`, run: 1, kind: 'success', final: true, cancelled: false, args: pack({}) }],
      })
    }
    const acks = [
      await fake.nextOfType('feedback-ack'),
      await fake.nextOfType('feedback-ack'),
      await fake.nextOfType('feedback-ack'),
    ]
    expect(acks.map((ack) => ack.seq)).toEqual([2, 3, 4])
  })
})

describe('a real node against a fake distributor', () => {
  it('a stored result that does not decode goes out as error feedback saying so, and the frame stays valid', async () => {
    const { peer } = await nodeOnFakeDistributor(res, async (distributor) => {
      const store = new MemoryStore()
      await store.open()
      const result = (jobId: string, args: Buffer) => ({
        jobId,
        run: 1,
        distributor,
        kind: FeedbackKind.SUCCESS,
        final: true,
        cancelled: false,
        args,
      })
      await store.finishRun('corrupt', { status: JobStatus.COMPLETE }, result('corrupt', Buffer.from([0x81])), true)
      await store.finishRun('intact', { status: JobStatus.COMPLETE }, result('intact', pack({ ok: true })), true)
      return store
    })
    const items = new Map<string, WireFeedback>()
    while (items.size < 2) for (const item of (await peer.nextOfType('feedback')).items) items.set(item.id, item)
    expect(items.get('corrupt')).toMatchObject({ kind: 'error', args: { error: { code: ErrorCode.STORE } } })
    expect(items.get('intact')).toMatchObject({ kind: 'success', args: { ok: true } })
  })

  it('keeps feedback until an ack at or above its frame number: a lower one drops nothing, and it comes again after a reconnect', async () => {
    const { node, peer, nextPeer } = await nodeOnFakeDistributor(res)
    const acked: string[] = []
    node.on('feedback:acked', (e) => acked.push(`${e.id}#${e.run}`))

    peer.send({ type: 'dispatch', seq: 1, jobs: [job('now-1', 0)] })
    expect(await peer.next()).toEqual({ type: 'accepted', seq: 1 })
    const first = await peer.nextOfType('feedback')
    expect(first.seq).toBe(1)
    expect(first.items.map((f) => [f.id, f.run, f.kind, f.final])).toEqual([['now-1', 1, 'success', true]])
    // Decoded with the frame: the args map is inline, not a nested binary.
    expect(first.items[0]?.args).toMatchObject({ id: 'now-1', result: 'Yay!' })

    // An ack below the frame's number: nothing is dropped. The FIN comes after it, so the
    // node has read it by the time it redials.
    peer.send({ type: 'feedback-ack', seq: 0 })
    await peer.end()
    const again = await nextPeer()
    await welcome(again)
    const resent = await again.nextOfType('feedback')
    // Numbered afresh on the new connection, and the same results.
    expect(resent.seq).toBe(1)
    expect(resent.items).toEqual(first.items)
    expect(acked).toEqual([])

    // A second job's result goes in the next frame; one ack at that frame's number covers both.
    again.send({ type: 'dispatch', seq: 1, jobs: [job('now-2', 0)] })
    expect(await again.next()).toEqual({ type: 'accepted', seq: 1 })
    const second = await again.nextOfType('feedback')
    expect(second.seq).toBe(2)
    expect(second.items.map((f) => [f.id, f.run])).toEqual([['now-2', 1]])
    const bothAcked = node.waitFor('feedback:acked', (e) => e.id === 'now-2')
    again.send({ type: 'feedback-ack', seq: 2 })
    await bothAcked
    expect(acked).toEqual(['now-1#1', 'now-2#1'])
    expect(answers(again)).toEqual([{ type: 'accepted', seq: 1 }])
  })
})
