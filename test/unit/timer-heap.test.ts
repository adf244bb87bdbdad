import { describe, it, expect } from 'vitest'
import { TimerHeap } from '../../src/scheduling/timer-heap.js'
import { seededRandom } from '../helpers/prng.js'
import { type Entry, entry } from '../helpers/timer-entry.js'

interface Ref {
  entry: Entry
  dueAt: number
  seq: number
}

function byDueThenSeq(a: Ref, b: Ref): number {
  return a.dueAt - b.dueAt || a.seq - b.seq
}

function drain(heap: TimerHeap<Entry>): string[] {
  const names: string[] = []
  for (let e = heap.pop(); e !== undefined; e = heap.pop()) names.push(e.name)
  return names
}

describe('TimerHeap', () => {
  it('keeps (dueAt, insertion) order against a sorted reference over 10k random ops', () => {
    const random = seededRandom(0xc0ffee)
    const heap = new TimerHeap<Entry>()
    // A bounded pool of entries so pushes often hit one already in the heap (a move).
    const pool = Array.from({ length: 400 }, (_, i) => entry(`k${i}`))
    const ref = new Map<Entry, Ref>()
    let seq = 0
    let pops = 0
    let replaces = 0
    let removes = 0

    for (let op = 0; op < 10_000; op++) {
      const r = random()
      // Few distinct due times, so ties are common and the seq tie-break is exercised.
      const dueAt = Math.floor(random() * 50)
      const e = pool[Math.floor(random() * pool.length)] as Entry
      if (r < 0.55) {
        if (ref.has(e)) replaces++
        heap.push(e, dueAt)
        ref.set(e, { entry: e, dueAt, seq: seq++ })
        expect(e.dueAt).toBe(dueAt)
      } else if (r < 0.75) {
        const existed = ref.delete(e)
        if (existed) removes++
        expect(heap.remove(e)).toBe(existed)
        expect(e.timerIndex).toBe(-1)
      } else {
        const expected = [...ref.values()].sort(byDueThenSeq)[0]
        const got = heap.pop()
        if (expected === undefined) {
          expect(got).toBeUndefined()
        } else {
          pops++
          expect(got).toBe(expected.entry)
          expect(got?.dueAt).toBe(expected.dueAt)
          expect(got?.timerIndex).toBe(-1)
          ref.delete(expected.entry)
        }
      }
      expect(heap.size).toBe(ref.size)
      // has() reads the entry's own slot, so it must agree with the reference after every op.
      expect(heap.has(e)).toBe(ref.has(e))
    }

    // The sequence must actually have exercised every path, or the test proves little.
    expect(pops).toBeGreaterThan(1000)
    expect(replaces).toBeGreaterThan(500)
    expect(removes).toBeGreaterThan(500)

    expect(pool.filter((e) => heap.has(e))).toHaveLength(ref.size)
    const expectedRest = [...ref.values()].sort(byDueThenSeq).map((r) => r.entry.name)
    expect(expectedRest.length).toBeGreaterThan(0)
    expect(heap.peek()?.name).toBe(expectedRest[0])
    expect(drain(heap)).toEqual(expectedRest)
    expect(heap.size).toBe(0)
    expect(pool.every((e) => e.timerIndex === -1)).toBe(true)
  })

  it('keeps the order when most entries arrive in due order (the run), with cancels, ties and stragglers', () => {
    const random = seededRandom(0x5eed)
    const heap = new TimerHeap<Entry>()
    // Sorted by (dueAt, seq): binary insertion keeps the reference cheap over 30k ops.
    const ref: Ref[] = []
    const insert = (r: Ref) => {
      let lo = 0
      let hi = ref.length
      while (lo < hi) {
        const mid = (lo + hi) >> 1
        if (byDueThenSeq(ref[mid] as Ref, r) < 0) lo = mid + 1
        else hi = mid
      }
      ref.splice(lo, 0, r)
    }
    const take = (e: Entry) =>
      ref.splice(
        ref.findIndex((r) => r.entry === e),
        1,
      )
    let seq = 0
    let due = 0
    let stragglers = 0
    let cancels = 0
    let frontCancels = 0
    let maxSize = 0
    for (let op = 0; op < 30_000; op++) {
      const r = random()
      if (r < 0.5) {
        // Mostly due no earlier than the last (ties too); now and then an earlier one.
        const straggler = random() < 0.05
        if (straggler) stragglers++
        else due += Math.floor(random() * 3)
        const e = entry(`e${seq}`)
        const dueAt = straggler ? due - 1 - Math.floor(random() * 50) : due
        heap.push(e, dueAt)
        insert({ entry: e, dueAt, seq: seq++ })
      } else if (r < 0.62 && ref.length > 0) {
        // Cancel: the front half of the time, else anywhere.
        const at = random() < 0.5 ? 0 : Math.floor(random() * ref.length)
        if (at === 0) frontCancels++
        cancels++
        const victim = (ref[at] as Ref).entry
        take(victim)
        expect(heap.remove(victim)).toBe(true)
        expect(heap.has(victim)).toBe(false)
        expect(heap.remove(victim)).toBe(false)
      } else if (r < (op < 15_000 ? 0.66 : 1)) {
        // Pops are rare in the first half, so that the queue grows past the run's cut.
        const expected = ref.shift()
        if (expected !== undefined) expect(heap.peekSeq()).toBe(expected.seq)
        expect(heap.pop()).toBe(expected?.entry)
      }
      maxSize = Math.max(maxSize, ref.length)
      expect(heap.size).toBe(ref.length)
      expect(heap.peek()).toBe(ref[0]?.entry)
    }
    expect(stragglers).toBeGreaterThan(100)
    expect(frontCancels).toBeGreaterThan(500)
    expect(cancels - frontCancels).toBeGreaterThan(500)
    expect(maxSize).toBeGreaterThan(2_000)
    expect(drain(heap)).toEqual(ref.map((r) => r.entry.name))
  })

  it('keeps the order while it grows to thousands of entries and shrinks back', () => {
    const random = seededRandom(0xbeef)
    const heap = new TimerHeap<Entry>()
    const ref: Ref[] = []
    let seq = 0
    const pushSome = (n: number) => {
      for (let i = 0; i < n; i++) {
        const e = entry(`e${seq}`)
        const dueAt = Math.floor(random() * 1000)
        heap.push(e, dueAt)
        ref.push({ entry: e, dueAt, seq: seq++ })
      }
      ref.sort(byDueThenSeq)
    }
    const popSome = (n: number) => {
      for (let i = 0; i < n; i++) expect(heap.pop()).toBe((ref.shift() as Ref).entry)
    }
    pushSome(5_000)
    popSome(4_950)
    pushSome(2_000)
    popSome(2_040)
    pushSome(300)
    expect(drain(heap)).toEqual(ref.map((r) => r.entry.name))
  })

  it('pops equal due times in insertion order', () => {
    const heap = new TimerHeap<Entry>()
    const names = Array.from({ length: 100 }, (_, i) => `job-${i}`)
    // Interleave a later due time so the ties do not simply arrive in heap-array order.
    names.forEach((name, i) => {
      heap.push(entry(name), 1000)
      heap.push(entry(`late-${i}`), 2000)
    })
    heap.push(entry('early'), 999)
    const order = drain(heap)
    expect(order[0]).toBe('early')
    expect(order.slice(1, 101)).toEqual(names)
    expect(order.slice(101)).toEqual(names.map((_, i) => `late-${i}`))
  })

  it('re-pushing an entry moves it: new due time and a fresh place among ties', () => {
    const heap = new TimerHeap<Entry>()
    const a = entry('a')
    const b = entry('b')
    const c = entry('c')
    heap.push(a, 10)
    heap.push(b, 10)
    heap.push(c, 30)
    heap.push(a, 10) // same due time: now behind b, as if newly inserted
    expect(heap.size).toBe(3)
    expect(heap.has(a)).toBe(true)

    heap.push(c, 5) // moves up to the top
    expect(heap.peek()).toBe(c)
    expect(c.dueAt).toBe(5)

    heap.push(c, 50) // and back down
    expect(c.dueAt).toBe(50)
    expect(drain(heap)).toEqual(['b', 'a', 'c'])
  })

  it('remove, has, peek and clear', () => {
    const heap = new TimerHeap<Entry>()
    const entries = Array.from({ length: 20 }, (_, i) => entry(`k${i}`))
    for (const [i, e] of entries.entries()) heap.push(e, 100 - i)
    const k = (i: number): Entry => entries[i] as Entry
    const [k1, k5, k18, k19] = [k(1), k(5), k(18), k(19)]
    expect(heap.has(k5)).toBe(true)
    expect(heap.remove(k5)).toBe(true)
    expect(heap.has(k5)).toBe(false)
    expect(heap.remove(k5)).toBe(false)
    expect(heap.peek()).toBe(k19)
    expect(k19.dueAt).toBe(81)
    expect(heap.remove(k19)).toBe(true)
    expect(heap.peek()).toBe(k18)
    expect(heap.size).toBe(18)

    heap.clear()
    expect(heap.size).toBe(0)
    expect(heap.peek()).toBeUndefined()
    expect(heap.pop()).toBeUndefined()
    expect(heap.has(k1)).toBe(false)
    // Still usable after clear, including for the entries it dropped.
    heap.push(k1, 1)
    expect(heap.pop()).toBe(k1)
  })

  it('has() is false for an entry never pushed, popped, removed or cleared', () => {
    const heap = new TimerHeap<Entry>()
    const never = entry('never')
    expect(heap.has(never)).toBe(false)
    expect(heap.remove(never)).toBe(false)

    const popped = entry('popped')
    const removed = entry('removed')
    const kept = entry('kept')
    heap.push(popped, 1)
    heap.push(removed, 2)
    heap.push(kept, 3)
    // A stale slot would point at the index of whatever entry moved into its place.
    expect(heap.pop()).toBe(popped)
    expect(heap.has(popped)).toBe(false)
    expect(popped.timerIndex).toBe(-1)
    expect(heap.remove(removed)).toBe(true)
    expect(heap.has(removed)).toBe(false)
    expect(removed.timerIndex).toBe(-1)
    expect(heap.has(kept)).toBe(true)
    expect(heap.has(never)).toBe(false)

    const more = Array.from({ length: 10 }, (_, i) => entry(`m${i}`))
    for (const [i, e] of more.entries()) heap.push(e, 10 + i)
    heap.clear()
    // clear() must reset every slot, or a later push would take the entry for a member.
    for (const e of [kept, ...more]) {
      expect(heap.has(e)).toBe(false)
      expect(e.timerIndex).toBe(-1)
    }
    heap.push(more[3] as Entry, 7)
    expect(heap.size).toBe(1)
    expect(heap.has(more[3] as Entry)).toBe(true)
    expect(heap.has(kept)).toBe(false)
  })

  it('an entry in one heap is not a member of another that holds an entry at the same index', () => {
    const first = new TimerHeap<Entry>()
    const second = new TimerHeap<Entry>()
    const a = entry('a')
    const b = entry('b')
    first.push(a, 1)
    second.push(b, 1)
    // Both sit at the same place, so only the identity check tells them apart.
    expect(a.timerIndex).toBe(b.timerIndex)
    expect(first.has(a)).toBe(true)
    expect(second.has(a)).toBe(false)
    expect(first.has(b)).toBe(false)
    expect(second.remove(a)).toBe(false)
    expect(first.remove(b)).toBe(false)
    expect(first.size).toBe(1)
    expect(second.size).toBe(1)
    expect(first.peek()).toBe(a)
    expect(second.peek()).toBe(b)
    expect(a.timerIndex).toBe(b.timerIndex)
  })

  it('rejects a non-finite due time, which would corrupt the order', () => {
    const heap = new TimerHeap<Entry>()
    const ok = entry('ok')
    heap.push(ok, 1)
    expect(() => heap.push(entry('bad'), Number.NaN)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
    expect(() => heap.push(ok, Infinity)).toThrow(/'dueAt' must be a finite number/)
    expect(heap.size).toBe(1)
    expect(heap.peek()).toBe(ok)
    // The rejected push must not have touched the entry it was given.
    expect(ok.dueAt).toBe(1)
    expect(heap.has(ok)).toBe(true)
  })
})
