import { afterEach, describe, expect, it } from 'vitest'
import type { Config } from '../../src/config.js'
import type { Distributor } from '../../src/distributor/distributor.js'
import { ErrorCode, JobFailedError } from '../../src/errors.js'
import { Node } from '../../src/node/node.js'
import { FIXTURE_JOBS, Resources, allAccepted, config, startDistributor, startNode } from '../helpers/cluster.js'
import { FakeClock } from '../helpers/fake-clock.js'

const res = new Resources()
afterEach(() => res.releaseAll())

/**
 * A node whose time moves only when the test moves it (due times, timeouts, retries); the
 * distributor, the network and the job files keep real time. The clock starts at the real
 * time, so that due times the distributor computes are in its near future.
 */
async function startNodeOnClock(
  d: Distributor,
  settings: Partial<Config> = {},
): Promise<{ node: Node; clock: FakeClock }> {
  const clock = new FakeClock(Date.now())
  const node = new Node(
    { name: 'w1', distributors: [`127.0.0.1:${d.port}`], jobDirectory: FIXTURE_JOBS },
    config(settings),
    clock,
  )
  res.add(node, (n) => n.close({ force: true }))
  const connected = d.waitFor('node:connect', (e) => e.node === 'w1')
  await node.start()
  await connected
  return { node, clock }
}

/**
 * Brings the node's clock up to the real time (never back) and returns it: a job enqueued
 * now is due, by the distributor's clock, no earlier than that.
 */
function catchUp(clock: FakeClock): number {
  clock.setNow(Math.max(clock.now(), Date.now()))
  return clock.now()
}

/**
 * Moves the node's clock from one armed timer to the next, each at its own instant, letting
 * the event loop run in between (chains that await, frames to the distributor), until
 * `outcome` settles.
 */
