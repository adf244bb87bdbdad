import { describe, expect, it } from 'vitest'
import { Scheduler } from '../../src/scheduling/scheduler.js'
import type { Timer } from '../../src/scheduling/timer-heap.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { JobStats } from '../../src/distributor/job-stats.js'
import { LimitedRoute } from '../../src/distributor/limited-route.js'
import { MAX_LIMIT_KEY_LENGTH, resolveLimit, resolveLimits } from '../../src/distributor/limit-options.js'
import { type LimitHooks, Limits } from '../../src/distributor/limits.js'
import { NO_JOB_OPTIONS } from '../../src/distributor/job-options.js'
import { resolveDistributorOptions, resolveEnqueueOptions } from '../../src/distributor/options.js'
import { PendingQueue } from '../../src/distributor/pending-queue.js'
import { TrackedJob } from '../../src/distributor/tracked-job.js'

let seq = 0
function job(name: string, limitKey?: string, state: TrackedJob['state'] = 'pending', priority?: number): TrackedJob {
  const n = seq++
  const opts =
    limitKey === undefined && priority === undefined ? NO_JOB_OPTIONS : { ...NO_JOB_OPTIONS, limitKey, priority }
  const tracked = new TrackedJob(
    `j${n}`,
    { cancel: async () => false },
    name,
    Buffer.alloc(0),
    0,
    opts,
    name,
    n,
    undefined,
    undefined,
  )
  tracked.state = state
  return tracked
}

/** Limits' hooks for a test without rates: `wake` counts passes due, if given. */
function hooks(wake: () => unknown = () => {}): LimitHooks {
  return { wake: () => void wake(), wakeAt: () => {}, cancelTimer: () => {} }
}

/** What a dispatch pass does with a limited route when every node has room: key ids in order. */
function drain(route: LimitedRoute, max = Infinity, now = 0): string[] {
  const taken: string[] = []
  for (let line = route.turn(); line !== undefined && taken.length < max; line = route.turn()) {
    if (!route.limit.mayStart(line.key, now)) {
      if (!route.limit.perKey) break
      route.park()
      continue
    }
    const next = route.take() as TrackedJob
    route.limit.take(next, now)
    next.state = 'sent'
    taken.push(`${next.opts.limitKey ?? ''}:${next.id}`)
  }
  return taken
}

function limitedRoute(limits: Limits, name: string): LimitedRoute {
  const limit = limits.of(name)
  if (limit === undefined) throw new Error('no limit')
  return new LimitedRoute(name, name, undefined, undefined, new JobStats().of(name), limit)
}

