import { afterEach, describe, expect, it } from 'vitest'
import { Distributor } from '../../src/distributor/distributor.js'
import type { FeedbackInfo } from '../../src/distributor/feedback-handlers.js'
import { ErrorCode } from '../../src/errors.js'
import { JobReactor } from '../../src/jr.js'
import type { JobArgsObject } from '../../src/protocol/args.js'
import type { FeedbackAckMessage } from '../../src/protocol/messages.js'
import { pack } from '../../src/protocol/msgpack.js'
import { allAccepted, Resources, startDistributor, startNode } from '../helpers/cluster.js'
import type { FakePeer } from '../helpers/fake-peer.js'
import { LEVEL, LogCapture } from '../helpers/log-capture.js'
import { connectPeer } from '../helpers/peers.js'
import { unique, useRedis } from '../helpers/shared-redis.js'
import { within } from '../helpers/within.js'

const res = new Resources()
afterEach(() => res.releaseAll())

const redis = useRedis()

/** A promise and the functions that settle it. */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void } {
  let resolve!: () => void
  let reject!: (err: Error) => void
  const promise = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/** A fake node named `fake` that accepted two `echo` jobs, each with the closure given. */
async function fakeWithTwoJobs(
  d: Distributor,
  first: () => void | Promise<void>,
  second: () => void | Promise<void>,
): Promise<{ fake: FakePeer; ids: [string, string] }> {
  const fake = await connectPeer(res, d)
  await fake.handshake({ node: 'fake', jobs: ['echo'], window: 10, concurrency: 10 })
  const a = d.enqueue('echo', { n: 1 }, {}, first)
  const b = d.enqueue('echo', { n: 2 }, {}, second)
  const accepted = allAccepted(d, [a, b])
  for (let sent = 0; sent < 2; ) {
    const dispatch = await fake.nextOfType('dispatch')
    sent += dispatch.jobs.length
    fake.send({ type: 'accepted', seq: dispatch.seq })
  }
  await accepted
  return { fake, ids: [a.id, b.id] }
}

function success(id: string, n: number) {
  return { id, name: 'echo', run: 1, kind: 'success', final: true, cancelled: false, args: pack({ n }) } as const
}

const acks = (fake: FakePeer): FeedbackAckMessage[] =>
  fake.received.filter((m): m is FeedbackAckMessage => m.type === 'feedback-ack')

describe('named feedback handlers', () => {
  it('a distributor started again on the same port runs the handlers for the results a Redis node kept while none listened', async () => {
    const d1 = await startDistributor(res)
    const port = d1.port
    const nodeName = unique('keeper')
    const node = await startNode(res, d1, {
      name: nodeName,
      storage: redis.url,
      reconnectMinMs: 20,
      reconnectMaxMs: 100,
    })
    const echoes = Array.from({ length: 5 }, (_, i) => d1.enqueue('echo', { i }, { after: 0.3 }))
    const failing = d1.enqueue('always_fail', { f: 1 }, { after: 0.3, maxAttempt: 1 })
    const unhandled = d1.enqueue('noop', { u: 1 }, { after: 0.3 })
    const all = [...echoes, failing, unhandled]
    await allAccepted(d1, all)
    let finished = 0
    const allFinished = new Promise<void>((resolve) => {
      const count = (): void => {
        if (++finished === all.length) resolve()
      }
      node.on('job:complete', count)
      node.on('job:failed', count)
    })
    let acked = 0
    const allAcked = new Promise<void>((resolve) => {
      node.on('feedback:acked', () => {
        if (++acked === all.length) resolve()
      })
    })
    await d1.close()
    await within(allFinished, 'the node finishing every job while no distributor listens')

    const d2 = res.add(new Distributor({ port, heartbeatMs: 1000 }), (d) => d.close())
    const results: { args: JobArgsObject; info: FeedbackInfo }[] = []
    const failures: { args: JobArgsObject; info: FeedbackInfo }[] = []
    let done: () => void
    const delivered = new Promise<void>((resolve) => {
      done = resolve
    })
    const check = (): void => {
      if (results.length === 5 && failures.length === 1 && orphans.length === 1) done()
    }
    const orphans: unknown[] = []
    d2.on('feedback:orphan', (e) => {
      orphans.push(e)
      check()
    })
    d2.onFeedback('echo', {
      success(args, info) {
        results.push({ args, info })
        check()
      },
    })
    d2.onFeedback('always_fail', {
      error(args, info) {
        failures.push({ args, info })
        check()
      },
    })
    await d2.start()
    await within(delivered, 'every kept result delivered')

    expect(results.map((r) => r.args['i']).sort()).toEqual([0, 1, 2, 3, 4])
    for (const { args, info } of results) {
      const handle = echoes[args['i'] as number]!
      expect(info).toEqual({ id: handle.id, name: 'echo', node: nodeName, run: 1, final: true })
      expect(args).toMatchObject({ result: 'Yay!', trail: ['first', `second@${nodeName}`] })
    }
    expect(failures[0]!.info).toEqual({ id: failing.id, name: 'always_fail', node: nodeName, run: 1, final: true })
    expect(failures[0]!.args).toMatchObject({ f: 1, error: { message: 'boom 1' } })
    expect(orphans).toEqual([
      { id: unhandled.id, name: 'noop', run: 1, kind: 'success', node: nodeName, args: { u: 1 } },
    ])
    // Every result acknowledged: the node's outbox empties.
    await within(allAcked, 'every result acknowledged to the node')
  })

  it('JR.onFeedback called before JR.startDistributor registers on the distributor it starts; an async handler is awaited before the ack', async () => {
    const jr = new JobReactor()
    const seen: FeedbackInfo[] = []
    const gate = deferred()
    jr.onFeedback('echo', {
      async success(_args, info) {
        seen.push(info)
        await gate.promise
      },
    })
    const d = await jr.startDistributor({ port: 0, heartbeatMs: 1000 })
    res.add(jr, (r) => r.stop())
    const fake = await connectPeer(res, d)
    await fake.handshake({ node: 'fake', jobs: ['echo'] })
    fake.send({ type: 'feedback', seq: 1, items: [success('from-before', 7)] })
    await within(
      (async () => {
        while (seen.length === 0) await new Promise((r) => setTimeout(r, 5))
      })(),
      'the handler running',
    )
    expect(seen).toEqual([{ id: 'from-before', name: 'echo', node: 'fake', run: 1, final: true }])
    await expect(fake.nextOfType('feedback-ack', 200)).rejects.toThrow(/no message within/)
    gate.resolve()
    expect(await fake.nextOfType('feedback-ack')).toEqual({ type: 'feedback-ack', seq: 1 })
  })

  it('a handler that rejects is reported as feedback:error, and its feedback is acknowledged', async () => {
    const d = await startDistributor(res)
    d.onFeedback('echo', { success: () => Promise.reject(new Error('handler broke')) })
    const fake = await connectPeer(res, d)
    await fake.handshake({ node: 'fake', jobs: ['echo'] })
    const failed = d.waitFor('feedback:error')
    fake.send({ type: 'feedback', seq: 1, items: [success('gone-job', 1)] })
    const e = await failed
    expect(e).toMatchObject({ id: 'gone-job', name: 'echo' })
    expect(e.error.message).toBe('handler broke')
    expect(await fake.nextOfType('feedback-ack')).toEqual({ type: 'feedback-ack', seq: 1 })
  })

  it('feedback of a job whose closure returned a pending promise is acknowledged once it settles, and later frames wait behind it', async () => {
    const d = await startDistributor(res)
    const gate = deferred()
    let secondRan = false
    const { fake, ids } = await fakeWithTwoJobs(
      d,
      () => gate.promise,
      () => {
        secondRan = true
      },
    )
    fake.send({ type: 'feedback', seq: 1, items: [success(ids[0], 1)] })
    fake.send({ type: 'feedback', seq: 2, items: [success(ids[1], 2)] })
    await d.waitFor('job:success', (e) => e.id === ids[1])
    expect(secondRan).toBe(true)
    // Neither frame is acknowledged: the second's ack would acknowledge the first too.
    await expect(fake.nextOfType('feedback-ack', 300)).rejects.toThrow(/no message within/)
    expect(acks(fake)).toEqual([])
    gate.resolve()
    // One cumulative ack for both.
    expect(await fake.nextOfType('feedback-ack')).toEqual({ type: 'feedback-ack', seq: 2 })
    // Back to the common case: a synchronous closure's frame is acknowledged at once.
    const third = d.enqueue('echo', { n: 3 })
    const dispatch = await fake.nextOfType('dispatch')
    fake.send({ type: 'accepted', seq: dispatch.seq })
    fake.send({ type: 'feedback', seq: 3, items: [success(third.id, 3)] })
    expect(await fake.nextOfType('feedback-ack')).toEqual({ type: 'feedback-ack', seq: 3 })
    expect(acks(fake).map((a) => a.seq)).toEqual([2, 3])
  })

  it('a closure that never settles lets its ack go after feedbackTimeoutMs, with a warning naming the job', async () => {
    const logs = new LogCapture()
    const d = await startDistributor(res, { feedbackTimeoutMs: 300, logger: logs.logger })
    const { fake, ids } = await fakeWithTwoJobs(
      d,
      () => new Promise<void>(() => {}),
      () => {},
    )
    const sentAt = Date.now()
    fake.send({ type: 'feedback', seq: 1, items: [success(ids[0], 1)] })
    fake.send({ type: 'feedback', seq: 2, items: [success(ids[1], 2)] })
    expect(await fake.nextOfType('feedback-ack', 3000)).toEqual({ type: 'feedback-ack', seq: 2 })
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(250)
    const [warning] = logs.matching((e) => e.level === LEVEL.warn && e['id'] === ids[0])
    expect(warning?.msg).toContain(`job 'echo' (${ids[0]}) has not settled after 300 ms`)
  })

  it('refuses bad arguments with an InvalidArgumentError that names them', async () => {
    const d = new Distributor({ port: 0 })
    res.add(d, (x) => x.close())
    const jr = new JobReactor()
    const fn = (): void => {}
    const cases: [unknown, unknown, RegExp][] = [
      ['', { success: fn }, /'name' must be a non-empty string/],
      [42, { success: fn }, /'name' must be a non-empty string, got number/],
      ['echo', null, /handlers for 'echo' must be an object/],
      ['echo', fn, /handlers for 'echo' must be an object/],
      ['echo', { success: 'yes' }, /feedback handler 'success' for 'echo' must be a function, got string/],
      ['echo', { error: 1 }, /feedback handler 'error' for 'echo' must be a function, got number/],
      ['echo', { progress: {} }, /feedback handler 'progress' for 'echo' must be a function, got object/],
      ['echo', { sucess: fn }, /unknown feedback handler 'sucess' for 'echo'/],
      ['echo', {}, /define none of success, error or progress/],
    ]
    for (const [name, handlers, message] of cases) {
      for (const target of [d, jr]) {
        const call = (): void => (target.onFeedback as (n: unknown, h: unknown) => void)(name, handlers)
        expect(call).toThrow(message)
        expect(call).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARG }))
      }
    }
    for (const bad of [0, -1, 1.5, '100']) {
      expect(() => new Distributor({ feedbackTimeoutMs: bad as number })).toThrow(/'feedbackTimeoutMs'/)
    }
    // A progress handler alone is accepted (nothing sends progress yet).
    expect(() => d.onFeedback('echo', { progress: fn })).not.toThrow()
  })
})
