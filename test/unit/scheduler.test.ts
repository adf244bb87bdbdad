import { describe, it, expect, vi, afterEach } from 'vitest'
import { DRAIN_BUDGET_MS, Scheduler } from '../../src/scheduling/scheduler.js'
import { Timer } from '../../src/scheduling/timer-heap.js'
import { MAX_TIMER_DELAY, systemClock } from '../../src/scheduling/clock.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { type Entry, entry } from '../helpers/timer-entry.js'

const DAY = 24 * 60 * 60 * 1000

interface Fired {
  name: string
  dueAt: number
  at: number
}

function setup() {
  const clock = new FakeClock()
  const fired: Fired[] = []
  const scheduler = new Scheduler<Entry>((item) => {
    fired.push({ name: item.name, dueAt: item.dueAt, at: clock.now() })
  }, clock)
  return { clock, fired, scheduler, t0: clock.now() }
}

describe('Scheduler', () => {
  it('arms a clamped timer for a due time 30 days ahead and fires exactly at the due instant', () => {
    const { clock, fired, scheduler, t0 } = setup()
    const dueAt = t0 + 30 * DAY
    const far = entry('far')
    scheduler.schedule(far, dueAt)
    expect(far.dueAt).toBe(dueAt)

    expect(clock.delays).toEqual([MAX_TIMER_DELAY])
    expect(clock.allUnrefed).toBe(true)

    clock.advanceTo(dueAt - 1)
    expect(fired).toEqual([])
    // It re-armed at each clamped wake-up (30 days is about 1.2 × 2^31 ms).
    expect(clock.delays.length).toBeGreaterThanOrEqual(2)
    expect(clock.delays.every((d) => d >= 0 && d <= MAX_TIMER_DELAY)).toBe(true)
    expect(scheduler.has(far)).toBe(true)

    clock.advanceTo(dueAt)
    expect(fired).toEqual([{ name: 'far', dueAt, at: dueAt }])
    expect(scheduler.size).toBe(0)
    expect(scheduler.has(far)).toBe(false)
    expect(clock.armed).toBe(0)
    expect(clock.maxArmed).toBe(1)
  })

  it('after a late wake-up runs everything due, in due order, and leaves the rest', () => {
    const { clock, fired, scheduler, t0 } = setup()
    scheduler.schedule(entry('c'), t0 + 300)
    scheduler.schedule(entry('a'), t0 + 100)
    scheduler.schedule(entry('b2'), t0 + 200)
    scheduler.schedule(entry('b1'), t0 + 200) // same due time: insertion order loses to b2
    scheduler.schedule(entry('later'), t0 + 10_000)
    // The process was suspended: time jumps past several due times without any timer firing.
    clock.setNow(t0 + 5_000)
    expect(clock.fireNext()).toBe(true)

    expect(fired.map((f) => f.name)).toEqual(['a', 'b2', 'b1', 'c'])
    expect(fired.every((f) => f.at === t0 + 5_000)).toBe(true)
    expect(scheduler.size).toBe(1)
    expect(scheduler.nextDueAt()).toBe(t0 + 10_000)
    expect(clock.armed).toBe(1)
    expect(clock.nextTimerAt).toBe(t0 + 10_000)
  })

  it('an early wake-up runs nothing and re-arms for the remaining time', () => {
    const { clock, fired, scheduler, t0 } = setup()
    scheduler.schedule(entry('a'), t0 + 1_000)
    clock.setNow(t0 + 400) // the wall clock lags the timer
    expect(clock.fireNext()).toBe(true)

    expect(fired).toEqual([])
    expect(clock.armed).toBe(1)
    expect(clock.delays).toEqual([1_000, 600])
    clock.advance(599)
    expect(fired).toEqual([])
    clock.advance(1)
    expect(fired.map((f) => [f.name, f.at])).toEqual([['a', t0 + 1_000]])
  })

  it('cancel prevents firing and disarms when nothing is left', () => {
    const { clock, fired, scheduler, t0 } = setup()
    const a = entry('a')
    const b = entry('b')
    scheduler.schedule(a, t0 + 100)
    scheduler.schedule(b, t0 + 200)
    expect(scheduler.cancel(a)).toBe(true)
    expect(scheduler.cancel(a)).toBe(false)
    expect(scheduler.has(a)).toBe(false)
    expect(scheduler.cancel(entry('never'))).toBe(false)
    clock.advance(150)
    expect(fired).toEqual([])
    expect(scheduler.cancel(b)).toBe(true)
    expect(clock.armed).toBe(0)
    clock.advance(10_000)
    expect(fired).toEqual([])
    expect(scheduler.size).toBe(0)
  })

  it('keeps a single native timer and re-arms only for an earlier entry', () => {
    const { clock, fired, scheduler, t0 } = setup()
    scheduler.schedule(entry('a'), t0 + 1_000)
    scheduler.schedule(entry('b'), t0 + 2_000) // later: no re-arm
    scheduler.schedule(entry('c'), t0 + 1_500) // later: no re-arm
    expect(clock.delays).toEqual([1_000])
    scheduler.schedule(entry('d'), t0 + 500) // earlier: re-arm
    expect(clock.delays).toEqual([1_000, 500])
    expect(clock.armed).toBe(1)
    expect(scheduler.nextDueAt()).toBe(t0 + 500)

    for (let i = 0; i < 1_000; i++) scheduler.schedule(entry(`bulk${i}`), t0 + 3_000 + i)
    expect(clock.delays).toHaveLength(2)

    clock.advance(10_000)
    expect(fired.slice(0, 4).map((f) => f.name)).toEqual(['d', 'a', 'c', 'b'])
    expect(fired).toHaveLength(1_004)
    expect(fired.every((f) => f.at === f.dueAt)).toBe(true)
    expect(clock.maxArmed).toBe(1)
  })

  it('rescheduling an entry moves it rather than adding a second one', () => {
    const { clock, fired, scheduler, t0 } = setup()
    const a = entry('a')
    scheduler.schedule(a, t0 + 100)
    scheduler.schedule(a, t0 + 300)
    expect(scheduler.size).toBe(1)
    expect(a.dueAt).toBe(t0 + 300)
    clock.advance(200)
    expect(fired).toEqual([])
    clock.advance(100)
    expect(fired).toEqual([{ name: 'a', dueAt: t0 + 300, at: t0 + 300 }])
  })

  it('a throwing onDue does not stop the drain or break the scheduler', () => {
    const clock = new FakeClock()
    const t0 = clock.now()
    const seen: string[] = []
    const errors: unknown[] = []
    const scheduler = new Scheduler<Entry>(
      (item) => {
        seen.push(item.name)
        if (item.name.startsWith('bad')) throw new Error(`boom ${item.name}`)
      },
      clock,
      {
        onError: (err) => {
          errors.push(err)
          if ((err as Error).message === 'boom bad2') throw new Error('onError itself fails')
        },
      },
    )
    scheduler.schedule(entry('bad1'), t0 + 10)
    scheduler.schedule(entry('good1'), t0 + 10)
    scheduler.schedule(entry('bad2'), t0 + 20)
    scheduler.schedule(entry('good2'), t0 + 30)
    expect(() => clock.advance(30)).not.toThrow()
    expect(seen).toEqual(['bad1', 'good1', 'bad2', 'good2'])
    expect(errors.map((e) => (e as Error).message)).toEqual(['boom bad1', 'boom bad2'])

    scheduler.schedule(entry('after'), t0 + 100)
    clock.advance(100)
    expect(seen.at(-1)).toBe('after')
  })

  it('ignores onDue errors by default', () => {
    const clock = new FakeClock()
    let calls = 0
    const scheduler = new Scheduler<Entry>(() => {
      calls++
      throw new Error('boom')
    }, clock)
    scheduler.schedule(entry('a'), clock.now())
    scheduler.schedule(entry('b'), clock.now())
    expect(() => clock.advance(0)).not.toThrow()
    expect(calls).toBe(2)
  })

  it('runs entries scheduled from onDue for an already-due time on the next timer turn', () => {
    const clock = new FakeClock()
    const t0 = clock.now()
    const runs: Array<[string, number]> = []
    let turn = 0
    const again = entry('again')
    // Recorded, not asserted in onDue: the scheduler contains whatever onDue throws.
    const memberDuringOnDue: boolean[] = []
    const scheduler = new Scheduler<Entry>((item) => {
      memberDuringOnDue.push(scheduler.has(item))
      runs.push([item.name, turn])
      // Re-scheduling itself for "now" must not spin inside one drain.
      if (item === again && runs.filter(([name]) => name === 'again').length < 3) scheduler.schedule(again, clock.now())
    }, clock)
    scheduler.schedule(again, t0 + 10)
    scheduler.schedule(entry('other'), t0 + 10)
    clock.setNow(t0 + 10)

    turn = 1
    clock.fireNext()
    expect(runs).toEqual([
      ['again', 1],
      ['other', 1],
    ])
    expect(scheduler.has(again)).toBe(true)
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
    // Each entry has left the heap before its onDue, which is what lets it schedule itself anew.
    expect(memberDuringOnDue).toEqual([false, false, false, false])
    expect(clock.armed).toBe(0)
    expect(clock.maxArmed).toBe(1)
  })

  it('a drain that has run DRAIN_BUDGET_MS stops and goes on, in order, at the next timer turn', () => {
    const clock = new FakeClock()
    const t0 = clock.now()
    const turns: number[] = []
    let turn = 1
    // Each onDue takes 1 ms of the clock: a drain covers about DRAIN_BUDGET_MS entries.
    const scheduler = new Scheduler<Entry>((item) => {
      turns.push(turn)
      expect(item.name).toBe(`e${turns.length - 1}`)
      clock.setNow(clock.now() + 1)
    }, clock)
    const total = 10 * DRAIN_BUDGET_MS
    for (let i = 0; i < total; i++) scheduler.schedule(entry(`e${i}`), t0)
    clock.setNow(t0 + 1)
    while (clock.fireNext()) turn++
    expect(turns).toHaveLength(total)
    // Every turn stopped once the budget was spent: ten turns of DRAIN_BUDGET_MS entries.
    const perTurn = new Map<number, number>()
    for (const t of turns) perTurn.set(t, (perTurn.get(t) ?? 0) + 1)
    expect([...perTurn.values()]).toEqual(Array.from({ length: 10 }, () => DRAIN_BUDGET_MS))
    expect(clock.delays.slice(1).every((d) => d === 0)).toBe(true)
  })

  it('an entry cancelled by an earlier onDue in the same drain never fires', () => {
    const clock = new FakeClock()
    const t0 = clock.now()
    const seen: string[] = []
    const b = entry('b')
    const scheduler = new Scheduler<Entry>((item) => {
      seen.push(item.name)
      if (item.name === 'a') scheduler.cancel(b)
    }, clock)
    scheduler.schedule(entry('a'), t0 + 1)
    scheduler.schedule(b, t0 + 2)
    scheduler.schedule(entry('c'), t0 + 3)
    clock.setNow(t0 + 10)
    clock.fireNext()
    expect(seen).toEqual(['a', 'c'])
  })

  it('close() drops every entry and the timer, and the scheduler can be used again', () => {
    const { clock, fired, scheduler, t0 } = setup()
    const a = entry('a')
    const b = entry('b')
    scheduler.schedule(a, t0 + 100)
    scheduler.schedule(b, t0 + 200)
    scheduler.close()
    expect(scheduler.size).toBe(0)
    expect(scheduler.nextDueAt()).toBeUndefined()
    expect(clock.armed).toBe(0)
    expect(scheduler.has(a)).toBe(false)
    expect(a.timerIndex).toBe(-1)
    expect(b.timerIndex).toBe(-1)
    clock.advance(1_000)
    expect(fired).toEqual([])

    scheduler.schedule(entry('c'), t0 + 1_500)
    // An entry dropped by close() must be schedulable again as a new entry.
    scheduler.schedule(a, t0 + 1_400)
    expect(scheduler.size).toBe(2)
    clock.advance(500)
    expect(fired.map((f) => f.name)).toEqual(['a', 'c'])
  })

  it('rejects a non-finite due time without disturbing the timer', () => {
    const { clock, scheduler, t0 } = setup()
    scheduler.schedule(entry('a'), t0 + 100)
    expect(() => scheduler.schedule(entry('b'), Number.NaN)).toThrow(/'dueAt'/)
    expect(scheduler.size).toBe(1)
    expect(clock.delays).toEqual([100])
  })
})