describe('limit options', () => {
  it('validate, naming the field', () => {
    expect(resolveLimit('limit', { concurrency: 2, perKey: true })).toEqual({ concurrency: 2, perKey: true })
    expect(resolveLimit('limit', { concurrency: 1 })).toEqual({ concurrency: 1, perKey: false })
    expect(() => resolveLimit('limit', { concurrency: 0 })).toThrow(/'limit.concurrency' must be an integer/)
    expect(() => resolveLimit('limit', { concurrency: 1.5 })).toThrow(/'limit.concurrency'/)
    expect(() => resolveLimit('limit', { perKey: true })).toThrow(/'limit.concurrency' or 'limit.rate' is required/)
    expect(() => resolveLimit('limit', { concurrency: 2, perKey: 'yes' })).toThrow(/'limit.perKey' must be a boolean/)
    expect(resolveLimit('limit', { rate: { max: 50, per: 1 }, perKey: true })).toEqual({
      perKey: true,
      rate: { max: 50, per: 1 },
    })
    expect(() => resolveLimit('limit', { concurrency: 2, rate: 5 })).toThrow(/'limit.rate' must be \{ max, per \}/)
    expect(() => resolveLimit('limit', { rate: { max: 5 } })).toThrow(/'limit.rate' must be \{ max, per \}/)
    expect(() => resolveLimit('limit', { rate: { max: 0, per: 1 } })).toThrow(/'limit.rate.max' must be an integer/)
    expect(() => resolveLimit('limit', { rate: { max: 5, per: 0 } })).toThrow(/'limit.rate.per'/)
    expect(() => resolveLimit('limit', { rate: { max: 5, per: 1, burst: 2 } })).toThrow(/unknown 'limit.rate' option/)
    expect(() => resolveLimit('limit', { concurrency: 2, speed: 5 })).toThrow(/unknown 'limit' option 'speed'/)
    expect(() => resolveLimit('limit', 3)).toThrow(/'limit' must be \{ concurrency\?, rate\?, perKey\? \} or null/)
    expect(() => resolveLimits({ export: { concurrency: -1 } })).toThrow(/'limits.export.concurrency'/)
    expect(() => resolveDistributorOptions({ limits: { export: {} } }, { alwaysUseSpecifiedNode: false })).toThrow(
      /'limits.export.concurrency' or 'limits.export.rate' is required/,
    )
    expect(
      resolveDistributorOptions({ limits: { export: { concurrency: 3 } } }, { alwaysUseSpecifiedNode: false }).limits,
    ).toEqual(new Map([['export', { concurrency: 3, perKey: false }]]))
  })

  it('limitKey: a bounded non-empty string, for one-shot jobs', () => {
    expect(resolveEnqueueOptions({ limitKey: 'customer-42' }, 0).job.limitKey).toBe('customer-42')
    expect(() => resolveEnqueueOptions({ limitKey: '' }, 0)).toThrow(/'limitKey' must be a string of 1\.\.256/)
    expect(() => resolveEnqueueOptions({ limitKey: 42 }, 0)).toThrow(/'limitKey'/)
    expect(() => resolveEnqueueOptions({ limitKey: 'x'.repeat(MAX_LIMIT_KEY_LENGTH + 1) }, 0)).toThrow(/'limitKey'/)
    expect(() => resolveEnqueueOptions({ limitKey: 'a', period: 5 }, 0)).toThrow(/'limitKey' is for one-shot jobs/)
    expect(() => resolveEnqueueOptions({ limitKey: 'a', cron: '* * * * *' }, 0)).toThrow(/'limitKey' is for one-shot/)
  })

  it('priority: an integer in -1000..1000, named when bad; 0 is a job without one', () => {
    expect(resolveEnqueueOptions({ priority: 1000 }, 0).job.priority).toBe(1000)
    expect(resolveEnqueueOptions({ priority: -3 }, 0).job.priority).toBe(-3)
    expect(resolveEnqueueOptions({ priority: 0 }, 0).job.priority).toBeUndefined()
    expect(() => resolveEnqueueOptions({ priority: 1001 }, 0)).toThrow(/'priority' must be an integer in -1000\.\.1000/)
    expect(() => resolveEnqueueOptions({ priority: 1.5 }, 0)).toThrow(/'priority'/)
    expect(() => resolveEnqueueOptions({ priority: 'high' }, 0)).toThrow(/'priority'/)
  })

  it('a limited name refuses periodic jobs, and a name with periodic jobs held refuses a limit', () => {
    const limits = new Limits(hooks())
    limits.set('export', { concurrency: 1, perKey: false, rate: undefined }, () => [])
    const periodic = resolveEnqueueOptions({ period: 5 }, 0).job
    expect(() => limits.checkEnqueue('export', periodic)).toThrow(/has a limit/)
    expect(() => limits.checkEnqueue('other', periodic)).not.toThrow()
    const tick = new TrackedJob(
      't1',
      { cancel: async () => false },
      'tick',
      Buffer.alloc(0),
      0,
      periodic,
      'tick',
      0,
      undefined,
      undefined,
    )
    expect(() => limits.set('tick', { concurrency: 1, perKey: false, rate: undefined }, () => [tick])).toThrow(
      /periodic or cron job/,
    )
    expect(limits.of('tick')).toBeUndefined()
  })

  it('a schedule that reaches a limited name anyway (read back from a spool) takes no slot', () => {
    const limits = new Limits(hooks())
    limits.set('report', { concurrency: 1, perKey: false, rate: undefined }, () => [])
    const limit = limits.of('report')
    if (limit === undefined) throw new Error('no limit')
    const schedule = new TrackedJob(
      's1',
      { cancel: async () => false },
      'report',
      Buffer.alloc(0),
      0,
      resolveEnqueueOptions({ period: 3600 }, 0).job,
      'report',
      0,
      undefined,
      undefined,
    )
    limit.take(schedule, 0)
    expect(schedule.holdsSlot).toBe(false)
    expect(limit.hasRoom('')).toBe(true)
    const once = job('report')
    limit.take(once, 0)
    expect(limit.hasRoom('')).toBe(false)
  })
})

