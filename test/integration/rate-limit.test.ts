import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { JobRegistry } from '../../src/node/registry.js'
import { Resources, startDistributor, startNode } from '../helpers/cluster.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { parsePromText, sampleValue } from '../helpers/prom-text.js'
import { within } from '../helpers/within.js'

const res = new Resources()
afterEach(() => res.releaseAll())

describe('ctx.rateLimit(seconds)', () => {
  it('pauses the name at the distributor, does not count the attempt, and runs the job again after the pause', async () => {
    const d = await startDistributor(res)
    const attempts: number[] = []
    let pushedBackAt = 0
    const registry = new JobRegistry()
    registry.define('pushy', (args, ctx) => {
      if (args['first'] !== true) return
      attempts.push(ctx.attempt)
      if (attempts.length === 1) {
        pushedBackAt = Date.now()
        ctx.rateLimit(2)
      }
    })
    registry.define('other', () => {})
    // The node's time moves only when the test moves it (a minute ahead of the
    // distributor's, so that what it is sent is due at once): the job's own pause ends
    // when the test says; the distributor's runs on real time.
    const clock = new FakeClock(Date.now() + 60_000)
    await startNode(res, d, { name: 'w1', registry }, {}, clock)

    let failed = 0
    d.on('job:failed', () => failed++)
    const paused = d.waitFor('job:rate-limited')
    const first = d.enqueue('pushy', { first: true }, { maxAttempt: 1 })
    const pause = await within(paused, 'job:rate-limited')
    expect(pause).toMatchObject({ id: first.id, name: 'pushy', node: 'w1', key: '', seconds: 2 })
    expect(pause.until).toBeGreaterThanOrEqual(pushedBackAt + 2000)

    // The name is held back; another name is not.
    const dispatched: string[] = []
    d.on('job:dispatch', (e) => dispatched.push(e.id))
    const limited = d.waitFor('job:limited')
    const second = d.enqueue('pushy', {})
    const secondSent = d.waitFor('job:dispatch', (e) => e.id === second.id)
    expect(await within(limited, 'job:limited')).toEqual({ id: second.id, name: 'pushy', key: '' })
    await within(d.enqueue('other', {}).done, 'the other name')
    expect(dispatched).not.toContain(second.id)
    const metrics = parsePromText(await d.metrics.metrics())
    expect(sampleValue(metrics, 'jr_jobs_limited', { name: 'pushy' })).toBe(1)

    // Once the pause ends, the name's jobs go again.
    const sent = await within(secondSent, 'the held job dispatched', 10_000)
    expect(sent.at).toBeGreaterThanOrEqual(pause.until)
    await within(second.done, 'the held job')
    // The pushed-back job waits for its pause on the node's clock: not run again until then.
    expect(attempts).toEqual([1])
    clock.advance(2000)
    await within(first.done, 'the pushed-back job')
    // The attempt was given back: maxAttempt 1 did not fail it, and it ran as attempt 1 again.
    expect(attempts).toEqual([1, 1])
    expect(failed).toBe(0)
  })

  it('works from a defer worker thread: the pause crosses back, the attempt is given back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jr-rate-limit-'))
    res.add(dir, (p) => rm(p, { recursive: true, force: true }))
    const file = join(dir, 'runs')
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const paused = d.waitFor('job:rate-limited')
    const handle = d.enqueue('push-back', { file, seconds: 0.2 }, { defer: true, maxAttempt: 1 })
    expect(await within(paused, 'job:rate-limited')).toMatchObject({ id: handle.id, seconds: 0.2 })
    await within(handle.done, 'the pushed-back job')
    expect((await readFile(file, 'utf8')).trim().split('\n')).toEqual(['pushed 1', 'ran 1'])
  })
})
