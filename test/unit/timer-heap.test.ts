import { describe, it, expect } from 'vitest'
import { TimerHeap } from '../../src/scheduling/timer-heap.js'
import { seededRandom } from '../helpers/prng.js'

interface Ref {
  key: string
  dueAt: number
  seq: number
  item: number
}

function byDueThenSeq(a: Ref, b: Ref): number {
  return a.dueAt - b.dueAt || a.seq - b.seq
}

function drain<T>(heap: TimerHeap<T>): string[] {
  const keys: string[] = []
  for (let e = heap.pop(); e !== undefined; e = heap.pop()) keys.push(e.key)
  return keys
}

describe('TimerHeap', () => {
  it('keeps (dueAt, insertion) order against a sorted reference over 10k random ops', () => {
    const random = seededRandom(0xc0ffee)
    const heap = new TimerHeap<number>()
    const ref = new Map<string, Ref>()
    let seq = 0
    let pops = 0
    let replaces = 0
    let removes = 0

    for (let op = 0; op < 10_000; op++) {
      const r = random()
      // Few distinct due times, so ties are common and the seq tie-break is exercised.
      const dueAt = Math.floor(random() * 50)
      // Keys come from a bounded pool so pushes often hit an existing key (a replace).
      const key = `k${Math.floor(random() * 400)}`
      if (r < 0.55) {
        if (ref.has(key)) replaces++
        heap.push(key, dueAt, op)
        ref.set(key, { key, dueAt, seq: seq++, item: op })
      } else if (r < 0.75) {
        const existed = ref.delete(key)
        if (existed) removes++
        expect(heap.remove(key)).toBe(existed)
      } else {
        const expected = [...ref.values()].sort(byDueThenSeq)[0]
        const got = heap.pop()
        if (expected === undefined) {
          expect(got).toBeUndefined()
        } else {
          pops++
          expect(got).toMatchObject({ key: expected.key, dueAt: expected.dueAt, item: expected.item })
          ref.delete(expected.key)
        }
      }
      expect(heap.size).toBe(ref.size)
    }

    // The sequence must actually have exercised every path, or the test proves little.
    expect(pops).toBeGreaterThan(1000)
    expect(replaces).toBeGreaterThan(500)
    expect(removes).toBeGreaterThan(500)

    const expectedRest = [...ref.values()].sort(byDueThenSeq).map((e) => e.key)
    expect(expectedRest.length).toBeGreaterThan(0)
    expect(heap.peek()?.key).toBe(expectedRest[0])
    expect(drain(heap)).toEqual(expectedRest)
    expect(heap.size).toBe(0)
  })

  it('pops equal due times in insertion order', () => {
    const heap = new TimerHeap<string>()
    const keys = Array.from({ length: 100 }, (_, i) => `job-${i}`)
    // Interleave a later due time so the ties do not simply arrive in heap-array order.
    keys.forEach((k, i) => {
      heap.push(k, 1000, k)
      heap.push(`late-${i}`, 2000, k)
    })
    heap.push('early', 999, 'early')
    const order = drain(heap)
    expect(order[0]).toBe('early')
    expect(order.slice(1, 101)).toEqual(keys)
    expect(order.slice(101)).toEqual(keys.map((_, i) => `late-${i}`))
  })

  it('replaces an entry by key: new due time, new item, and a fresh place among ties', () => {
    const heap = new TimerHeap<string>()
    heap.push('a', 10, 'a1')
    heap.push('b', 10, 'b1')
    heap.push('c', 30, 'c1')
    heap.push('a', 10, 'a2') // same due time: now behind b, as if newly inserted
    expect(heap.size).toBe(3)
    expect(heap.get('a')?.item).toBe('a2')

    heap.push('c', 5, 'c2') // moves up to the top
    expect(heap.peek()).toMatchObject({ key: 'c', dueAt: 5, item: 'c2' })

    heap.push('c', 50, 'c3') // and back down
    expect(drain(heap)).toEqual(['b', 'a', 'c'])
  })

  it('remove, has, peek and clear', () => {
    const heap = new TimerHeap<number>()
    for (let i = 0; i < 20; i++) heap.push(`k${i}`, 100 - i, i)
    expect(heap.has('k5')).toBe(true)
    expect(heap.remove('k5')).toBe(true)
    expect(heap.has('k5')).toBe(false)
    expect(heap.remove('k5')).toBe(false)
    expect(heap.peek()).toMatchObject({ key: 'k19', dueAt: 81 })
    expect(heap.remove('k19')).toBe(true)
    expect(heap.peek()?.key).toBe('k18')
    expect(heap.size).toBe(18)

    heap.clear()
    expect(heap.size).toBe(0)
    expect(heap.peek()).toBeUndefined()
    expect(heap.pop()).toBeUndefined()
    expect(heap.has('k1')).toBe(false)
    // Still usable after clear.
    heap.push('k1', 1, 1)
    expect(heap.pop()?.key).toBe('k1')
  })

  it('rejects a non-finite due time, which would corrupt the order', () => {
    const heap = new TimerHeap<number>()
    heap.push('ok', 1, 1)
    expect(() => heap.push('bad', Number.NaN, 0)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
    expect(() => heap.push('ok', Infinity, 0)).toThrow(/'dueAt' must be a finite number/)
    expect(heap.size).toBe(1)
    expect(heap.peek()).toMatchObject({ key: 'ok', dueAt: 1 })
  })
})