describe('slots', () => {
  it('count per key from dispatch until released; a full key wakes when one frees', () => {
    let wakes = 0
    const limits = new Limits(hooks(() => wakes++))
    limits.set('export', { concurrency: 2, perKey: true, rate: undefined }, () => [])
    const limit = limits.of('export')
    if (limit === undefined) throw new Error('no limit')
    const [a1, a2, b1] = [job('export', 'a'), job('export', 'a'), job('export', 'b')]
    limit.take(a1, 0)
    limit.take(a2, 0)
    limit.take(b1, 0)
    expect(limit.hasRoom('a')).toBe(false)
    expect(limit.hasRoom('b')).toBe(true)
    expect(limit.keysInUse).toBe(2)
    wakes = 0
    limits.release(b1) // b was not full: nothing to wake
    expect(wakes).toBe(0)
    limits.release(a1)
    expect(wakes).toBe(1)
    expect(a1.holdsSlot).toBe(false)
    expect(limit.inUse('a')).toBe(1)
  })

  it('a name limited while its jobs are in flight counts them; unlimited, their release is a no-op', () => {
    const limits = new Limits(hooks())
    const inFlight = [
      job('export', 'a', 'sent'),
      job('export', 'a', 'accepted'),
      job('export', 'a'),
      job('other', 'a', 'sent'),
    ]
    expect(limits.set('export', { concurrency: 2, perKey: true, rate: undefined }, () => inFlight)).toBe(true)
    expect(limits.of('export')?.inUse('a')).toBe(2)
    expect(inFlight.map((j) => j.holdsSlot)).toEqual([true, true, false, false])
    // Only the number changes: the routes stay, the slots too.
    expect(limits.set('export', { concurrency: 5, perKey: true, rate: undefined }, () => [])).toBe(false)
    expect(limits.of('export')?.inUse('a')).toBe(2)
    expect(limits.set('export', null, () => [])).toBe(true)
    limits.release(inFlight[0] as TrackedJob)
    expect(limits.of('export')).toBeUndefined()
  })
})

describe('a limited route', () => {
  it('serves keys round-robin: a key enqueued after a long backlog goes within one turn', () => {
    const limits = new Limits(hooks())
    limits.set('export', { concurrency: 1000, perKey: true, rate: undefined }, () => [])
    const route = limitedRoute(limits, 'export')
    for (let i = 0; i < 100; i++) route.push(job('export', 'a'))
    for (let i = 0; i < 3; i++) route.push(job('export', 'b'))
    route.push(job('export'))
    expect(route.length).toBe(104)
    const keys = drain(route, 8).map((s) => s.split(':')[0])
    expect(keys).toEqual(['a', 'b', '', 'a', 'b', 'a', 'b', 'a'])
  })

  it("orders each key's line by priority; the keys still take turns", () => {
    const limits = new Limits(hooks())
    limits.set('export', { concurrency: 1000, perKey: true, rate: undefined }, () => [])
    const route = limitedRoute(limits, 'export')
    const a = [job('export', 'a'), job('export', 'a')]
    const b = job('export', 'b')
    const urgent = job('export', 'a', 'pending', 5)
    for (const j of [...a, b, urgent]) route.push(j)
    expect(drain(route)).toEqual([`a:${urgent.id}`, `b:${b.id}`, `a:${a[0]?.id}`, `a:${a[1]?.id}`])
  })

  it('parks a full key without holding back the others, and takes it back in turn when a slot frees', () => {
    const limits = new Limits(hooks())
    limits.set('export', { concurrency: 2, perKey: true, rate: undefined }, () => [])
    const route = limitedRoute(limits, 'export')
    const as = Array.from({ length: 5 }, () => job('export', 'a'))
    for (const j of as) route.push(j)
    for (let i = 0; i < 4; i++) route.push(job('export', 'b'))
    expect(drain(route).map((s) => s.split(':')[0])).toEqual(['a', 'b', 'a', 'b'])
    expect(route.turn()).toBeUndefined()
    expect(route.held(0)).toEqual({ jobs: 5, keys: 2 })
    limits.release(as[0] as TrackedJob)
    expect(drain(route)).toEqual([`a:${as[2]?.id}`])
    expect(route.held(0)).toEqual({ jobs: 4, keys: 2 })
  })

  it('with a limit in total, stops at the limit and alternates keys', () => {
    const limits = new Limits(hooks())
    limits.set('export', { concurrency: 3, perKey: false, rate: undefined }, () => [])
    const route = limitedRoute(limits, 'export')
    for (let i = 0; i < 4; i++) route.push(job('export', 'a'))
    for (let i = 0; i < 4; i++) route.push(job('export', 'b'))
    expect(drain(route).map((s) => s.split(':')[0])).toEqual(['a', 'b', 'a'])
    expect(route.held(0)).toEqual({ jobs: 5, keys: 2 })
  })

  it('takes every job back in enqueue order, drops cancelled ones, and pages key by key', () => {
    const limits = new Limits(hooks())
    limits.set('export', { concurrency: 1, perKey: true, rate: undefined }, () => [])
    const route = limitedRoute(limits, 'export')
    const jobs = [job('export', 'a'), job('export', 'b'), job('export', 'a'), job('export', 'b')]
    for (const j of jobs) route.push(j)
    ;(jobs[1] as TrackedJob).state = 'cancelled'
    expect(route.page(0, 10).jobs.map((j) => j.id)).toEqual([jobs[0], jobs[2], jobs[3]].map((j) => j?.id))
    expect(route.page(1, 1).jobs.map((j) => j.id)).toEqual([jobs[2]?.id])
    expect(route.peek()).toBe(jobs[0])
    expect(route.takeAll()).toEqual([jobs[0], jobs[2], jobs[3]])
    expect(route.length).toBe(0)
  })
})

