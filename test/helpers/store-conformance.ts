import { afterEach, describe, expect, it } from 'vitest'
import {
  type FeedbackRecord,
  type JobRecord,
  JobStatus,
  type Store,
  UNFINISHED_STATUSES,
  failedJobsPage,
} from '../../src/storage/store.js'

export interface StoreUnderTest {
  /** Not opened yet: the suite opens it. */
  store: Store
  /** Drops whatever the store left behind (keys, files); runs after the store is closed. */
  cleanup(): Promise<void>
}

/**
 * `node` names the node the store belongs to; two stores made within one test with different
 * names must be isolated from each other, whatever shared backend they use.
 */
export type MakeStore = (node?: string) => Promise<StoreUnderTest>

/** A minimal record: no optional field present. */
export function makeJob(id: string, overrides: Partial<JobRecord> = {}): JobRecord {
  return {
    id,
    name: 'my_job',
    args: Uint8Array.of(0x81, 0xa1, 0x61, 0x01),
    status: JobStatus.NEW,
    attempt: 0,
    run: 1,
    dueAt: 1_700_000_000_000,
    runDueAt: 1_700_000_000_000,
    defer: false,
    distributor: '127.0.0.1:5000',
    createdAt: 1_699_999_999_000,
    ...overrides,
  }
}

export function makeFeedback(jobId: string, overrides: Partial<FeedbackRecord> = {}): FeedbackRecord {
  return {
    jobId,
    name: 'noop',
    run: 1,
    distributor: '127.0.0.1:5000',
    kind: 'success',
    final: true,
    cancelled: false,
    args: Uint8Array.of(0x81, 0xa6, 0x72, 0x65, 0x73, 0x75, 0x6c, 0x74, 0xc3),
    ...overrides,
  }
}

/** Bytes compare by content whatever their class (Buffer from Redis, Uint8Array in memory). */
function plain<T extends { args: Uint8Array }>(record: T): Omit<T, 'args'> & { args: number[] } {
  return { ...record, args: Array.from(record.args) }
}