async function runUntil<T>(clock: FakeClock, outcome: Promise<T>): Promise<T> {
  let settled = false
  const watched = outcome.finally(() => (settled = true))
  watched.catch(() => {})
  for (let turn = 0; !settled; turn++) {
    if (turn > 10_000) throw new Error('runUntil: the outcome never settled')
    const next = clock.nextTimerAt
    if (next !== undefined) clock.advanceTo(next)
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  return watched
}

/** Resolves with the next `n` payloads of success feedback for job `id`. */
function successes(
  d: Awaited<ReturnType<typeof startDistributor>>,
  id: () => string,
  n: number,
): Promise<Record<string, unknown>[]> {
  const seen: Record<string, unknown>[] = []
  return new Promise((resolve) => {
    d.on('job:success', (e) => {
      if (e.id !== id() || seen.length >= n) return
      seen.push(e.args)
      if (seen.length === n) resolve(seen)
    })
  })
}

describe('time: delayed, scheduled and periodic jobs', () => {
  it("'after: 1' runs after a second, not before; 'after: 2' has not run by then", async () => {
    const d = await startDistributor(res)
    const { node, clock } = await startNodeOnClock(d)
    const started: Record<string, number> = {}
    node.on('job:start', (e) => (started[e.id] = clock.now()))
    const t0 = catchUp(clock)
    const one = d.enqueue('stamp', {}, { after: 1 })
    const two = d.enqueue('stamp', {}, { after: 2 })
    const t1 = Date.now()
    await allAccepted(d, [one, two])
    clock.advanceTo(t0 + 999)
    expect(started[one.id]).toBeUndefined()
    clock.advanceTo(t1 + 1000)
    const first = await one.done
    expect(started[one.id] as number).toBeGreaterThanOrEqual(t0 + 1000)
    // On the node's clock, at its due time to the millisecond.
    expect(started[one.id]).toBe(first['dueAt'])
    expect(started[two.id]).toBeUndefined()
    clock.advanceTo(t1 + 2000)
    const second = await two.done
    expect(started[two.id] as number).toBeGreaterThanOrEqual(t0 + 2000)
    expect(started[two.id]).toBe(second['dueAt'])
  })

  it("'runAt' behaves like 'after'", async () => {
    const d = await startDistributor(res)
    const { node, clock } = await startNodeOnClock(d)
    let startedAt: number | undefined
    node.on('job:start', () => (startedAt = clock.now()))
    const at = catchUp(clock) + 500
    const handle = d.enqueue('stamp', {}, { runAt: new Date(at) })
    await allAccepted(d, [handle])
    clock.advanceTo(at - 1)
    expect(startedAt).toBeUndefined()
    clock.advanceTo(at)
    const args = await handle.done
    expect(startedAt as number).toBeGreaterThanOrEqual(at)
    expect(args['dueAt']).toBe(at)
  })

  it('a periodic job runs again and again, due times not drifting', async () => {
    const d = await startDistributor(res)
    const { node, clock } = await startNodeOnClock(d)
    const dueTimes: number[] = []
    let id = ''
    node.on('job:start', (e) => {
      if (e.id === id) dueTimes.push(clock.now())
    })
    const t0 = catchUp(clock)
    const runs = successes(d, () => id, 3)
    const handle = d.enqueue('stamp', {}, { period: 0.2 })
    id = handle.id
    const t1 = Date.now()
    await allAccepted(d, [handle])
    // The first run is due at once (at enqueue, by the distributor's clock), then one per period.
    clock.advanceTo(t1 + 400)
    const seen = await runs
    expect(seen.map((a) => a['run'])).toEqual([1, 2, 3])
    // Run k is due at t0 + (k-1) × period: never earlier.
    expect(dueTimes[1] as number).toBeGreaterThanOrEqual(t0 + 200)
    expect(dueTimes[2] as number).toBeGreaterThanOrEqual(t0 + 400)
    // And exactly then: each run starts at its due time, a whole period after the one before.
    const first = seen[0]?.['dueAt'] as number
    expect(dueTimes).toEqual([first, first + 200, first + 400])
    expect(seen.map((a) => a['dueAt'])).toEqual(dueTimes)
    expect(seen.every((a) => a['attempt'] === 1)).toBe(true)
    expect(await handle.cancel()).toBe(true)
    expect(await handle.done).toEqual({})
  })

  it("'after' with 'period' has no run before 'after', then one per period", async () => {
    const d = await startDistributor(res)
    const { node, clock } = await startNodeOnClock(d)
    let id = ''
    const started: number[] = []
    node.on('job:start', (e) => {
      if (e.id === id) started.push(clock.now())
    })
    const runs = successes(d, () => id, 2)
    const t0 = catchUp(clock)
    const handle = d.enqueue('stamp', {}, { after: 0.5, period: 0.5 })
    id = handle.id
    const t1 = Date.now()
    await allAccepted(d, [handle])
    clock.advanceTo(t0 + 499)
    expect(started).toEqual([])
    clock.advanceTo(t1 + 1000)
    const seen = await runs
    expect(started[0] as number).toBeGreaterThanOrEqual(t0 + 500)
    expect(started[1] as number).toBeGreaterThanOrEqual(t0 + 1000)
    expect(started).toEqual([seen[0]?.['dueAt'], (seen[0]?.['dueAt'] as number) + 500])
    await handle.cancel()
  })

  it("a cron job runs at its occurrences on the node's clock, one feedback per run, until cancelled", async () => {
    const d = await startDistributor(res)
    const { node, clock } = await startNodeOnClock(d)
    let id = ''
    let starts = 0
    node.on('job:start', (e) => {
      if (e.id === id) starts++
    })
    catchUp(clock)
    const feedback: Record<string, unknown>[] = []
    let twoRuns: () => void = () => {}
    const ran = new Promise<void>((resolve) => (twoRuns = resolve))
    const handle = d.enqueue('cron_stamp', {}, { cron: '* * * * * *' }, (args) => {
      feedback.push(args)
      if (feedback.length === 2) twoRuns()
    })
    id = handle.id
    await allAccepted(d, [handle])
    await runUntil(clock, ran)
    const first = feedback[0]?.['dueAt'] as number
    // Whole seconds (an every-second expression), one apart; each run knows the next one. A
    // third run's result may have come too while the clock ran on (see below).
    expect(first % 1000).toBe(0)
    expect(feedback.slice(0, 2)).toEqual([
      { run: 1, attempt: 1, dueAt: first, nextDueAt: first + 1000, cron: '* * * * * *' },
      { run: 2, attempt: 1, dueAt: first + 1000, nextDueAt: first + 2000, cron: '* * * * * *' },
    ])
    expect(await handle.cancel()).toBe(true)
    expect(await handle.done).toEqual({})
    // The clock may have reached the third run while the second one's feedback travelled;
    // after the cancel, later runs' times pass on the node and nothing runs. A job enqueued
    // after them, done, shows the node got that far.
    const startsAtCancel = starts
    const delivered = feedback.length
    clock.advanceTo(clock.now() + 5000)
    await runUntil(clock, d.enqueue('noop', {}).done)
    expect(starts).toBe(startsAtCancel)
    expect(feedback).toHaveLength(delivered)
  })

  it("a delayed job, on real clocks at both ends: the distributor's due time holds at the node", async () => {
    // The one place where the real clock is the point: 'after' becomes an absolute instant
    // on the distributor's clock, and a node on its own (real) clock runs it no earlier.
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const t0 = Date.now()
    const args = await d.enqueue('stamp', {}, { after: 0.3 }).done
    expect(args['ranAt'] as number).toBeGreaterThanOrEqual(t0 + 300)
    expect(args['ranAt'] as number).toBeGreaterThanOrEqual(args['dueAt'] as number)
  })

  it('a periodic job that cancels itself after 3 runs gives exactly 3 success feedbacks, then done', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const runs: unknown[] = []
    const handle = d.enqueue('count_then_cancel', {}, { period: 0.05 }, (args) => {
      runs.push(args['run'])
    })
    // The 3rd run cancels: its CancelJob counts as that run's success feedback and ends the schedule.
    expect(await handle.done).toMatchObject({ run: 3 })
    expect(runs).toEqual([1, 2, 3])
  })

  it('a periodic job whose errback throws CancelJob gives exactly one error feedback', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' }, { maxAttempt: 1 })
    let errors = 0
    const handle = d.enqueue('periodic_fail', {}, { period: 0.05 }, undefined, () => {
      errors++
    })
    await expect(handle.done).rejects.toBeInstanceOf(JobFailedError)
    expect(errors).toBe(1)
  })

  it('a failed run of a periodic job does not end the schedule', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' }, { maxAttempt: 2, retryMultiplier: 0 })
    const failures: number[] = []
    const handle = d.enqueue('always_fail', {}, { period: 0.05 }, undefined, (args) => {
      failures.push(args['attempts'] as number)
    })
    await d.waitFor('job:failed', (e) => e.id === handle.id && e.run >= 2)
    expect(failures.slice(0, 2)).toEqual([2, 2])
    expect(await handle.cancel()).toBe(true)
  })
})