describe('Scheduler with Timer entries', () => {
  it('fires each Timer callback at its due time, and a cancelled one never', () => {
    const clock = new FakeClock()
    const t0 = clock.now()
    const calls: Array<[string, number]> = []
    const scheduler = new Scheduler<Timer>((timer) => timer.fire(), clock)
    const a = new Timer(() => calls.push(['a', clock.now()]))
    const b = new Timer(() => calls.push(['b', clock.now()]))
    const c = new Timer(() => calls.push(['c', clock.now()]))
    expect(scheduler.has(a)).toBe(false)
    scheduler.schedule(a, t0 + 100)
    scheduler.schedule(b, t0 + 50)
    scheduler.schedule(c, t0 + 75)
    expect(scheduler.cancel(c)).toBe(true)

    clock.advance(1_000)
    expect(calls).toEqual([
      ['b', t0 + 50],
      ['a', t0 + 100],
    ])
    expect(scheduler.size).toBe(0)
    expect(clock.armed).toBe(0)
  })

  it('a Timer that reschedules itself from its callback repeats without a second native timer', () => {
    const clock = new FakeClock()
    const t0 = clock.now()
    const ticks: number[] = []
    const scheduler = new Scheduler<Timer>((timer) => timer.fire(), clock)
    // The shape of lease upkeep: one Timer object reused for every round.
    const upkeep: Timer = new Timer(() => {
      ticks.push(clock.now())
      if (ticks.length < 3) scheduler.schedule(upkeep, clock.now() + 1_000)
    })
    scheduler.schedule(upkeep, t0 + 1_000)

    clock.advance(10_000)
    expect(ticks).toEqual([t0 + 1_000, t0 + 2_000, t0 + 3_000])
    expect(scheduler.has(upkeep)).toBe(false)
    expect(clock.armed).toBe(0)
    expect(clock.maxArmed).toBe(1)
  })

  it('Timers and other entries share one scheduler and keep (dueAt, insertion) order', () => {
    const clock = new FakeClock()
    const t0 = clock.now()
    const order: string[] = []
    // As the node does: jobs are scheduled as themselves, everything else as a Timer.
    const scheduler = new Scheduler<Entry | Timer>((item) => {
      if (item instanceof Timer) item.fire()
      else order.push(item.name)
    }, clock)
    scheduler.schedule(entry('job1'), t0 + 10)
    scheduler.schedule(new Timer(() => order.push('timer')), t0 + 10)
    scheduler.schedule(entry('job2'), t0 + 10)
    scheduler.schedule(entry('job0'), t0 + 5)

    clock.advance(10)
    expect(order).toEqual(['job0', 'job1', 'timer', 'job2'])
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
    const scheduler = new Scheduler<Entry>(() => fired.push(Date.now()), systemClock)
    const dueAt = Date.now() + 30 * DAY
    scheduler.schedule(entry('far'), dueAt)
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
