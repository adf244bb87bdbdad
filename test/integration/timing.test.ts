import { afterEach, describe, expect, it } from 'vitest'
import { ErrorCode, JobFailedError } from '../../src/errors.js'
import { Resources, startDistributor, startNode } from '../helpers/cluster.js'

const res = new Resources()
afterEach(() => res.releaseAll())

/** Resolves with the next `n` payloads of success feedback for job `id`. */
function successes(d: Awaited<ReturnType<typeof startDistributor>>, id: () => string, n: number): Promise<Record<string, unknown>[]> {
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
    const node = await startNode(res, d, { name: 'w1' })
    const started: Record<string, number> = {}
    node.on('job:start', (e) => (started[e.id] = Date.now()))
    const t0 = Date.now()
    const one = d.enqueue('stamp', {}, { after: 1 })
    const two = d.enqueue('stamp', {}, { after: 2 })
    const first = await one.done
    expect(first['ranAt'] as number).toBeGreaterThanOrEqual(t0 + 1000)
    expect(started[two.id]).toBeUndefined()
    const second = await two.done
    expect(second['ranAt'] as number).toBeGreaterThanOrEqual(t0 + 2000)
  })

  it("'runAt' behaves like 'after'", async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const at = Date.now() + 500
    const args = await d.enqueue('stamp', {}, { runAt: new Date(at) }).done
    expect(args['ranAt'] as number).toBeGreaterThanOrEqual(at)
  })

  it('a periodic job runs again and again, due times not drifting', async () => {
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: 'w1' })
    const dueTimes: number[] = []
    let id = ''
    node.on('job:start', (e) => {
      if (e.id === id) dueTimes.push(Date.now())
    })
    const t0 = Date.now()
    const runs = successes(d, () => id, 3)
    const handle = d.enqueue('stamp', {}, { period: 0.2 })
    id = handle.id
    const seen = await runs
    expect(seen.map((a) => a['run'])).toEqual([1, 2, 3])
    // Run k is due at t0 + (k-1) × period: never earlier.
    expect(dueTimes[1] as number).toBeGreaterThanOrEqual(t0 + 200)
    expect(dueTimes[2] as number).toBeGreaterThanOrEqual(t0 + 400)
    expect(seen.every((a) => a['attempt'] === 1)).toBe(true)
    expect(await handle.cancel()).toBe(true)
    expect(await handle.done).toEqual({})
  })

  it("'after' with 'period' has no run before 'after', then one per period", async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    let id = ''
    const runs = successes(d, () => id, 2)
    const t0 = Date.now()
    const handle = d.enqueue('stamp', {}, { after: 0.5, period: 0.5 })
    id = handle.id
    const seen = await runs
    expect(seen[0]?.['ranAt'] as number).toBeGreaterThanOrEqual(t0 + 500)
    expect(seen[1]?.['ranAt'] as number).toBeGreaterThanOrEqual(t0 + 1000)
    await handle.cancel()
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
    const node = await startNode(res, d, { name: 'w1' }, { retryMultiplier: 0 })
    let attempts = 0
    node.on('job:start', () => attempts++)
    const err = (await d.enqueue('hang', {}, { timeout: 0.05, maxAttempt: 3 }).done.catch((e: unknown) => e)) as JobFailedError
    expect(err.args['error']).toMatchObject({ code: ErrorCode.JOB_TIMEOUT })
    expect(err.args['errbackSawTimeout']).toBe(ErrorCode.JOB_TIMEOUT)
    expect(attempts).toBe(3)
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
    const node = await startNode(res, d, { name: 'w1' })
    const delays: number[] = []
    node.on('job:retry', (e) => delays.push(e.delayMs))
    await d
      .enqueue('always_fail', {}, { maxAttempt: 3, retry: { strategy: 'exponential', base: 0.01, max: 1, jitter: 0 } })
      .done.catch(() => {})
    expect(delays).toEqual([10, 20])
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
