import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { LiveJobs } from '../../src/node/live-jobs.js'
import { MAX_SLOTS, newJobId } from '../../src/protocol/job-id.js'

interface Job {
  id: string
}

describe('LiveJobs', () => {
  it('finds jobs of two distributors that use the same slot, and ids of any format', () => {
    const table = new LiveJobs<Job>()
    const a = { id: newJobId(7) }
    const b = { id: newJobId(7) }
    const resumed = { id: 'job-from-an-older-format' }
    const far = { id: newJobId(MAX_SLOTS - 1) }
    for (const job of [a, b, resumed, far]) table.add(job)
    for (const job of [a, b, resumed, far]) expect(table.get(job.id)).toBe(job)
    expect(table.size).toBe(4)
    expect(new Set(table.values())).toEqual(new Set([a, b, resumed, far]))
    table.delete(a)
    expect(table.get(a.id)).toBeUndefined()
    expect(table.get(b.id)).toBe(b)
    // Its slot is free again: a later job with it is found too, and so is b still.
    const c = { id: newJobId(7) }
    table.add(c)
    expect(table.get(c.id)).toBe(c)
    expect(table.get(b.id)).toBe(b)
    expect(table.size).toBe(4)
  })

  it('deleting a job twice, or one it never held, changes nothing', () => {
    const table = new LiveJobs<Job>()
    const job = { id: newJobId(1) }
    table.add(job)
    table.delete({ id: job.id })
    expect(table.get(job.id)).toBe(job)
    table.delete(job)
    table.delete(job)
    expect(table.size).toBe(0)
    expect([...table.values()]).toEqual([])
  })

  it('agrees with a Map for any sequence of adds and deletes', () => {
    // A few slots and ids drawn from them, so that slots are shared and reused.
    const ids = [0, 0, 1, 1, 2, 5000].map((slot) => newJobId(slot)).concat(['plain-1', 'plain-2'])
    const op = fc.record({ add: fc.boolean(), which: fc.nat(ids.length - 1) })
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const table = new LiveJobs<Job>()
        const model = new Map<string, Job>()
        for (const { add, which } of ops) {
          const id = ids[which] as string
          const held = model.get(id)
          if (add && held === undefined) {
            const job = { id }
            table.add(job)
            model.set(id, job)
          } else if (!add && held !== undefined) {
            table.delete(held)
            model.delete(id)
          }
          for (const each of ids) expect(table.get(each)).toBe(model.get(each))
          expect(table.size).toBe(model.size)
        }
        expect(new Set(table.values())).toEqual(new Set(model.values()))
      }),
    )
  })
})