describe('the pending queue with limits', () => {
  it('files a limited name key by key, and refiles its jobs when the limit goes, in enqueue order', () => {
    const stats = new JobStats()
    const limits = new Limits(hooks())
    const queue = new PendingQueue(stats, limits)
    const jobs = [job('export', 'a'), job('export', 'b'), job('export', 'a')]
    limits.set('export', { concurrency: 1, perKey: true, rate: undefined }, () => [])
    for (const j of jobs) queue.push(j, 0)
    expect(queue.routes.get('export')).toBeInstanceOf(LimitedRoute)
    expect(queue.limited()).toEqual(new Map([['export', { jobs: 0, keys: 0 }]]))
    limits.set('export', null, () => [])
    queue.refile('export')
    const route = queue.routes.get('export')
    expect(route).not.toBeInstanceOf(LimitedRoute)
    expect(route?.takeAll()).toEqual(jobs)
    expect(queue.size).toBe(3)
  })

  it('a job back from a lost node gives its slot back', () => {
    const limits = new Limits(hooks())
    const queue = new PendingQueue(new JobStats(), limits)
    limits.set('export', { concurrency: 1, perKey: false, rate: undefined }, () => [])
    const sent = job('export', undefined, 'sent')
    limits.of('export')?.take(sent, 0)
    expect(limits.of('export')?.hasRoom('')).toBe(false)
    sent.state = 'pending'
    queue.requeue([sent])
    expect(sent.holdsSlot).toBe(false)
    expect(limits.of('export')?.hasRoom('')).toBe(true)
  })
})

