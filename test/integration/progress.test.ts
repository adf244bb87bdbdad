import { type Server, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { Distributor } from '../../src/distributor/distributor.js'
import type { AdminJob } from '../../src/admin/admin-client.js'
import type { FeedbackInfo } from '../../src/distributor/feedback-handlers.js'
import { ErrorCode, JobFailedError } from '../../src/errors.js'
import { PROGRESS_WINDOW_MS } from '../../src/node/progress-reporter.js'
import { Node } from '../../src/node/node.js'
import { JobRegistry } from '../../src/node/registry.js'
import type { ProgressValue } from '../../src/protocol/messages.js'
import { RedisStore } from '../../src/storage/redis/redis-store.js'
import { Resources, allAccepted, config, startDistributor, startNode } from '../helpers/cluster.js'
import { spawnJr } from '../helpers/jr-cli.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { unique, useRedis } from '../helpers/shared-redis.js'
import { within } from '../helpers/within.js'

const res = new Resources()
afterEach(() => res.releaseAll())

const redis = useRedis()

/** The distributor's admin handler on a loopback port; resolves with its base URL. */
async function serveAdmin(d: Distributor): Promise<string> {
  const server = createServer(d.adminHandler())
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  res.add(server, (s: Server) => new Promise((resolve) => s.close(resolve)))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
}

/** A gate a job awaits, opened by the test. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void
  const opened = new Promise<void>((resolve) => {
    open = resolve
  })
  return { opened, open }
}

describe('progress', () => {
  it('1,000 updates in tight bursts reach onProgress coalesced, in order, the last one the final value, then the success', async () => {
    const d = await startDistributor(res)
    const BURSTS = 10
    const PER_BURST = 100
    const gates = Array.from({ length: BURSTS }, gate)
    const bursts = Array.from({ length: BURSTS }, gate)
    const registry = new JobRegistry()
    registry.define('bursts', async (_args, ctx) => {
      let n = 0
      for (let b = 0; b < BURSTS; b++) {
        for (let i = 0; i < PER_BURST; i++) ctx.progress(++n)
        bursts[b]?.open()
        await gates[b]?.opened
      }
    })
    // The node's time moves only when the test moves it: the windows end when it says. A
    // minute ahead of the distributor's, so that the job is due at once.
    const clock = new FakeClock(Date.now() + 60_000)
    await startNode(res, d, { name: 'w1', registry }, {}, clock)

    const seen: (ProgressValue | 'success')[] = []
    const infos: FeedbackInfo[] = []
    const events: unknown[] = []
    d.on('job:progress', (e) => events.push(e))
    const handle = d.enqueue(
      'bursts',
      {},
      {
        onProgress(value, info) {
          seen.push(value)
          infos.push(info)
        },
      },
      () => void seen.push('success'),
    )
    expect(handle.progress).toBeUndefined()
    const admin = await serveAdmin(d)
    let elapsed = 0
    for (let b = 0; b < BURSTS; b++) {
      await within(bursts[b]!.opened, `burst ${b}`)
      if (b === 0) {
        // The node holds the latest value, the one waiting for its window to end.
        const view = (await (await fetch(`${admin}api/jobs/${handle.id}`)).json()) as { job: { progress?: unknown } }
        expect(view.job.progress).toBe(PER_BURST)
      }
      // Between bursts a window ends; after the last, the job ends within its window.
      if (b < BURSTS - 1) {
        clock.advance(PROGRESS_WINDOW_MS)
        elapsed += PROGRESS_WINDOW_MS
      }
      gates[b]!.open()
    }
    await within(handle.done, 'the job finishing')

    expect(seen.at(-1)).toBe('success')
    const values = seen.slice(0, -1) as number[]
    // At once, one per window of the run, and the final one at the end of the attempt.
    expect(values.length).toBeLessThanOrEqual(1 + elapsed / PROGRESS_WINDOW_MS + 1)
    for (let i = 1; i < values.length; i++) expect(values[i]).toBeGreaterThan(values[i - 1] as number)
    expect(values[0]).toBe(1)
    expect(values.at(-1)).toBe(BURSTS * PER_BURST)
    expect(infos[0]).toEqual({ id: handle.id, name: 'bursts', node: 'w1', run: 1, final: false })
    expect(handle.progress).toBe(BURSTS * PER_BURST)
    expect(events).toHaveLength(values.length)
    expect(events.at(-1)).toEqual({ id: handle.id, name: 'bursts', node: 'w1', run: 1, value: BURSTS * PER_BURST })
  })

  it.each([false, true])(
    'defer %s: the last value of a tight loop arrives before the success; a value ctx.progress refuses fails the step',
    async (defer) => {
      const d = await startDistributor(res)
      await startNode(res, d, { name: 'w1' })
      const seen: unknown[] = []
      const n = 1000
      const h = d.enqueue(
        'progress_burst',
        { n },
        { defer, onProgress: (value) => void seen.push(value) },
        () => void seen.push('success'),
      )
      await within(h.done, 'the job finishing', 15_000)
      expect(seen.at(-1)).toBe('success')
      expect(seen.at(-2)).toEqual({ done: n, of: n })
      expect(seen[0]).toEqual({ done: 1, of: n })
      // No time to speak of passed: at once, and the final value (a slow machine, a few more).
      expect(seen.length - 1).toBeLessThan(n / 10)

      const bad = d.enqueue('progress_bad', { value: 'half' }, { defer, maxAttempt: 1 })
      const err = await within(
        bad.done.then(
          () => undefined,
          (e: unknown) => e,
        ),
        'the bad job failing',
        15_000,
      )
      expect(err).toBeInstanceOf(JobFailedError)
      const error = (err as JobFailedError).args['error'] as { code?: string; message: string }
      expect(error.message).toContain("'progress' must be a finite number or a plain object")
      expect(error.code).toBe(ErrorCode.INVALID_ARG)
    },
  )

  it('an onProgress that throws is reported as feedback:error, and the job goes on to its success', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const reported = d.waitFor('feedback:error')
    const h = d.enqueue(
      'progress_burst',
      { n: 3 },
      {
        onProgress() {
          throw new Error('a closure bug')
        },
      },
    )
    await within(h.done, 'the job finishing')
    const e = await within(reported, 'the closure error')
    expect(e.id).toBe(h.id)
    expect(e.error.message).toBe('a closure bug')
    expect(h.progress).toEqual({ done: 3, of: 3 })
  })

  it('progress of a job whose distributor restarted reaches the named handler, before its success', async () => {
    const d1 = await startDistributor(res)
    const port = d1.port
    const go = gate()
    const registry = new JobRegistry()
    registry.define('watched', async (args, ctx) => {
      await go.opened
      const n = Number(args['n'])
      ctx.progress(n)
      ctx.progress(n + 1)
    })
    const nodeName = unique('keeper')
    const node = await startNode(res, d1, {
      name: nodeName,
      storage: redis.url,
      registry,
      reconnectMinMs: 20,
      reconnectMaxMs: 100,
    })
    const started = new Promise<void>((resolve) => node.once('job:start', () => resolve()))
    const h = d1.enqueue('watched', { n: 7 }, { onProgress: () => expect.fail('the closure of a closed distributor') })
    h.done.catch(() => {})
    await allAccepted(d1, [h])
    await within(started, 'the job starting')
    await d1.close()

    const d2 = res.add(new Distributor({ port, heartbeatMs: 1000 }), (d) => d.close())
    const heard: [string, unknown, FeedbackInfo][] = []
    const succeeded = gate()
    d2.onFeedback('watched', {
      progress(value, info) {
        heard.push(['progress', value, info])
      },
      success(args, info) {
        heard.push(['success', args, info])
        succeeded.open()
      },
    })
    // Progress is best effort: what a job reports while its link is down is not sent again.
    const linkUp = new Promise<void>((resolve) => node.once('link:up', () => resolve()))
    await d2.start()
    await within(linkUp, 'the node dialling the new distributor')
    go.open()
    await within(succeeded.opened, 'the success reaching the named handler')

    const info = { id: h.id, name: 'watched', node: nodeName, run: 1 }
    expect(heard).toEqual([
      ['progress', 7, { ...info, final: false }],
      ['progress', 8, { ...info, final: false }],
      ['success', { n: 7 }, { ...info, final: true }],
    ])
  })

  it('the last value is kept in the Redis record: the store, jr and the admin API of a restarted distributor read it from a restarted node', async () => {
    const d1 = await startDistributor(res)
    const port = d1.port
    const go = gate()
    let starts = 0
    const registry = new JobRegistry()
    registry.define('long_import', async (_args, ctx) => {
      // Only the first attempt reports: what a restarted node shows came from the record.
      if (++starts === 1) {
        ctx.progress({ done: 1, of: 10 })
        ctx.progress({ done: 3, of: 10 })
      }
      await go.opened
    })
    const nodeName = unique('importer')
    const options = { name: nodeName, storage: redis.url, registry, reconnectMinMs: 20, reconnectMaxMs: 100 }
    const node1 = await startNode(res, d1, options)
    const started = new Promise<void>((resolve) => node1.once('job:start', () => resolve()))
    const heard: ProgressValue[] = []
    const both = new Promise<void>((resolve) =>
      d1.on('job:progress', (e) => {
        heard.push(e.value)
        if (heard.length === 2) resolve()
      }),
    )
    const h = d1.enqueue('long_import', {})
    h.done.catch(() => {})
    await allAccepted(d1, [h])
    await within(started, 'the job starting')
    // The first value at once, the second when its window ends: two sends, two record writes.
    await within(both, 'both values reaching the distributor')
    expect(heard).toEqual([
      { done: 1, of: 10 },
      { done: 3, of: 10 },
    ])

    // Both stop: the node abandons the running chain to storage (its writes made before
    // close are flushed by it), the distributor forgets the job.
    await node1.close({ force: true })
    await d1.close()
    const store = res.add(new RedisStore({ node: nodeName, url: redis.url }), (s) => s.close())
    await store.open()
    expect((await store.getJob(h.id))?.progress).toEqual({ done: 3, of: 10 })
    const shown = await spawnJr(['show', h.id, '--node', nodeName, '--redis', redis.url])
    expect(shown.stdout).toMatch(/^progress\s+\{"done":3,"of":10\}$/m)

    const d2 = res.add(new Distributor({ port, heartbeatMs: 1000 }), (d) => d.close())
    await d2.start()
    const connected = d2.waitFor('node:connect', (e) => e.node === nodeName)
    const restarted = new Promise<void>((resolve) => {
      const node = new Node({ ...options, distributors: [`127.0.0.1:${port}`] }, config())
      res.add(node, (n) => n.close({ force: true }))
      node.once('job:start', () => resolve())
      void node.start()
    })
    await within(restarted, 'the resumed job starting again')
    await within(connected, 'the restarted node connecting')
    const admin = await serveAdmin(d2)
    const response = await fetch(`${admin}api/jobs/${h.id}?node=${nodeName}`)
    expect(response.status).toBe(200)
    const { job } = (await response.json()) as { job: AdminJob }
    expect(job).toMatchObject({ id: h.id, state: 'held-by-node', node: nodeName, status: 'in progress' })
    expect(job.progress).toEqual({ done: 3, of: 10 })
    expect(starts).toBe(2)
    const live = await spawnJr(['job', h.id, '--node', nodeName, '--url', admin])
    expect(live.stderr).toBe('')
    expect(live.stdout).toMatch(/^progress\s+\{"done":3,"of":10\}$/m)

    const finished = d2.waitFor('feedback:orphan', (e) => e.id === h.id)
    go.open()
    await within(finished, 'the result reaching the restarted distributor')
    expect(await store.getJob(h.id)).toBeUndefined()
  })

  it("a job's last value, reported just before its attempt ended, is in the record it leaves: retried, then failed for good", async () => {
    const d = await startDistributor(res)
    const registry = new JobRegistry()
    const retried = gate()
    registry.define('report_then_fail', async (_args, ctx) => {
      // Both values within the attempt's last turn: the record write follows the attempt's end.
      ctx.progress({ attempt: ctx.attempt, step: 1 })
      ctx.progress({ attempt: ctx.attempt, step: 2 })
      if (ctx.attempt === 2) await retried.opened
      throw new Error(`attempt ${ctx.attempt} failed`)
    })
    const nodeName = unique('failing')
    const node = await startNode(res, d, { name: nodeName, storage: redis.url, registry }, { retryMultiplier: 0 })
    const store = res.add(new RedisStore({ node: nodeName, url: redis.url }), (s) => s.close())
    await store.open()
    const secondStarted = new Promise<void>((resolve) =>
      node.on('job:start', (e) => {
        if (e.attempt === 2) resolve()
      }),
    )
    const h = d.enqueue('report_then_fail', {}, { maxAttempt: 2 })
    h.done.catch(() => {})
    await within(secondStarted, 'the second attempt starting')
    // The first attempt's end (a retry) kept the record, with the value it reported last
    // (written with the retry, before the job went back on its timer), or, as the second
    // attempt's start and values may be written by now, with the second's.
    const afterRetry = await store.getJob(h.id)
    expect(['error', 'in progress']).toContain(afterRetry?.status)
    expect([
      { attempt: 1, step: 2 },
      { attempt: 2, step: 1 },
    ]).toContainEqual(afterRetry?.progress)
    retried.open()
    await within(
      h.done.then(
        () => expect.fail('the job succeeded'),
        () => undefined,
      ),
      'the job failing for good',
    )
    // Failed jobs are kept (removeFailedJobs false): with the last value of the last attempt.
    const failed = await store.getJob(h.id)
    expect(failed).toMatchObject({ status: 'failed', attempt: 2, progress: { attempt: 2, step: 2 } })
  })
})