function byId<T extends { id: string }>(records: T[]): T[] {
  return [...records].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

function ids(records: { id: string }[]): string[] {
  return records.map((r) => r.id).sort()
}

/**
 * Every page of failed jobs from `cursor` on, `count` at a time, with the ids of each page;
 * through failedJobsPage, so that a store without listFailedPage is checked with the fallback.
 */
async function failedPages(store: Store, count: number, cursor?: string): Promise<string[][]> {
  const pages: string[][] = []
  let next = cursor
  do {
    const page = await failedJobsPage(store, next, count)
    expect(page.jobs.length).toBeLessThanOrEqual(count)
    for (const job of page.jobs) expect(job.status).toBe(JobStatus.FAILED)
    pages.push(page.jobs.map((j) => j.id))
    next = page.next
    if (next !== undefined) expect(page.jobs).toHaveLength(count)
  } while (next !== undefined)
  return pages
}

function failedIds(n: number, from = 0): string[] {
  return Array.from({ length: n }, (_, i) => `f${String(from + i).padStart(2, '0')}`)
}

function feedbackKeys(records: FeedbackRecord[]): string[] {
  return records.map((f) => `${f.jobId}:${f.run}`).sort()
}

/** The behaviour every Store must have, run against each implementation. */
export function storeConformance(name: string, makeStore: MakeStore): void {
  describe(`Store conformance: ${name}`, () => {
    const made: StoreUnderTest[] = []

    async function open(node = 'worker1'): Promise<Store> {
      const entry = await makeStore(node)
      made.push(entry)
      await entry.store.open()
      return entry.store
    }

    afterEach(async () => {
      for (const { store, cleanup } of made.splice(0)) {
        await store.close()
        await cleanup()
      }
    })

    it('round-trips a record with every optional field absent, and keeps them absent', async () => {
      const store = await open()
      const job = makeJob('minimal')
      await store.saveJobs([job])
      const got = await store.getJob('minimal')
      expect(got).toBeDefined()
      expect(plain(got!)).toEqual(plain(job))
      expect(Object.keys(got!).sort()).toEqual(Object.keys(job).sort())
    })

    it('round-trips every field exactly: optional ones, binary args, unicode, awkward numbers', async () => {
      const store = await open()
      const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i)
      const job = makeJob('jöb-名前-🚀', {
        name: 'send_mail:ünïcödé ✉',
        args: allBytes,
        status: JobStatus.ERROR,
        attempt: 3,
        run: 42,
        dueAt: 1_700_000_000_123.5,
        runDueAt: Number.MAX_SAFE_INTEGER,
        period: 0.1,
        defer: true,
        maxAttempt: 7,
        retry: { strategy: 'exponential', base: 0.25, max: 3600, jitter: 0.3 },
        timeout: 2.5,
        distributor: '[::1]:5000',
        createdAt: 1e21,
        failedAt: 1_700_000_000_000.25,
        lastError: {
          name: 'TypeError',
          message: 'kaputt — ☠ "quoted" \\ back\nslash',
          stack: 'TypeError: kaputt\n    at ünïcödé (file.ts:1:2)',
          code: 'ERR_JOB_TIMEOUT',
        },
      })
      await store.saveJobs([job])
      const got = await store.getJob(job.id)
      expect(plain(got!)).toEqual(plain(job))
      expect(Array.from(got!.args)).toEqual(Array.from(allBytes))
      expect(Object.keys(got!).sort()).toEqual(Object.keys(job).sort())
    })

    it('resolves undefined for an unknown id', async () => {
      const store = await open()
      expect(await store.getJob('nope')).toBeUndefined()
    })

    it('copies records in and out: mutating a saved or returned object changes nothing stored', async () => {
      const store = await open()
      const job = makeJob('j1', { lastError: { name: 'Error', message: 'before' } })
      await store.saveJobs([job])
      job.status = JobStatus.COMPLETE
      job.lastError!.message = 'mutated after save'
      const got = await store.getJob('j1')
      got!.attempt = 99
      got!.lastError!.message = 'mutated after get'
      const again = await store.getJob('j1')
      expect(again!.status).toBe(JobStatus.NEW)
      expect(again!.attempt).toBe(0)
      expect(again!.lastError).toEqual({ name: 'Error', message: 'before' })
    })

    it('saves a batch of 1,000 jobs in one call', async () => {
      const store = await open()
      const jobs = Array.from({ length: 1000 }, (_, i) =>
        makeJob(`batch-${String(i).padStart(4, '0')}`, { args: Uint8Array.of(i & 0xff, i >> 8) }),
      )
      await store.saveJobs(jobs)
      const listed = byId(await store.listJobs())
      expect(listed).toHaveLength(1000)
      expect(listed.map(plain)).toEqual(jobs.map(plain))
      expect(await store.listUnfinished()).toHaveLength(1000)
      expect(plain((await store.getJob('batch-0777'))!)).toEqual(plain(jobs[777]!))
    })

    it('accepts an empty batch', async () => {
      const store = await open()
      await store.saveJobs([])
      expect(await store.listJobs()).toEqual([])
    })

    it('replaces a job saved again under the same id, dropping fields the new one lacks', async () => {
      const store = await open()
      await store.saveJobs([
        makeJob('j1', { status: JobStatus.FAILED, failedAt: 5, lastError: { name: 'E', message: 'm' } }),
      ])
      expect(await store.listUnfinished()).toEqual([])
      const fresh = makeJob('j1', { name: 'other' })
      await store.saveJobs([fresh])
      const got = await store.getJob('j1')
      expect(plain(got!)).toEqual(plain(fresh))
      expect(got).not.toHaveProperty('failedAt')
      expect(ids(await store.listUnfinished())).toEqual(['j1'])
      expect(await store.listJobs()).toHaveLength(1)
    })

    it('keeps the last record when one batch holds the same id twice', async () => {
      const store = await open()
      await store.saveJobs([makeJob('j1', { status: JobStatus.COMPLETE }), makeJob('j1', { attempt: 3 })])
      expect((await store.getJob('j1'))!.attempt).toBe(3)
      expect(ids(await store.listUnfinished())).toEqual(['j1'])
      expect(await store.listJobs()).toHaveLength(1)
    })

    it("round-trips a cron job's expression and zone", async () => {
      const store = await open()
      const job = makeJob('c1', { cron: '30 2 * * 1-5', tz: 'America/New_York', run: 3 })
      await store.saveJobs([job])
      expect(plain((await store.getJob('c1'))!)).toEqual(plain(job))
    })

    it('updateJob changes only the fields in the patch', async () => {
      const store = await open()
      const job = makeJob('j1', { period: 60, maxAttempt: 4 })
      await store.saveJobs([job])
      await store.updateJob('j1', { status: JobStatus.IN_PROGRESS, attempt: 1 })
      expect(plain((await store.getJob('j1'))!)).toEqual(plain({ ...job, status: JobStatus.IN_PROGRESS, attempt: 1 }))
      const lastError = { name: 'Error', message: 'boom', code: 'ERR_X' }
      await store.updateJob('j1', {
        status: JobStatus.ERROR,
        dueAt: 1_700_000_005_000,
        runDueAt: 1_700_000_004_000,
        run: 2,
        failedAt: 1_700_000_000_500,
        lastError,
        distributor: 'web/web-2',
      })
      expect(plain((await store.getJob('j1'))!)).toEqual(
        plain({
          ...job,
          status: JobStatus.ERROR,
          attempt: 1,
          run: 2,
          dueAt: 1_700_000_005_000,
          runDueAt: 1_700_000_004_000,
          failedAt: 1_700_000_000_500,
          lastError,
          distributor: 'web/web-2',
        }),
      )
    })

    it('updateJob leaves a field alone when the patch gives it as undefined', async () => {
      const store = await open()
      await store.saveJobs([makeJob('j1', { failedAt: 7, lastError: { name: 'E', message: 'kept' } })])
      await store.updateJob('j1', { status: JobStatus.IN_PROGRESS, failedAt: undefined, lastError: undefined })
      const got = await store.getJob('j1')
      expect(got!.status).toBe(JobStatus.IN_PROGRESS)
      expect(got!.failedAt).toBe(7)
      expect(got!.lastError).toEqual({ name: 'E', message: 'kept' })
    })

    it('keeps a progress value: updated, read back and listed, replaced by the next, removed with the record', async () => {
      const store = await open()
      await store.saveJobs([makeJob('j1', { status: JobStatus.IN_PROGRESS, attempt: 1 }), makeJob('j2')])
      await store.updateJob('j1', { progress: 0.25 })
      expect((await store.getJob('j1'))?.progress).toBe(0.25)
      expect((await store.getJob('j2'))?.progress).toBeUndefined()
      expect('progress' in (await store.getJob('j2'))!).toBe(false)
      for (const n of [-12.5, 0, 2 ** 40, -(2 ** 31) - 1, 1e-9, 0.1 + 0.2]) {
        await store.updateJob('j2', { progress: n })
        expect((await store.getJob('j2'))?.progress).toBe(n)
      }
      const value = { done: 3, of: 10, step: 'rows — ünïcödé 🚀', nested: { ok: true, parts: [1, 2.5] } }
      await store.updateJob('j1', { progress: value })
      // An update without it leaves it alone; one of a missing job creates nothing.
      await store.updateJob('j1', { status: JobStatus.ERROR, attempt: 2 })
      await store.updateJob('ghost', { progress: 1 })
      const got = await store.getJob('j1')
      expect(got?.progress).toEqual(value)
      expect(got?.status).toBe(JobStatus.ERROR)
      expect(await store.getJob('ghost')).toBeUndefined()
      expect((await store.listUnfinished()).find((j) => j.id === 'j1')?.progress).toEqual(value)
      expect((await store.listJobs()).find((j) => j.id === 'j1')?.progress).toEqual(value)
      // A copy: changing what was written or read changes nothing stored.
      value.done = 99
      got!.progress = 7
      expect((await store.getJob('j1'))?.progress).toMatchObject({ done: 3 })
      // Saved with a record, too (a record taken over or retried keeps it).
      await store.saveJobs([makeJob('j3', { progress: 1 })])
      expect((await store.getJob('j3'))?.progress).toBe(1)
      // A finished run that keeps the record keeps it; one that removes the record removes it.
      await store.finishRun('j1', { status: JobStatus.FAILED }, makeFeedback('j1'), false)
      expect((await store.getJob('j1'))?.progress).toMatchObject({ done: 3 })
      await store.updateJob('j3', { progress: 2 })
      await store.finishRun('j3', { status: JobStatus.COMPLETE }, makeFeedback('j3'), true)
      expect(await store.getJob('j3')).toBeUndefined()
      await store.removeJob('j1')
      expect(await store.getJob('j1')).toBeUndefined()
      expect(ids(await store.listJobs())).toEqual(['j2'])
    })

    it('updateJob on a missing id is ignored and creates nothing', async () => {
      const store = await open()
      await store.updateJob('ghost', { status: JobStatus.IN_PROGRESS, attempt: 1 })
      expect(await store.getJob('ghost')).toBeUndefined()
      expect(await store.listJobs()).toEqual([])
      expect(await store.listUnfinished()).toEqual([])
    })

    it('listUnfinished returns exactly the jobs that are new, queued, in progress or error', async () => {
      const store = await open()
      const all = Object.values(JobStatus).map((status) => makeJob(`job-${status}`, { status }))
      await store.saveJobs(all)
      const expected = all.filter((j) => UNFINISHED_STATUSES.includes(j.status))
      expect(expected).toHaveLength(4)
      expect(byId(await store.listUnfinished()).map(plain)).toEqual(byId(expected).map(plain))

      // Status changes move jobs in and out.
      await store.updateJob(`job-${JobStatus.NEW}`, { status: JobStatus.COMPLETE })
      await store.updateJob(`job-${JobStatus.FAILED}`, { status: JobStatus.QUEUED })
      await store.updateJob(`job-${JobStatus.ERROR}`, { attempt: 5 })
      expect(ids(await store.listUnfinished())).toEqual(
        [
          `job-${JobStatus.QUEUED}`,
          `job-${JobStatus.IN_PROGRESS}`,
          `job-${JobStatus.ERROR}`,
          `job-${JobStatus.FAILED}`,
        ].sort(),
      )
    })

    it('finishRun with remove stores the feedback and deletes the job', async () => {
      const store = await open()
      await store.saveJobs([makeJob('j1', { status: JobStatus.IN_PROGRESS, attempt: 1 }), makeJob('j2')])
      const feedback = makeFeedback('j1')
      await store.finishRun('j1', { status: JobStatus.COMPLETE }, feedback, true)
      expect(await store.getJob('j1')).toBeUndefined()
      expect(ids(await store.listJobs())).toEqual(['j2'])
      expect(ids(await store.listUnfinished())).toEqual(['j2'])
      const outbox = await store.listFeedback()
      expect(outbox.map(plain)).toEqual([plain(feedback)])
    })

    it('finishRun without remove applies the patch and keeps the job under its new status', async () => {
      const store = await open()
      const job = makeJob('j1', { status: JobStatus.IN_PROGRESS, attempt: 10 })
      await store.saveJobs([job])
      const lastError = { name: 'Error', message: 'gave up' }
      const feedback = makeFeedback('j1', { kind: 'error', args: Uint8Array.of(0, 255, 0) })
      await store.finishRun('j1', { status: JobStatus.FAILED, failedAt: 123, lastError }, feedback, false)
      expect(plain((await store.getJob('j1'))!)).toEqual(
        plain({ ...job, status: JobStatus.FAILED, failedAt: 123, lastError }),
      )
      expect(await store.listUnfinished()).toEqual([])
      expect(ids(await store.listJobs({ status: JobStatus.FAILED }))).toEqual(['j1'])
      expect((await store.listFeedback()).map(plain)).toEqual([plain(feedback)])
    })

    it('finishRun of a periodic run keeps the job unfinished for its next run', async () => {
      const store = await open()
      await store.saveJobs([makeJob('tick', { period: 10, status: JobStatus.IN_PROGRESS, attempt: 1 })])
      await store.finishRun(
        'tick',
        { status: JobStatus.NEW, run: 2, attempt: 0, dueAt: 1_700_000_010_000, runDueAt: 1_700_000_010_000 },
        makeFeedback('tick', { run: 1, final: false }),
        false,
      )
      const got = await store.getJob('tick')
      expect(got).toMatchObject({ status: JobStatus.NEW, run: 2, attempt: 0, runDueAt: 1_700_000_010_000 })
      expect(ids(await store.listUnfinished())).toEqual(['tick'])
    })

    it('finishRun of a missing job still keeps the feedback and creates no job', async () => {
      const store = await open()
      const feedback = makeFeedback('gone')
      await store.finishRun('gone', { status: JobStatus.COMPLETE }, feedback, false)
      expect(await store.getJob('gone')).toBeUndefined()
      expect(await store.listJobs()).toEqual([])
      expect((await store.listFeedback()).map(plain)).toEqual([plain(feedback)])
    })

    it('keeps two feedbacks of the same job for different runs, and acks them one by one', async () => {
      const store = await open()
      await store.saveJobs([makeJob('tick', { period: 1 })])
      const run1 = makeFeedback('tick', { run: 1, final: false, args: Uint8Array.of(1) })
      const run2 = makeFeedback('tick', { run: 2, final: true, cancelled: true, args: Uint8Array.of(2) })
      await store.finishRun('tick', { run: 2 }, run1, false)
      await store.finishRun('tick', { status: JobStatus.CANCELLED }, run2, true)
      const outbox = await store.listFeedback()
      expect(feedbackKeys(outbox)).toEqual(['tick:1', 'tick:2'])
      expect(outbox.find((f) => f.run === 2)!.cancelled).toBe(true)
      expect(Array.from(outbox.find((f) => f.run === 1)!.args)).toEqual([1])

      await store.ackFeedback([{ jobId: 'tick', run: 1 }])
      expect((await store.listFeedback()).map(plain)).toEqual([plain(run2)])
      await store.ackFeedback([{ jobId: 'tick', run: 2 }])
      expect(await store.listFeedback()).toEqual([])
    })

    it('the same job and run stored twice is one feedback, the latest', async () => {
      const store = await open()
      await store.finishRun('j1', {}, makeFeedback('j1', { args: Uint8Array.of(1) }), true)
      await store.finishRun('j1', {}, makeFeedback('j1', { args: Uint8Array.of(2) }), true)
      const outbox = await store.listFeedback()
      expect(outbox).toHaveLength(1)
      expect(Array.from(outbox[0]!.args)).toEqual([2])
    })

    it('ackFeedback of an unknown key, or twice, is harmless', async () => {
      const store = await open()
      const feedback = makeFeedback('j1')
      await store.finishRun('j1', {}, feedback, true)
      await store.ackFeedback([{ jobId: 'unknown', run: 1 }])
      await store.ackFeedback([{ jobId: 'j1', run: 2 }])
      expect((await store.listFeedback()).map(plain)).toEqual([plain(feedback)])
      await store.ackFeedback([{ jobId: 'j1', run: 1 }])
      await store.ackFeedback([{ jobId: 'j1', run: 1 }])
      expect(await store.listFeedback()).toEqual([])
    })

    it('acks several feedbacks in one call, leaving the others', async () => {
      const store = await open()
      for (const id of ['a', 'b', 'c']) await store.finishRun(id, {}, makeFeedback(id), true)
      await store.ackFeedback([
        { jobId: 'a', run: 1 },
        { jobId: 'c', run: 1 },
        { jobId: 'nope', run: 1 },
      ])
      expect((await store.listFeedback()).map((f) => f.jobId)).toEqual(['b'])
      await store.ackFeedback([])
      expect(await store.listFeedback()).toHaveLength(1)
    })

    it('ping answers while open and refuses after close', async () => {
      const store = await open()
      await expect(store.ping()).resolves.toBeUndefined()
      await store.close()
      await expect(store.ping()).rejects.toMatchObject({ code: 'ERR_STORE' })
    })

    it('removeJob deletes the job everywhere but leaves its feedback', async () => {
      const store = await open()
      await store.saveJobs([makeJob('j1'), makeJob('j2')])
      await store.finishRun('j1', { run: 2 }, makeFeedback('j1'), false)
      await store.removeJob('j1')
      await store.removeJob('never-saved')
      expect(await store.getJob('j1')).toBeUndefined()
      expect(ids(await store.listJobs())).toEqual(['j2'])
      expect(ids(await store.listUnfinished())).toEqual(['j2'])
      expect(feedbackKeys(await store.listFeedback())).toEqual(['j1:1'])
    })

    it('listJobs returns every job, or those of one status', async () => {
      const store = await open()
      await store.saveJobs([
        makeJob('a', { status: JobStatus.NEW }),
        makeJob('b', { status: JobStatus.COMPLETE }),
        makeJob('c', { status: JobStatus.FAILED }),
        makeJob('d', { status: JobStatus.FAILED }),
      ])
      expect(ids(await store.listJobs())).toEqual(['a', 'b', 'c', 'd'])
      expect(ids(await store.listJobs({}))).toEqual(['a', 'b', 'c', 'd'])
      expect(ids(await store.listJobs({ status: JobStatus.FAILED }))).toEqual(['c', 'd'])
      expect(ids(await store.listJobs({ status: JobStatus.COMPLETE }))).toEqual(['b'])
      expect(await store.listJobs({ status: JobStatus.QUEUED })).toEqual([])
      const [fresh] = await store.listJobs({ status: JobStatus.NEW })
      expect(plain(fresh!)).toEqual(plain(makeJob('a')))
    })

    it('listFailedPage pages through the failed jobs, each exactly once, none of the others', async () => {
      const store = await open()
      const failed = failedIds(25)
      const others = [
        ...['n1', 'n2', 'n3'].map((id) => makeJob(id)),
        ...['c1', 'c2'].map((id) => makeJob(id, { status: JobStatus.COMPLETE })),
        makeJob('x1', { status: JobStatus.CANCELLED }),
        makeJob('e1', { status: JobStatus.ERROR }),
        makeJob('p1', { status: JobStatus.IN_PROGRESS }),
      ]
      // Failed in every way a job can be: saved so, updated, at the end of its run.
      await store.saveJobs([
        ...failed.slice(0, 10).map((id) => makeJob(id, { status: JobStatus.FAILED, failedAt: 1 })),
        ...failed.slice(10).map((id) => makeJob(id, { status: JobStatus.IN_PROGRESS, attempt: 1 })),
        ...others,
      ])
      for (const id of failed.slice(10, 18)) await store.updateJob(id, { status: JobStatus.FAILED, failedAt: 2 })
      await Promise.all(
        failed
          .slice(18)
          .map((id) => store.finishRun(id, { status: JobStatus.FAILED, failedAt: 3 }, makeFeedback(id), false)),
      )

      const pages = await failedPages(store, 10)
      expect(pages.map((p) => p.length)).toEqual([10, 10, 5])
      expect(pages.flat().sort()).toEqual(failed)
      expect(await failedPages(store, 25)).toHaveLength(1)
      expect(await failedPages(store, 100)).toHaveLength(1)
      // The records, whole.
      const first = (await failedJobsPage(store, undefined, 25)).jobs.find((j) => j.id === 'f00')
      expect(plain(first!)).toEqual(plain(makeJob('f00', { status: JobStatus.FAILED, failedAt: 1 })))
    })

    it('listFailedPage of a store without failed jobs is one empty page', async () => {
      const store = await open()
      expect(await failedJobsPage(store, undefined, 10)).toEqual({ jobs: [] })
      await store.saveJobs([makeJob('n1'), makeJob('c1', { status: JobStatus.COMPLETE })])
      expect(await failedJobsPage(store, undefined, 10)).toEqual({ jobs: [] })
      if (store.listFailedPage !== undefined) {
        await expect(store.listFailedPage(undefined, 0)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
      }
    })

    it('listFailedPage leaves out jobs that left the status, and a cursor outlives the removal of its job', async () => {
      const store = await open()
      // Only a store's own listFailedPage promises this; the offsets of the fallback do not.
      if (store.listFailedPage === undefined) return
      const failed = failedIds(25)
      await store.saveJobs(failed.map((id) => makeJob(id, { status: JobStatus.FAILED })))
      const first = await store.listFailedPage(undefined, 10)
      const seen = first.jobs.map((j) => j.id)
      const rest = failed.filter((id) => !seen.includes(id))
      // The last job of the page (perhaps the cursor itself), one seen before, and later
      // ones: removed, retried, or failed anew.
      const last = seen[seen.length - 1]!
      await store.removeJob(last)
      await store.removeJob(seen[0]!)
      await store.removeJob(rest[0]!)
      await store.finishRun(rest[1]!, {}, makeFeedback(rest[1]!), true)
      await store.updateJob(rest[2]!, { status: JobStatus.NEW, attempt: 0, run: 2 })
      await store.updateJob(rest[3]!, { status: JobStatus.IN_PROGRESS })
      await store.updateJob(rest[3]!, { status: JobStatus.FAILED })
      await store.saveJobs([makeJob(rest[4]!, { status: JobStatus.NEW })])
      await store.saveJobs([makeJob('late', { status: JobStatus.FAILED })])

      const after = (await failedPages(store, 10, first.next)).flat()
      expect(new Set(after).size).toBe(after.length)
      const stayed = rest.filter((id) => ![rest[0], rest[1], rest[2], rest[4]].includes(id))
      for (const id of stayed) expect(after).toContain(id)
      for (const id of [...seen, rest[0], rest[1], rest[2], rest[4]]) expect(after).not.toContain(id)
      // The whole listing again: what is failed now, once each.
      const all = (await failedPages(store, 10)).flat().sort()
      expect(all).toEqual(ids(await store.listJobs({ status: JobStatus.FAILED })))
      expect(all).toContain('late')
    })

    it('keeps the state of stores for different nodes apart', async () => {
      const one = await open('worker1')
      const two = await open('worker2')
      await one.saveJobs([makeJob('shared-id', { name: 'on-one' }), makeJob('only-one')])
      await two.saveJobs([makeJob('shared-id', { name: 'on-two', status: JobStatus.COMPLETE })])
      await one.finishRun('only-one', {}, makeFeedback('only-one'), true)

      expect((await one.getJob('shared-id'))!.name).toBe('on-one')
      expect((await two.getJob('shared-id'))!.name).toBe('on-two')
      expect(ids(await one.listJobs())).toEqual(['shared-id'])
      expect(ids(await two.listJobs())).toEqual(['shared-id'])
      expect(ids(await one.listUnfinished())).toEqual(['shared-id'])
      expect(await two.listUnfinished()).toEqual([])
      expect(feedbackKeys(await one.listFeedback())).toEqual(['only-one:1'])
      expect(await two.listFeedback()).toEqual([])

      await two.removeJob('shared-id')
      await two.ackFeedback([{ jobId: 'only-one', run: 1 }])
      expect(await one.getJob('shared-id')).toBeDefined()
      expect(await one.listFeedback()).toHaveLength(1)
    })

    it('close resolves, twice too, and later calls reject with ERR_STORE', async () => {
      const store = await open()
      await store.saveJobs([makeJob('j1')])
      await store.close()
      await store.close()
      await expect(store.getJob('j1')).rejects.toMatchObject({ code: 'ERR_STORE' })
      await expect(store.saveJobs([makeJob('j2')])).rejects.toMatchObject({ code: 'ERR_STORE' })
      await expect(store.listFeedback()).rejects.toMatchObject({ code: 'ERR_STORE' })
    })

    it('calls before open reject with ERR_STORE', async () => {
      const entry = await makeStore('worker1')
      made.push(entry)
      await expect(entry.store.saveJobs([makeJob('j1')])).rejects.toMatchObject({ code: 'ERR_STORE' })
      await expect(entry.store.listUnfinished()).rejects.toMatchObject({ code: 'ERR_STORE' })
    })
  })
}