describe('rate limits', () => {
  /** A limited route whose passes run as a distributor's would: on a wake, at the fake clock's time. */
  function rated(limit: Parameters<Limits['set']>[1]) {
    const clock = new FakeClock()
    const start = clock.now()
    const timers = new Scheduler<Timer>((timer) => timer.fire(), clock)
    const dispatched: { key: string; at: number }[] = []
    let passes = 0
    let due = false
    const limits = new Limits({
      wake: () => {
        due = true
      },
      wakeAt: (timer, at) => timers.schedule(timer, at),
      cancelTimer: (timer) => void timers.cancel(timer),
    })
    limits.set('call', limit, () => [])
    const route = limitedRoute(limits, 'call')
    const pass = (): void => {
      passes++
      due = false
      for (const id of drain(route, Infinity, clock.now()))
        dispatched.push({ key: id.split(':')[0] as string, at: clock.now() - start })
    }
    /** Runs a pass, then one per wake of the timers, until none is armed. */
    const run = (): void => {
      pass()
      for (let at = clock.nextTimerAt; at !== undefined; at = clock.nextTimerAt) {
        clock.advanceTo(at)
        if (due) pass()
      }
    }
    return { route, dispatched, run, passes: () => passes, clock, limits, due: () => due }
  }

  it('300 jobs at { max: 50, per: 1 }: no window of 1 s holds more than 50, and one pass per window', () => {
    const t = rated({ concurrency: undefined, perKey: false, rate: { max: 50, per: 1 } })
    for (let i = 0; i < 300; i++) t.route.push(job('call'))
    t.run()
    const times = t.dispatched.map((d) => d.at)
    expect(times).toHaveLength(300)
    for (let i = 0; i + 50 < times.length; i++)
      expect((times[i + 50] as number) - (times[i] as number)).toBeGreaterThanOrEqual(1000)
    // Each window's jobs went the moment it freed: a timer for it, no polling.
    expect(new Set(times)).toEqual(new Set([0, 1000, 2000, 3000, 4000, 5000]))
    expect(t.passes()).toBe(6)
  })

  it('per key: a key at its rate waits for its own window, the others go; with concurrency too', () => {
    const t = rated({ concurrency: 10, perKey: true, rate: { max: 2, per: 0.5 } })
    for (let i = 0; i < 5; i++) t.route.push(job('call', 'a'))
    t.route.push(job('call', 'b'))
    t.run()
    expect(t.dispatched).toEqual([
      { key: 'a', at: 0 },
      { key: 'b', at: 0 },
      { key: 'a', at: 0 },
      { key: 'a', at: 500 },
      { key: 'a', at: 500 },
      { key: 'a', at: 1000 },
    ])
    expect(t.route.held(1000)).toEqual({ jobs: 0, keys: 0 })
  })

  it('a push-back pauses its key of a name limited per key until its end, with one wake; the others go', () => {
    const t = rated({ concurrency: 10, perKey: true, rate: undefined })
    const start = t.clock.now()
    t.limits.pushBack('call', 'a', start + 1500)
    // An earlier end does not shorten it.
    t.limits.pushBack('call', 'a', start + 500)
    for (let i = 0; i < 2; i++) t.route.push(job('call', 'a'))
    t.route.push(job('call', 'b'))
    expect(t.route.held(start)).toEqual({ jobs: 2, keys: 1 })
    t.run()
    expect(t.dispatched).toEqual([
      { key: 'b', at: 0 },
      { key: 'a', at: 1500 },
      { key: 'a', at: 1500 },
    ])
    expect(t.passes()).toBe(2)
    expect(t.limits.pausedNames.size).toBe(0)
  })

  it('a push-back of a name without a limit (or limited in total) pauses the whole name, one timer, extended by a later end', () => {
    const t = rated({ concurrency: 10, perKey: true, rate: undefined })
    const start = t.clock.now()
    // The pass that setting the limit asked for.
    t.run()
    t.limits.pushBack('other', '', start + 1000)
    t.limits.pushBack('other', '', start + 2000)
    t.limits.pushBack('other', '', start + 1500)
    expect([...t.limits.pausedNames.keys()]).toEqual(['other'])
    t.clock.advanceTo(start + 1999)
    expect(t.limits.pausedNames.size).toBe(1)
    expect(t.due()).toBe(false)
    t.clock.advanceTo(start + 2000)
    expect(t.limits.pausedNames.size).toBe(0)
    expect(t.due()).toBe(true)
    expect(t.clock.nextTimerAt).toBeUndefined()
  })

  it('shows jobs held by the rate; a rate changed at run time keeps the times that count', () => {
    const t = rated({ concurrency: undefined, perKey: false, rate: { max: 3, per: 1 } })
    for (let i = 0; i < 6; i++) t.route.push(job('call'))
    for (const id of drain(t.route, Infinity, t.clock.now())) expect(id).toMatch(/^:/)
    expect(t.route.held(t.clock.now())).toEqual({ jobs: 3, keys: 1 })
    const limit = t.route.limit
    // Down to 2: the last 2 dispatch times still fill the window.
    limit.limit = { concurrency: undefined, perKey: false, rate: { max: 2, per: 1 } }
    expect(limit.mayStart('', t.clock.now())).toBe(false)
    t.clock.advance(1000)
    expect(limit.mayStart('', t.clock.now())).toBe(true)
    expect(t.route.held(t.clock.now())).toEqual({ jobs: 0, keys: 0 })
  })
})
