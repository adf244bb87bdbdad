import { describe, it, expect, vi, afterEach } from 'vitest'
import { Scheduler } from '../../src/scheduling/scheduler.js'
import { MAX_TIMER_DELAY, systemClock } from '../../src/scheduling/clock.js'
import { FakeClock } from '../helpers/fake-clock.js'

const DAY = 24 * 60 * 60 * 1000

interface Fired {
  key: string
  item: string
  dueAt: number
  at: number
}

function setup() {
  const clock = new FakeClock()
  const fired: Fired[] = []
  const scheduler = new Scheduler<string>((key, item, dueAt) => {
    fired.push({ key, item, dueAt, at: clock.now() })
  }, clock)
  return { clock, fired, scheduler, t0: clock.now() }
}

describe('Scheduler', () => {
  it('arms a clamped timer for a due time 30 days ahead and fires exactly at the due instant', () => {
    const { clock, fired, scheduler, t0 } = setup()
    const dueAt = t0 + 30 * DAY
    scheduler.schedule('far', dueAt, 'x')

    expect(clock.delays).toEqual([MAX_TIMER_DELAY])
    expect(clock.allUnrefed).toBe(true)

    clock.advanceTo(dueAt - 1)
    expect(fired).toEqual([])
    // It re-armed at each clamped wake-up (30 days is about 1.2 × 2^31 ms).
    expect(clock.delays.length).toBeGreaterThanOrEqual(2)
    expect(clock.delays.every((d) => d >= 0 && d <= MAX_TIMER_DELAY)).toBe(true)
    expect(scheduler.has('far')).toBe(true)

    clock.advanceTo(dueAt)
    expect(fired).toEqual([{ key: 'far', item: 'x', dueAt, at: dueAt }])
    expect(scheduler.size).toBe(0)
    expect(clock.armed).toBe(0)
    expect(clock.maxArmed).toBe(1)
  })

  it('after a late wake-up runs everything due, in due order, and leaves the rest', () => {
    const { clock, fired, scheduler, t0 } = setup()
    scheduler.schedule('c', t0 + 300, 'c')
    scheduler.schedule('a', t0 + 100, 'a')
    scheduler.schedule('b2', t0 + 200, 'b2')
    scheduler.schedule('b1', t0 + 200, 'b1') // same due time: insertion order loses to b2
    scheduler.schedule('later', t0 + 10_000, 'later')
    // The process was suspended: time jumps past several due times without any timer firing.
    clock.setNow(t0 + 5_000)
    expect(clock.fireNext()).toBe(true)

    expect(fired.map((f) => f.key)).toEqual(['a', 'b2', 'b1', 'c'])
    expect(fired.every((f) => f.at === t0 + 5_000)).toBe(true)
    expect(scheduler.size).toBe(1)
    expect(scheduler.nextDueAt()).toBe(t0 + 10_000)
    expect(clock.armed).toBe(1)
    expect(clock.nextTimerAt).toBe(t0 + 10_000)
  })

  it('an early wake-up runs nothing and re-arms for the remaining time', () => {
    const { clock, fired, scheduler, t0 } = setup()
    scheduler.schedule('a', t0 + 1_000, 'a')
    clock.setNow(t0 + 400) // the wall clock lags the timer
    expect(clock.fireNext()).toBe(true)

    expect(fired).toEqual([])
    expect(clock.armed).toBe(1)
    expect(clock.delays).toEqual([1_000, 600])
    clock.advance(599)
    expect(fired).toEqual([])
    clock.advance(1)
    expect(fired.map((f) => [f.key, f.at])).toEqual([['a', t0 + 1_000]])
  })

  it('cancel prevents firing and disarms when nothing is left', () => {
    const { clock, fired, scheduler, t0 } = setup()
    scheduler.schedule('a', t0 + 100, 'a')
    scheduler.schedule('b', t0 + 200, 'b')
    expect(scheduler.cancel('a')).toBe(true)
    expect(scheduler.cancel('a')).toBe(false)
    expect(scheduler.has('a')).toBe(false)
    clock.advance(150)
    expect(fired).toEqual([])
    expect(scheduler.cancel('b')).toBe(true)
    expect(clock.armed).toBe(0)
    clock.advance(10_000)
    expect(fired).toEqual([])
    expect(scheduler.size).toBe(0)
  })

  it('keeps a single native timer and re-arms only for an earlier entry', () => {
    const { clock, fired, scheduler, t0 } = setup()
    scheduler.schedule('a', t0 + 1_000, 'a')
    scheduler.schedule('b', t0 + 2_000, 'b') // later: no re-arm
    scheduler.schedule('c', t0 + 1_500, 'c') // later: no re-arm
    expect(clock.delays).toEqual([1_000])
    scheduler.schedule('d', t0 + 500, 'd') // earlier: re-arm
    expect(clock.delays).toEqual([1_000, 500])
    expect(clock.armed).toBe(1)
    expect(scheduler.nextDueAt()).toBe(t0 + 500)

    for (let i = 0; i < 1_000; i++) scheduler.schedule(`bulk${i}`, t0 + 3_000 + i, `bulk${i}`)
    expect(clock.delays).toHaveLength(2)

    clock.advance(10_000)
    expect(fired.slice(0, 4).map((f) => f.key)).toEqual(['d', 'a', 'c', 'b'])
    expect(fired).toHaveLength(1_004)
    expect(fired.every((f) => f.at === f.dueAt)).toBe(true)
    expect(clock.maxArmed).toBe(1)
  })

  it('rescheduling a key replaces its entry', () => {
    const { clock, fired, scheduler, t0 } = setup()
    scheduler.schedule('a', t0 + 100, 'first')
    scheduler.schedule('a', t0 + 300, 'second')
    expect(scheduler.size).toBe(1)
    clock.advance(200)
    expect(fired).toEqual([])
    clock.advance(100)
    expect(fired).toEqual([{ key: 'a', item: 'second', dueAt: t0 + 300, at: t0 + 300 }])
  })

  it('a throwing onDue does not stop the drain or break the scheduler', () => {
    const clock = new FakeClock()
    const t0 = clock.now()
    const seen: string[] = []
    const errors: unknown[] = []
    const scheduler = new Scheduler<string>(
      (key) => {
        seen.push(key)
        if (key.startsWith('bad')) throw new Error(`boom ${key}`)
      },
      clock,
      {
        onError: (err) => {
          errors.push(err)
          if ((err as Error).message === 'boom bad2') throw new Error('onError itself fails')
        },
      },
    )
    scheduler.schedule('bad1', t0 + 10, '')
    scheduler.schedule('good1', t0 + 10, '')
    scheduler.schedule('bad2', t0 + 20, '')
    scheduler.schedule('good2', t0 + 30, '')
    expect(() => clock.advance(30)).not.toThrow()
    expect(seen).toEqual(['bad1', 'good1', 'bad2', 'good2'])
    expect(errors.map((e) => (e as Error).message)).toEqual(['boom bad1', 'boom bad2'])

    scheduler.schedule('after', t0 + 100, '')
    clock.advance(100)
    expect(seen.at(-1)).toBe('after')
  })

  it('ignores onDue errors by default', () => {
    const clock = new FakeClock()
    let calls = 0
    const scheduler = new Scheduler<string>(() => {
      calls++
      throw new Error('boom')
    }, clock)
    scheduler.schedule('a', clock.now(), '')
    scheduler.schedule('b', clock.now(), '')
    expect(() => clock.advance(0)).not.toThrow()
    expect(calls).toBe(2)
  })

  it('runs entries scheduled from onDue for an already-due time on the next timer turn', () => {
    const clock = new FakeClock()
    const t0 = clock.now()
    const runs: Array<[string, number]> = []
    let turn = 0
    const scheduler = new Scheduler<string>((key) => {
      runs.push([key, turn])
      // Re-scheduling itself for "now" must not spin inside one drain.
      if (key === 'again' && runs.filter(([k]) => k === 'again').length < 3) scheduler.schedule('again', clock.now(), '')
    }, clock)
    scheduler.schedule('again', t0 + 10, '')
    scheduler.schedule('other', t0 + 10, '')
    clock.setNow(t0 + 10)

    turn = 1
    clock.fireNext()
    expect(runs).toEqual([
      ['again', 1],
      ['other', 1],
    ])
    expect(scheduler.has('again')).toBe(true)
    expect(clock.armed).toBe(1)
    expect(clock.delays.at(-1)).toBe(0)

    turn = 2
    clock.fireNext()
    turn = 3
    clock.fireNext()
    expect(runs).toEqual([
      ['again', 1],
      ['other', 1],
      ['again', 2],
      ['again', 3],
    ])
    expect(clock.armed).toBe(0)
    expect(clock.maxArmed).toBe(1)
  })

  it('an entry cancelled by an earlier onDue in the same drain never fires', () => {
    const clock = new FakeClock()
    const t0 = clock.now()
    const seen: string[] = []
    const scheduler = new Scheduler<string>((key) => {
      seen.push(key)
      if (key === 'a') scheduler.cancel('b')
    }, clock)
    scheduler.schedule('a', t0 + 1, '')
    scheduler.schedule('b', t0 + 2, '')
    scheduler.schedule('c', t0 + 3, '')
    clock.setNow(t0 + 10)
    clock.fireNext()
    expect(seen).toEqual(['a', 'c'])
  })

  it('close() drops every entry and the timer, and the scheduler can be used again', () => {
    const { clock, fired, scheduler, t0 } = setup()
    scheduler.schedule('a', t0 + 100, 'a')
    scheduler.schedule('b', t0 + 200, 'b')
    scheduler.close()
    expect(scheduler.size).toBe(0)
    expect(scheduler.nextDueAt()).toBeUndefined()
    expect(clock.armed).toBe(0)
    clock.advance(1_000)
    expect(fired).toEqual([])

    scheduler.schedule('c', t0 + 1_500, 'c')
    clock.advance(500)
    expect(fired.map((f) => f.key)).toEqual(['c'])
  })

  it('rejects a non-finite due time without disturbing the timer', () => {
    const { clock, scheduler, t0 } = setup()
    scheduler.schedule('a', t0 + 100, 'a')
    expect(() => scheduler.schedule('b', Number.NaN, 'b')).toThrow(/'dueAt'/)
    expect(scheduler.size).toBe(1)
    expect(clock.delays).toEqual([100])
  })
})

describe('Scheduler with systemClock under vitest fake timers', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('picks up the faked globals and fires a 30-day job at its due time, not before', () => {
    vi.useFakeTimers({ now: Date.UTC(2030, 0, 1) })
    const spy = vi.spyOn(globalThis, 'setTimeout')
    const fired: number[] = []
    const scheduler = new Scheduler<string>(() => fired.push(Date.now()), systemClock)
    const dueAt = Date.now() + 30 * DAY
    scheduler.schedule('far', dueAt, 'x')
    expect(spy.mock.calls.every(([, ms]) => (ms ?? 0) <= MAX_TIMER_DELAY)).toBe(true)
    expect(vi.getTimerCount()).toBe(1)

    vi.advanceTimersByTime(30 * DAY - 1)
    expect(fired).toEqual([])
    expect(vi.getTimerCount()).toBe(1)
    vi.advanceTimersByTime(1)
    expect(fired).toEqual([dueAt])
    expect(vi.getTimerCount()).toBe(0)
    spy.mockRestore()
  })
})
