import { describe, expect, it } from 'vitest'
import { ErrorCode, StoreTimeoutError } from '../../src/errors.js'
import { Scheduler } from '../../src/scheduling/scheduler.js'
import type { Timer } from '../../src/scheduling/timer-heap.js'
import { MemoryStore } from '../../src/storage/memory-store.js'
import { StoreGuard } from '../../src/storage/store-guard.js'
import { hasLeases, type NodeLeases, type Store } from '../../src/storage/store.js'
import { FakeClock } from '../helpers/fake-clock.js'

const DEADLINE = 1000

function setup(): { clock: FakeClock; guard: StoreGuard; timers: Scheduler<Timer> } {
  const clock = new FakeClock()
  const timers = new Scheduler<Timer>((t) => t.fire(), clock)
  const guard = new StoreGuard(
    { now: () => clock.now(), after: (timer, ms) => timers.schedule(timer, clock.now() + ms) },
    DEADLINE,
  )
  return { clock, guard, timers }
}

/** An operation the test answers by hand, as a store that may hang would. */
function manual<T = void>(): { op: () => Promise<T>; answer: (v: T) => void; fail: (e: Error) => void } {
  let answer!: (v: T) => void
  let fail!: (e: Error) => void
  const promise = new Promise<T>((resolve, reject) => {
    answer = resolve
    fail = reject
  })
  return { op: () => promise, answer, fail }
}

/** Settles microtasks: the guard passes answers on through promise callbacks. */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

describe('StoreGuard', () => {
  it('passes answers and errors through while the store answers', async () => {
    const { guard } = setup()
    const a = manual<number>()
    const b = manual()
    const ra = guard.run(a.op)
    const rb = guard.run(b.op)
    expect(guard.waiting).toBe(2)
    a.answer(7)
    b.fail(new Error('refused'))
    await expect(ra).resolves.toBe(7)
    await expect(rb).rejects.toThrow('refused')
    expect(guard.waiting).toBe(0)
  })

  it('a store silent for the deadline: every waiting operation fails with ERR_STORE_TIMEOUT, in the order issued', async () => {
    const { clock, guard } = setup()
    const order: string[] = []
    const first = guard.run(manual().op).catch((e: StoreTimeoutError) => order.push(`first:${e.code}`))
    clock.advance(400)
    const second = guard.run(manual().op).catch((e: StoreTimeoutError) => order.push(`second:${e.code}`))
    clock.advance(DEADLINE - 401)
    await flush()
    expect(order).toEqual([])
    clock.advance(1)
    await Promise.all([first, second])
    expect(order).toEqual([`first:${ErrorCode.STORE_TIMEOUT}`, `second:${ErrorCode.STORE_TIMEOUT}`])
    expect(guard.waiting).toBe(0)
  })

  it('a slow store that keeps answering is never down, however long its queue waits in all', async () => {
    const { clock, guard } = setup()
    const ops = Array.from({ length: 10 }, () => manual<number>())
    const results = ops.map((o) => guard.run(o.op))
    // Each answer comes 900 ms after the one before: 9 s for the last, never 1 s of silence.
    for (let i = 0; i < ops.length; i++) {
      clock.advance(900)
      ;(ops[i] as ReturnType<typeof manual<number>>).answer(i)
      await flush()
    }
    expect(await Promise.all(results)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  })

  it('one stall shorter than the deadline (a fork, DEBUG SLEEP) does not count', async () => {
    const { clock, guard } = setup()
    const op = manual<string>()
    const result = guard.run(op.op)
    clock.advance(DEADLINE - 1)
    op.answer('late but fine')
    await expect(result).resolves.toBe('late but fine')
  })

  it('an answer after the deadline is dropped; the guard keeps working for later operations', async () => {
    const { clock, guard } = setup()
    const hung = manual<string>()
    const result = guard.run(hung.op)
    clock.advance(DEADLINE)
    await expect(result).rejects.toBeInstanceOf(StoreTimeoutError)
    hung.answer('too late')
    const next = manual<string>()
    const later = guard.run(next.op)
    next.answer('back')
    await expect(later).resolves.toBe('back')
  })

  it('costs no timer while the store is idle: armed by the first operation, gone after one look once all answered', async () => {
    const { clock, guard, timers } = setup()
    expect(timers.size).toBe(0)
    const op = manual()
    const result = guard.run(op.op)
    expect(timers.size).toBe(1)
    op.answer()
    await result
    clock.advance(DEADLINE)
    expect(timers.size).toBe(0)
    expect(clock.armed).toBe(0)
  })

  it('wraps a store so that every operation waits under the deadline, lease operations too; one wrapper per store', async () => {
    const { clock, guard } = setup()
    const hung = new Promise<never>(() => {})
    class HungLeases extends MemoryStore implements NodeLeases {
      override saveJobs(): Promise<void> {
        return hung
      }
      acquireLease(): Promise<string> {
        return hung
      }
      releaseLease(): Promise<void> {
        return hung
      }
      listNodes(): Promise<string[]> {
        return hung
      }
      forNode(): Store {
        return peer
      }
    }
    const peer = new HungLeases()
    const store = guard.wrap(new HungLeases())
    expect(hasLeases(store)).toBe(true)
    expect(store.durable).toBe(false)
    const leases = store as Store & NodeLeases
    expect(leases.forNode('other')).toBe(leases.forNode('other'))
    const save = store.saveJobs([])
    const lease = leases.acquireLease('n', 'n', 100)
    const adopted = leases.forNode('other').saveJobs([])
    clock.advance(DEADLINE)
    for (const p of [save, lease, adopted]) await expect(p).rejects.toMatchObject({ code: ErrorCode.STORE_TIMEOUT })
    expect(hasLeases(guard.wrap(new MemoryStore()))).toBe(false)
  })
})