describe('retries, timeouts and cancel', () => {
  it('a chain that never settles fails with ERR_JOB_TIMEOUT and is retried per policy', async () => {
    const d = await startDistributor(res)
    const { node, clock } = await startNodeOnClock(d, { retryMultiplier: 0 })
    let attempts = 0
    const started: number[] = []
    node.on('job:start', () => {
      attempts++
      started.push(clock.now())
    })
    catchUp(clock)
    const err = (await runUntil(
      clock,
      d.enqueue('hang', {}, { timeout: 0.05, maxAttempt: 3 }).done.catch((e: unknown) => e),
    )) as JobFailedError
    expect(err.args['error']).toMatchObject({ code: ErrorCode.JOB_TIMEOUT })
    expect(err.args['errbackSawTimeout']).toBe(ErrorCode.JOB_TIMEOUT)
    expect(attempts).toBe(3)
    // Each attempt ends at its timeout, and the next (no backoff) starts then.
    expect(started.map((t) => t - (started[0] as number))).toEqual([0, 50, 100])
  })

  it('an UnrecoverableError skips the remaining attempts', async () => {
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: 'w1' }, { maxAttempt: 5, retryMultiplier: 0 })
    let attempts = 0
    node.on('job:start', () => attempts++)
    const err = (await d.enqueue('give_up', {}).done.catch((e: unknown) => e)) as JobFailedError
    expect(err.args['error']).toMatchObject({ code: ErrorCode.UNRECOVERABLE, message: 'retrying will not help' })
    expect(attempts).toBe(1)
  })

  it('an exponential retry policy spaces attempts out', async () => {
    const d = await startDistributor(res)
    const { node, clock } = await startNodeOnClock(d)
    const delays: number[] = []
    const started: number[] = []
    node.on('job:retry', (e) => delays.push(e.delayMs))
    node.on('job:start', () => started.push(clock.now()))
    catchUp(clock)
    await runUntil(
      clock,
      d
        .enqueue(
          'always_fail',
          {},
          { maxAttempt: 3, retry: { strategy: 'exponential', base: 0.01, max: 1, jitter: 0 } },
        )
        .done.catch(() => {}),
    )
    expect(delays).toEqual([10, 20])
    // The attempts are that far apart on the node's clock (a failing attempt takes no time there).
    expect(started.map((t) => t - (started[0] as number))).toEqual([0, 10, 30])
  })

  it('cancel before it runs: the job never runs and done resolves with its args', async () => {
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: 'w1' })
    let started = false
    node.on('job:start', () => (started = true))
    let closures = 0
    const count = (): void => {
      closures++
    }
    const handle = d.enqueue('stamp', { keep: 1 }, { after: 30 }, count, count)
    await d.waitFor('job:accepted', (e) => e.id === handle.id)
    expect(await handle.cancel()).toBe(true)
    expect(await handle.done).toEqual({ keep: 1 })
    expect(started).toBe(false)
    expect(closures).toBe(0)
    expect(node.jobCount).toBe(0)
  })

  it('cancel while still queued at the distributor', async () => {
    const d = await startDistributor(res)
    const handle = d.enqueue('stamp', {})
    expect(await handle.cancel()).toBe(true)
    expect(d.pendingCount).toBe(0)
    await startNode(res, d, { name: 'w1' })
    expect(d.activeCount).toBe(0)
  })

  it('cancelling a finished job says false; an unknown id says false', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const handle = d.enqueue('stamp', {})
    await handle.done
    expect(await handle.cancel()).toBe(false)
    expect(await d.cancel('no-such-id')).toBe(false)
  })
})

describe('defer', () => {
  it('a deferred CPU-bound job runs in a worker thread while 100 instant jobs complete before it ends', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1', workerThreads: 1 })
    const burn = d.enqueue('burn', { ms: 1500 }, { defer: true })
    let burnDone = false
    const burnResult = burn.done.then((a) => {
      burnDone = true
      return a
    })
    await d.waitFor('job:accepted', (e) => e.id === burn.id)
    const instant = await Promise.all(Array.from({ length: 100 }, (_, i) => d.enqueue('echo', { i }).done))
    expect(instant).toHaveLength(100)
    expect(burnDone).toBe(false)
    expect(await burnResult).toMatchObject({ spins: true, node: 'w1', ms: 1500 })
  })
})
