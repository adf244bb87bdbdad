import { urlAlphabet } from 'nanoid'
import { describe, expect, it } from 'vitest'
import { MAX_SLOTS, newJobId, slotOf } from '../../src/protocol/job-id.js'
import { JobTable } from '../../src/distributor/job-table.js'
import type { TrackedJob } from '../../src/distributor/tracked-job.js'
import { ownString, pack, unpack } from '../../src/protocol/msgpack.js'

describe('newJobId', () => {
  it('makes 21 characters of the URL-safe alphabet, distinct across pool refills', () => {
    // 5,000 ids draw the random pool several times over; all name the same slot.
    const ids = Array.from({ length: 5_000 }, () => newJobId(7))
    const allowed = new Set(urlAlphabet)
    for (const id of ids) {
      expect(id).toHaveLength(21)
      expect([...id].every((c) => allowed.has(c))).toBe(true)
    }
    expect(new Set(ids).size).toBe(ids.length)
  })

  it('uses the whole alphabet in the random part', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 200; i++) for (const c of newJobId(0).slice(0, 16)) seen.add(c)
    expect(seen.size).toBe(64)
  })

  it('never starts with a dash (an id must not read as an option on a command line)', () => {
    const firsts = new Set<string>()
    for (let i = 0; i < 5000; i++) firsts.add(newJobId(0)[0] as string)
    expect(firsts.has('-')).toBe(false)
    expect(firsts.size).toBe(63)
  })

  it('names its slot, read back by slotOf', () => {
    for (const slot of [0, 1, 63, 64, 4095, 4096, 1_000_000, MAX_SLOTS - 1]) expect(slotOf(newJobId(slot))).toBe(slot)
  })

  it('slotOf refuses what is not an id of this format', () => {
    const id = newJobId(5)
    for (const bad of ['', 'short', `${id}x`, `${id.slice(0, 20)}!`, `${id.slice(0, 20)}é`])
      expect(slotOf(bad)).toBe(-1)
    // A public cancel(id) may be handed anything.
    for (const bad of [undefined, null, 42, Array.from({ length: 21 }, () => 'A')])
      expect(slotOf(bad as unknown as string)).toBe(-1)
  })
})

describe('JobTable', () => {
  const jobWith = (id: string) => ({ id }) as TrackedJob

  it('finds a job by its id, and nothing once it is deleted', () => {
    const table = new JobTable()
    const job = jobWith(table.newId())
    table.add(job)
    expect(table.get(job.id)).toBe(job)
    expect(table.size).toBe(1)
    table.delete(job)
    expect(table.get(job.id)).toBeUndefined()
    expect(table.size).toBe(0)
  })

  it('reuses a freed slot under a new id; the old id does not find the new job', () => {
    const table = new JobTable()
    const first = jobWith(table.newId())
    table.add(first)
    table.delete(first)
    const second = jobWith(table.newId())
    table.add(second)
    expect(slotOf(second.id)).toBe(slotOf(first.id))
    expect(second.id).not.toBe(first.id)
    expect(table.get(first.id)).toBeUndefined()
    expect(table.get(second.id)).toBe(second)
  })

  it('lists every job held and finds nothing for foreign strings', () => {
    const table = new JobTable()
    const jobs = Array.from({ length: 100 }, () => {
      const job = jobWith(table.newId())
      table.add(job)
      return job
    })
    for (const job of jobs.filter((_, i) => i % 3 === 0)) table.delete(job)
    expect([...table.values()]).toEqual(jobs.filter((_, i) => i % 3 !== 0))
    expect(table.get('not-an-id')).toBeUndefined()
    expect(table.get(newJobId(99_999))).toBeUndefined()
    table.clear()
    expect(table.size).toBe(0)
    expect([...table.values()]).toEqual([])
  })

  it('starts again from slot 0 once a burst has drained, and old ids find nothing', () => {
    const table = new JobTable()
    const burst = Array.from({ length: 5_000 }, () => {
      const job = jobWith(table.newId())
      table.add(job)
      return job
    })
    for (const job of burst) table.delete(job)
    // The last freed slot would be reused next had the table kept its peak's arrays.
    const next = jobWith(table.newId())
    table.add(next)
    expect(slotOf(next.id)).toBe(0)
    expect(table.get(burst[0]!.id)).toBeUndefined()
    expect(table.get(next.id)).toBe(next)
    expect([...table.values()]).toEqual([next])
  })
})

describe('ownString', () => {
  it('copies a string decoded from a frame, short or long, one-byte or not', () => {
    const samples = ['', 'V1StGXR8_Z5jdHi6B-myT', 'ünïcödé ✓ 🚀', 'x'.repeat(300), '€'.repeat(1000)]
    const decoded = unpack(pack(samples)) as string[]
    expect(decoded.map(ownString)).toEqual(samples)
  })

  it('keeps code units msgpack could not carry (a lone surrogate)', () => {
    for (const s of ['\ud800 lone', '\udc00'.repeat(300)]) expect(ownString(s)).toBe(s)
  })
})
