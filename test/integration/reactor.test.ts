import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { ErrorCode, JobFailedError } from '../../src/errors.js'
import { JobRegistry } from '../../src/node/registry.js'
import { loadJobDirectory } from '../../src/node/job-loader.js'
import { FIXTURE_JOBS, Resources, startDistributor, startNode } from '../helpers/cluster.js'

const res = new Resources()
afterEach(() => res.releaseAll())

describe('JobReactor behaviours', () => {
  it('runs an instant job once with its args and merges what the chain adds into success feedback', async () => {
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: 'w1' })
    const starts: string[] = []
    node.on('job:start', (e) => starts.push(e.name))
    let fromClosure: unknown
    const handle = d.enqueue('echo', { arg1: 'Hello' }, {}, (args) => {
      fromClosure = args
    })
    const args = await handle.done
    expect(args).toEqual({ arg1: 'Hello', result: 'Yay!', trail: ['first', 'second@w1'] })
    expect(fromClosure).toEqual(args)
    expect(starts).toEqual(['echo'])
    expect(typeof handle.id).toBe('string')
  })

  it('runs all of 10 jobs', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => d.enqueue('echo', { i }).done))
    expect(results.map((r) => r['i'])).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(results.every((r) => r['result'] === 'Yay!')).toBe(true)
  })

  it('runs an always-failing job exactly maxAttempt times, errbacks in order each time, then error feedback', async () => {
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: 'w1' }, { maxAttempt: 5, retryMultiplier: 0 })
    let attempts = 0
    node.on('job:start', () => attempts++)
    let errorArgs: Record<string, unknown> | undefined
    const handle = d.enqueue('always_fail', { x: 1 }, {}, undefined, (args) => {
      errorArgs = args
    })
    const err = await handle.done.then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(JobFailedError)
    expect((err as JobFailedError).code).toBe(ErrorCode.JOB_FAILED)
    expect(attempts).toBe(5)
    expect(errorArgs).toMatchObject({ x: 1, attempts: 5, errbacks: ['one', 'two'] })
    expect(errorArgs?.['error']).toMatchObject({ name: 'Error', message: 'boom 5' })
    expect(typeof (errorArgs!['error'] as { stack?: unknown }).stack).toBe('string')
  })

  it('honours a per-job maxAttempt over the node setting', async () => {
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: 'w1' }, { maxAttempt: 10, retryMultiplier: 0 })
    let attempts = 0
    node.on('job:start', () => attempts++)
    await expect(d.enqueue('always_fail', {}, { maxAttempt: 2 }).done).rejects.toBeInstanceOf(JobFailedError)
    expect(attempts).toBe(2)
  })

  it('CancelJob in the job ends it with success feedback and skips callbacks', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    let success = 0
    const args = await d.enqueue('cancel_in_job', { a: 1 }, {}, () => {
      success++
    }).done
    expect(args).toEqual({ a: 1 })
    expect(success).toBe(1)
  })

  it('CancelJob in an errback ends the job with error feedback, no retries, later errbacks skipped', async () => {
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: 'w1' }, { maxAttempt: 5, retryMultiplier: 0 })
    let attempts = 0
    node.on('job:start', () => attempts++)
    let errors = 0
    const err = (await d
      .enqueue('cancel_in_errback', {}, {}, undefined, () => {
        errors++
      })
      .done.catch((e: unknown) => e)) as JobFailedError
    expect(err).toBeInstanceOf(JobFailedError)
    expect(err.args['error']).toMatchObject({ message: 'fails first' })
    expect(err.args['secondErrbackRan']).toBeUndefined()
    expect(errors).toBe(1)
    expect(attempts).toBe(1)
  })

  it('an errback that throws records errbackError and skips the remaining errbacks', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' }, { maxAttempt: 1 })
    const err = (await d.enqueue('errback_throws', {}).done.catch((e: unknown) => e)) as JobFailedError
    expect(err.args['error']).toMatchObject({ message: 'job failed' })
    expect(err.args['errbackError']).toMatchObject({ message: 'errback failed' })
    expect(err.args['skippedRan']).toBeUndefined()
  })

  it('copies the job record into args.jobItself with mergeJobItselfToArgs', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' }, { mergeJobItselfToArgs: true })
    const handle = d.enqueue('itself', { q: 'x' })
    const args = await handle.done
    expect(args['jobItself']).toMatchObject({
      id: handle.id,
      name: 'itself',
      args: { q: 'x' },
      attempt: 1,
      status: 'in progress',
      node: 'w1',
      distributor: `default/127.0.0.1:${d.port}`,
    })
  })

  it('honours node and notNode', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'a' })
    await startNode(res, d, { name: 'b' })
    const onB = await Promise.all(Array.from({ length: 20 }, () => d.enqueue('where', {}, { node: 'b' }).done))
    expect(new Set(onB.map((a) => a['node']))).toEqual(new Set(['b']))
    const notA = await Promise.all(Array.from({ length: 20 }, () => d.enqueue('where', {}, { notNode: 'a' }).done))
    expect(new Set(notA.map((a) => a['node']))).toEqual(new Set(['b']))
  })

  it('with alwaysUseSpecifiedNode, a job for an absent node waits until that node connects', async () => {
    const d = await startDistributor(res, { alwaysUseSpecifiedNode: true })
    await startNode(res, d, { name: 'present' })
    const handle = d.enqueue('where', {}, { node: 'late' })
    let settled = false
    void handle.done.then(() => (settled = true))
    // The job must still be waiting after the present node had every chance to take it.
    await d.enqueue('where', {}).done
    expect(settled).toBe(false)
    expect(d.pendingCount).toBe(1)
    await startNode(res, d, { name: 'late' })
    expect((await handle.done)['node']).toBe('late')
  })

  it('without alwaysUseSpecifiedNode, a job for an absent node runs elsewhere', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'present' })
    expect((await d.enqueue('where', {}, { node: 'absent' }).done)['node']).toBe('present')
  })

  it('does not send a job to nodes that do not know its name; it runs once a node that does connects', async () => {
    const d = await startDistributor(res)
    const ghostRegistry = new JobRegistry()
    ghostRegistry.define('only_here', (args) => {
      args['ran'] = true
    })
    await startNode(res, d, { name: 'plain' })
    const unroutable = d.waitFor('job:unroutable')
    const dispatched: string[] = []
    const handle = d.enqueue('only_here', {})
    d.on('job:dispatch', (e) => {
      if (e.id === handle.id) dispatched.push(e.node)
    })
    expect((await unroutable).id).toBe(handle.id)
    await d.enqueue('noop', {}).done
    expect(dispatched).toEqual([])
    await startNode(res, d, { name: 'special', registry: ghostRegistry })
    expect(await handle.done).toEqual({ ran: true })
    expect(dispatched).toEqual(['special'])
  })

  it('a node given a registry runs defer jobs on its own loop and says so once', async () => {
    const d = await startDistributor(res)
    const registry = new JobRegistry()
    registry.define('heavy', (args) => {
      args['ran'] = true
    })
    const warnings: { msg: string; job?: string }[] = []
    const logger = pino(
      { level: 'warn' },
      { write: (line: string) => warnings.push(JSON.parse(line) as { msg: string; job?: string }) },
    )
    await startNode(res, d, { name: 'inline', registry, logger })
    expect(await d.enqueue('heavy', {}, { defer: true }).done).toEqual({ ran: true })
    expect(await d.enqueue('heavy', {}, { defer: true }).done).toEqual({ ran: true })
    const deferWarnings = warnings.filter((w) => w.msg.includes('defer needs a job directory'))
    expect(deferWarnings).toHaveLength(1)
    expect(deferWarnings[0]?.job).toBe('heavy')
  })

  it('a node that receives a name it does not know answers error feedback ERR_UNKNOWN_JOB', async () => {
    const d = await startDistributor(res)
    // A registry that advertises a name it has no definition for (a stale deploy, say).
    const registry = new (class extends JobRegistry {
      override names(): string[] {
        return [...super.names(), 'ghost']
      }
    })()
    await loadJobDirectory(FIXTURE_JOBS, registry)
    const node = await startNode(res, d, { name: 'stale', registry }, { maxAttempt: 3, retryMultiplier: 0 })
    let attempts = 0
    node.on('job:start', () => attempts++)
    const err = (await d.enqueue('ghost', { k: 1 }).done.catch((e: unknown) => e)) as JobFailedError
    expect(err.args['error']).toMatchObject({ code: ErrorCode.UNKNOWN_JOB })
    expect(attempts).toBe(1)
    // The node is still serving.
    expect((await d.enqueue('echo', {}).done)['result']).toBe('Yay!')
  })

  it("jobs waiting out a retry backoff leave the node's window: an idle node still gets new work", async () => {
    const d = await startDistributor(res)
    // A window of 10 (10 × concurrency), filled by 10 failing jobs that retry in an hour.
    const node = await startNode(res, d, { name: 'w1', concurrency: 1 }, { maxAttempt: 3, retryMultiplier: 3600 })
    let retrying = 0
    const allRetrying = new Promise<void>((resolve) => node.on('job:retry', () => ++retrying === 10 && resolve()))
    for (let i = 0; i < 10; i++) d.enqueue('always_fail', { i })
    await allRetrying
    expect(node.runningCount).toBe(0)
    expect((await d.enqueue('echo', {}).done)['result']).toBe('Yay!')
  })

  it('rejects bad enqueue input at once, naming it, and enqueues nothing', async () => {
    const d = await startDistributor(res)
    expect(() => d.enqueue('echo', { cb: () => 1 })).toThrow(/args\.cb is a function/)
    expect(() => d.enqueue('echo', {}, { after: -1 })).toThrow(/'after'/)
    expect(() => d.enqueue('echo', {}, { afer: 1 } as never)).toThrow(/unknown enqueue option 'afer'/)
    expect(() => d.enqueue('echo', { when: new Map() } as never)).toThrow(/args\.when is an instance of Map/)
    const cyclic: Record<string, unknown> = {}
    cyclic['self'] = cyclic
    expect(() => d.enqueue('echo', cyclic)).toThrow(/args\.self is a circular reference/)
    expect(() => d.enqueue('', {})).toThrow(/'name'/)
    try {
      d.enqueue('echo', { cb: () => 1 })
    } catch (err) {
      expect((err as { code: string }).code).toBe(ErrorCode.INVALID_ARG)
    }
    expect(d.activeCount).toBe(0)
    expect(d.pendingCount).toBe(0)
  })

  it('refuses args larger than the frame limit at enqueue, with the size and the limit', async () => {
    const d = await startDistributor(res, { maxFrameSize: 64 * 1024 })
    expect(() => d.enqueue('echo', { blob: 'x'.repeat(100_000) })).toThrow(/encode to \d+ bytes, over the limit of \d+/)
  })

  it('a job too large for one node goes to a node that takes it, and fails with ERR_FRAME_TOO_LARGE only when none does', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'small', maxFrameSize: 64 * 1024 })
    let disconnected = false
    d.on('node:disconnect', () => (disconnected = true))
    const err = (await d.enqueue('echo', { blob: 'x'.repeat(100_000) }).done.catch((e: unknown) => e)) as JobFailedError
    expect(err.args['error']).toMatchObject({ code: ErrorCode.FRAME_TOO_LARGE })
    expect((err.args['error'] as { message: string }).message).toMatch(
      /too large for every connected node that runs it \(the largest limit is node 'small'\)/,
    )
    expect(d.pendingCount).toBe(0)
    // Batches stay under the node's limit too: many mid-sized jobs all arrive.
    const mid = await Promise.all(
      Array.from({ length: 20 }, (_, i) => d.enqueue('echo', { i, blob: 'y'.repeat(20_000) }).done),
    )
    expect(mid).toHaveLength(20)

    await startNode(res, d, { name: 'big', maxFrameSize: 1024 * 1024 })
    const takenBy: string[] = []
    d.on('job:accepted', (e) => takenBy.push(e.node))
    // Preferring the small node does not make it fail either: the big one takes it.
    const large = await Promise.all([
      d.enqueue('echo', { blob: 'x'.repeat(100_000) }).done,
      d.enqueue('echo', { blob: 'x'.repeat(100_000) }, { node: 'small' }).done,
    ])
    expect(large.map((a) => a['result'])).toEqual(['Yay!', 'Yay!'])
    expect(takenBy).toEqual(['big', 'big'])
    expect(disconnected).toBe(false)
  })

  it('a job only a busy node takes, for its size, waits aside: the jobs behind it run on a node with room', async () => {
    const d = await startDistributor(res)
    let release = (): void => {}
    const registry = new JobRegistry()
    registry.define('hold', () => new Promise<void>((resolve) => (release = resolve)))
    registry.define('work', (args) => {
      args['done'] = true
    })
    const big = await startNode(res, d, { name: 'big', registry, concurrency: 1, window: 1 })
    await startNode(res, d, { name: 'small', registry, maxFrameSize: 64 * 1024 })
    const busy = d.enqueue('hold', {}, { node: 'big' })
    await big.waitFor('job:start', (e) => e.id === busy.id)
    const large = d.enqueue('work', { pad: 'x'.repeat(100_000) })
    const smalls = await Promise.all(Array.from({ length: 4 }, (_, i) => d.enqueue('work', { i }).done))
    expect(smalls.map((a) => a['done'])).toEqual([true, true, true, true])
    // Still busy: the small jobs did not wait for it.
    expect(big.runningCount).toBe(1)
    release()
    expect((await large.done)['done']).toBe(true)
  })

  it('a job that leaves args too large to send back gives error feedback ERR_FRAME_TOO_LARGE, and the node goes on', async () => {
    const d = await startDistributor(res, { maxFrameSize: 64 * 1024 })
    await startNode(res, d, { name: 'w1' })
    let disconnected = false
    d.on('node:disconnect', () => (disconnected = true))
    const err = (await d.enqueue('bloat', { size: 100_000 }).done.catch((e: unknown) => e)) as JobFailedError
    expect(err.args['error']).toMatchObject({ code: ErrorCode.FRAME_TOO_LARGE })
    expect(err.args['size']).toBe(100_000)
    expect(err.args['big']).toBeUndefined()
    expect((await d.enqueue('bloat', { size: 10 }).done)['big']).toBe('x'.repeat(10))
    expect(disconnected).toBe(false)
  })

  it('a success closure that closes the distributor leaves that job succeeded (no error closure, done resolves)', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const calls: string[] = []
    let closing: Promise<void> | undefined
    const handle = d.enqueue(
      'echo',
      {},
      {},
      () => {
        calls.push('success')
        closing = d.close()
      },
      (args) => void calls.push(`error:${(args['error'] as { code: string }).code}`),
    )
    const outcome = await handle.done.then(
      () => 'resolved',
      (err: Error) => `rejected: ${err.name}`,
    )
    await closing
    expect({ calls, outcome }).toEqual({ calls: ['success'], outcome: 'resolved' })
  })

  it('a cancel() that an error closure makes while the distributor closes settles (false)', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const first = d.enqueue('echo', {}, { after: 3600 })
    let answer: Promise<boolean> | undefined
    const second = d.enqueue('echo', {}, { after: 3600 }, undefined, () => {
      answer = first.cancel()
    })
    await Promise.all([first, second].map((h) => d.waitFor('job:accepted', (e) => e.id === h.id)))
    await d.close()
    expect(await answer).toBe(false)
  })

  it('a feedback closure that throws does not stop the distributor', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const reported = d.waitFor('feedback:error')
    const first = d.enqueue('echo', {}, {}, () => {
      throw new Error('closure bug')
    })
    await first.done
    expect((await reported).error.message).toBe('closure bug')
    expect((await d.enqueue('echo', { again: true }).done)['again']).toBe(true)
  })

  it('never runs more than the concurrency at once', async () => {
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: 'w1', concurrency: 3 })
    let running = 0
    let peak = 0
    node.on('job:start', () => {
      running++
      peak = Math.max(peak, running)
    })
    node.on('job:complete', () => running--)
    await Promise.all(Array.from({ length: 30 }, () => d.enqueue('slow', { ms: 5 }).done))
    expect(peak).toBe(3)
  })

  it('30,000 synchronous jobs that come due behind a busy slot each run exactly once (the ready queue does not nest calls)', async () => {
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: 'w1', concurrency: 1 })
    let starts = 0
    node.on('job:start', () => starts++)
    // Delayed jobs do not count against a node's capacity once accepted, so they pile up
    // in its ready queue while 'hang' holds the only slot, until its timeout frees it.
    const hangStarted = node.waitFor('job:start')
    const hang = d.enqueue('hang', {}, { timeout: 1, maxAttempt: 1 }).done.catch((err: unknown) => err)
    await hangStarted
    const dones = Array.from({ length: 30_000 }, (_, i) => d.enqueue('noop', { i }, { after: 0.5 }).done)
    const results = await Promise.all(dones)
    expect(await hang).toBeInstanceOf(JobFailedError)
    expect(starts).toBe(30_001)
    expect(results.every((r, i) => r['i'] === i)).toBe(true)
  })

  it('a backlog of long synchronous jobs behind a busy slot does not hold the event loop until it is done', async () => {
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: 'w1', concurrency: 1 })
    const hangStarted = node.waitFor('job:start')
    const hang = d.enqueue('hang', {}, { timeout: 0.5, maxAttempt: 1 }).done.catch((err: unknown) => err)
    await hangStarted
    // Each burn holds the loop at least 5 ms by itself: 20 of them are 100 ms, five times
    // the pump's budget, however fast the machine.
    const count = 20
    let burns = 0
    let burnsWhenLoopTurned: number | undefined
    node.on('job:start', (e) => {
      if (e.name !== 'burn') return
      burns++
      if (burns === 1) setImmediate(() => (burnsWhenLoopTurned = burns))
    })
    const dones = Array.from({ length: count }, () => d.enqueue('burn', { ms: 5 }, { after: 0.1 }).done)
    await Promise.all(dones)
    expect(await hang).toBeInstanceOf(JobFailedError)
    expect(burns).toBe(count)
    // The loop turned while the backlog ran, not only after it.
    expect(burnsWhenLoopTurned).toBeGreaterThan(0)
    expect(burnsWhenLoopTurned).toBeLessThan(count)
  })

  it('fails pending jobs with ERR_DISTRIBUTOR_CLOSED on close and refuses enqueue after', async () => {
    const d = await startDistributor(res)
    const handle = d.enqueue('nobody_knows', {})
    await d.close()
    await expect(handle.done).rejects.toMatchObject({ code: ErrorCode.DISTRIBUTOR_CLOSED })
    expect(() => d.enqueue('echo', {})).toThrow(expect.objectContaining({ code: ErrorCode.DISTRIBUTOR_CLOSED }))
  })

  it('throws QueueFullError past maxPending', async () => {
    const d = await startDistributor(res, { maxPending: 3 })
    for (let i = 0; i < 3; i++) d.enqueue('nobody_knows', {})
    expect(() => d.enqueue('nobody_knows', {})).toThrow(expect.objectContaining({ code: ErrorCode.QUEUE_FULL }))
  })
})
