import { describe, expect, it } from 'vitest'
import { JobTable } from '../../src/distributor/job-table.js'
import { NO_JOB_OPTIONS, type JobOptions } from '../../src/distributor/job-options.js'
import { decodeSpooled, encodeSpooled } from '../../src/distributor/spool/spooled-job.js'
import { TrackedJob } from '../../src/distributor/tracked-job.js'
import { newJobId, slotOf } from '../../src/protocol/job-id.js'
import { pack } from '../../src/protocol/msgpack.js'

const canceller = { cancel: async () => false }

function tracked(id: string, opts: Readonly<JobOptions> = NO_JOB_OPTIONS, run = 1): TrackedJob {
  const job = new TrackedJob(
    id,
    canceller,
    'greet',
    pack({ name: 'Ann' }),
    1_700_000_000_123,
    opts,
    'greet',
    0,
    undefined,
    undefined,
  )
  job.run = run
  return job
}

describe('spool records', () => {
  it('a job without options reads back as it was written, sharing the one empty options object', () => {
    const job = tracked(newJobId(7))
    const back = decodeSpooled(job.id, encodeSpooled(job))
    expect(back).toEqual({ id: job.id, name: 'greet', args: job.args, dueAt: job.dueAt, run: 1, opts: NO_JOB_OPTIONS })
    expect(back?.opts).toBe(NO_JOB_OPTIONS)
  })

  it('every option a job carries reads back, and a periodic job its run', () => {
    const opts: JobOptions = {
      period: 2.5,
      cron: '*/5 * * * * *',
      tz: 'America/New_York',
      node: 'w1',
      notNode: 'w2',
      defer: true,
      maxAttempt: 3,
      retry: { strategy: 'exponential', base: 2, max: 60, jitter: 0.1 } as unknown as JobOptions['retry'],
      timeout: 4,
      limitKey: 'customer-42',
      priority: -7,
    }
    const job = tracked(newJobId(9), opts, 12)
    expect(decodeSpooled(job.id, encodeSpooled(job))).toMatchObject({ run: 12, opts })
  })

  it('a record that is not one reads back as undefined, not a throw', () => {
    for (const bytes of [Buffer.from([0xc1]), pack('text'), pack([1, 2]), pack(['greet', 'not bytes', 1, 1])]) {
      expect(decodeSpooled('x', bytes)).toBeUndefined()
    }
  })
})

describe('JobTable.restoreAll', () => {
  it('files restored jobs under their ids, in their slots when free and aside when taken, and skips ids it holds', () => {
    const table = new JobTable()
    const local = tracked(table.newId())
    table.add(local)
    const same = tracked(newJobId(0)) // slot 0 is the local job's: goes aside
    const free = tracked(newJobId(5))
    const far = tracked(newJobId(50_000_000)) // far past any slot this table needs: aside
    const filed = table.restoreAll([same, free, far, free])
    expect(filed).toEqual([same, free, far])
    expect(table.size).toBe(4)
    for (const job of [local, same, free, far]) expect(table.get(job.id)).toBe(job)

    // New ids never take a restored job's slot, and deletes find jobs filed aside.
    const ids = new Set<string>()
    for (let i = 0; i < 10; i++) {
      const job = tracked(table.newId())
      table.add(job)
      ids.add(job.id)
    }
    expect(table.get(free.id)).toBe(free)
    table.delete(same)
    table.delete(far)
    expect(table.get(same.id)).toBeUndefined()
    expect(table.get(far.id)).toBeUndefined()
    expect(table.size).toBe(12)
    expect([...table.values()]).toHaveLength(12)
  })
})

describe('JobTable.fill and release (a unique key claimed meanwhile)', () => {
  it('files a job whose id was handed out before others in its own slot, and frees the slot of one never filed', () => {
    const table = new JobTable()
    const claiming = tracked(table.newId())
    const lost = tracked(table.newId())
    const plain: TrackedJob[] = []
    for (let i = 0; i < 5; i++) {
      const job = tracked(table.newId())
      table.add(job)
      plain.push(job)
    }
    // Neither id named a slot that another job got meanwhile.
    expect(plain.map((job) => slotOf(job.id))).not.toContain(slotOf(claiming.id))
    expect(plain.map((job) => slotOf(job.id))).not.toContain(slotOf(lost.id))
    table.fill(claiming)
    expect(table.get(claiming.id)).toBe(claiming)
    expect(table.size).toBe(6)
    table.release(lost.id)
    const next = tracked(table.newId())
    expect(slotOf(next.id)).toBe(slotOf(lost.id))
  })

  it('files aside a job whose slot another job took meanwhile (the table was emptied and refilled)', () => {
    const table = new JobTable()
    const claiming = tracked(table.newId())
    const restored = tracked(newJobId(slotOf(claiming.id)))
    table.restoreAll([restored])
    table.fill(claiming)
    expect(table.get(claiming.id)).toBe(claiming)
    expect(table.get(restored.id)).toBe(restored)
    expect(table.size).toBe(2)
  })
})

describe('JobTable.fill of the job that got the last id', () => {
  it('fills its own slot, so that jobs made, claimed and ended one after another reuse one slot', () => {
    const table = new JobTable()
    const kept = tracked(table.newId())
    table.add(kept)
    for (let i = 0; i < 1000; i++) {
      const claimed = tracked(table.newId())
      table.fill(claimed)
      expect(table.get(claimed.id)).toBe(claimed)
      table.delete(claimed)
    }
    expect(table.size).toBe(1)
    expect(slotOf(tracked(table.newId()).id)).toBe(1)
  })
})
