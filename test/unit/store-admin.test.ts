import { afterEach, describe, expect, it } from 'vitest'
import {
  type AdminStore,
  FINISHED_STATUSES,
  StoreAdmin,
  canCancel,
  canPurge,
  canRetry,
  retryPatch,
} from '../../src/admin/store-admin.js'
import { MemoryStore } from '../../src/storage/memory-store.js'
import { JobStatus, UNFINISHED_STATUSES } from '../../src/storage/store.js'
import { makeFeedback, makeJob } from '../helpers/store-conformance.js'

const NOW = Date.UTC(2024, 5, 1)
const boom = { name: 'Error', message: 'boom', code: 'ERR_X' }

describe('admin rules', () => {
  it('the finished statuses are the ones a node does not resume', () => {
    expect([...FINISHED_STATUSES].sort()).toEqual([JobStatus.CANCELLED, JobStatus.COMPLETE, JobStatus.FAILED])
    for (const status of FINISHED_STATUSES) expect(UNFINISHED_STATUSES).not.toContain(status)
  })

  it.each([
    [JobStatus.FAILED, { ok: true }],
    [JobStatus.CANCELLED, { ok: true }],
    [JobStatus.COMPLETE, { ok: false, reason: 'complete' }],
    [JobStatus.NEW, { ok: false, reason: 'unfinished' }],
    [JobStatus.QUEUED, { ok: false, reason: 'unfinished' }],
    [JobStatus.IN_PROGRESS, { ok: false, reason: 'unfinished' }],
    [JobStatus.ERROR, { ok: false, reason: 'unfinished' }],
  ])('canRetry a %s job: %o', (status, verdict) => {
    expect(canRetry({ status })).toEqual(verdict)
  })

  it('a retry starts the run over, due at the given instant, and touches nothing else', () => {
    expect(retryPatch(NOW)).toEqual({ status: JobStatus.NEW, attempt: 0, dueAt: NOW })
  })

  it('canCancel an unfinished job only', () => {
    for (const status of UNFINISHED_STATUSES) expect(canCancel({ status })).toEqual({ ok: true })
    for (const status of FINISHED_STATUSES) expect(canCancel({ status })).toEqual({ ok: false, reason: 'finished' })
  })

  it('canPurge a finished status, and an unfinished one only with force', () => {
    for (const status of FINISHED_STATUSES) {
      expect(canPurge(status, false)).toEqual({ ok: true })
      expect(canPurge(status, true)).toEqual({ ok: true })
    }
    for (const status of UNFINISHED_STATUSES) {
      expect(canPurge(status, false)).toEqual({ ok: false, reason: 'unfinished' })
      expect(canPurge(status, true)).toEqual({ ok: true })
    }
  })
})

describe('StoreAdmin over a MemoryStore', () => {
  const stores: MemoryStore[] = []
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close()
  })

  /** A store holding one job of each kind the rules tell apart, and an admin whose "now" is NOW. */
  async function seeded(): Promise<{ store: MemoryStore; admin: StoreAdmin }> {
    const store = new MemoryStore()
    stores.push(store)
    await store.open()
    await store.saveJobs([
      makeJob('j-new', { dueAt: NOW - 1000 }),
      makeJob('j-failed', {
        status: JobStatus.FAILED,
        attempt: 10,
        dueAt: NOW - 3000,
        failedAt: NOW - 2500,
        lastError: boom,
      }),
      makeJob('j-complete', { status: JobStatus.COMPLETE, attempt: 1, dueAt: NOW - 2000 }),
      makeJob('j-cancelled', { status: JobStatus.CANCELLED, attempt: 1, dueAt: NOW - 2000 }),
      makeJob('j-error', { status: JobStatus.ERROR, attempt: 2, dueAt: NOW + 5000 }),
    ])
    return { store, admin: new StoreAdmin(store, { now: () => NOW }) }
  }

  it('lists jobs in due order, ties by id, optionally by status', async () => {
    const { admin } = await seeded()
    expect((await admin.listJobs()).map((j) => j.id)).toEqual([
      'j-failed',
      'j-cancelled',
      'j-complete',
      'j-new',
      'j-error',
    ])
    expect((await admin.listJobs({ status: JobStatus.COMPLETE })).map((j) => j.id)).toEqual(['j-complete'])
    expect(await admin.listJobs({ status: JobStatus.QUEUED })).toEqual([])
  })

  it('gets one job, or undefined', async () => {
    const { admin } = await seeded()
    expect(await admin.getJob('j-new')).toMatchObject({ id: 'j-new', status: JobStatus.NEW })
    expect(await admin.getJob('ghost')).toBeUndefined()
  })

  it('lists the feedback outbox by job id, then run', async () => {
    const { store, admin } = await seeded()
    await store.finishRun('j-new', {}, makeFeedback('tick', { run: 2, final: false }), false)
    await store.finishRun('j-new', {}, makeFeedback('once', { kind: 'error' }), false)
    await store.finishRun('j-new', {}, makeFeedback('tick', { run: 1, final: false }), false)
    expect((await admin.listFeedback()).map((f) => `${f.jobId}:${f.run}`)).toEqual(['once:1', 'tick:1', 'tick:2'])
  })

  describe('retryJob', () => {
    it('makes a failed job new, attempt 0, due now, its last error kept, and returns the record as it was', async () => {
      const { store, admin } = await seeded()
      const result = await admin.retryJob('j-failed')
      expect(result).toMatchObject({ ok: true, job: { id: 'j-failed', status: JobStatus.FAILED, attempt: 10 } })
      expect(result.ok && result.patch).toEqual({ status: JobStatus.NEW, attempt: 0, dueAt: NOW })
      expect(await store.getJob('j-failed')).toMatchObject({
        status: JobStatus.NEW,
        attempt: 0,
        dueAt: NOW,
        failedAt: NOW - 2500,
        lastError: boom,
      })
      expect((await store.listUnfinished()).map((j) => j.id)).toContain('j-failed')
    })

    it('takes back a cancelled job too', async () => {
      const { store, admin } = await seeded()
      expect((await admin.retryJob('j-cancelled')).ok).toBe(true)
      expect((await store.getJob('j-cancelled'))?.status).toBe(JobStatus.NEW)
    })

    it('refuses a complete or an unfinished job with the reason, and leaves it alone', async () => {
      const { store, admin } = await seeded()
      const before = await store.listJobs()
      expect(await admin.retryJob('j-complete')).toMatchObject({
        ok: false,
        reason: 'complete',
        job: { status: JobStatus.COMPLETE },
      })
      expect(await admin.retryJob('j-error')).toMatchObject({
        ok: false,
        reason: 'unfinished',
        job: { status: JobStatus.ERROR },
      })
      expect(await store.listJobs()).toEqual(before)
    })

    it('says when the job is not there', async () => {
      const { admin } = await seeded()
      expect(await admin.retryJob('ghost')).toEqual({ ok: false, reason: 'not found' })
    })
  })

  describe('cancelJob', () => {
    it('marks an unfinished job cancelled, so a restarted node does not resume it', async () => {
      const { store, admin } = await seeded()
      expect(await admin.cancelJob('j-new')).toMatchObject({
        ok: true,
        action: 'cancelled',
        job: { status: JobStatus.NEW },
      })
      expect(await store.getJob('j-new')).toMatchObject({ status: JobStatus.CANCELLED, attempt: 0, dueAt: NOW - 1000 })
      expect((await store.listUnfinished()).map((j) => j.id)).toEqual(['j-error'])
    })

    it('with remove, deletes the record instead', async () => {
      const { store, admin } = await seeded()
      expect(await admin.cancelJob('j-error', { remove: true })).toMatchObject({
        ok: true,
        action: 'removed',
        job: { status: JobStatus.ERROR },
      })
      expect(await store.getJob('j-error')).toBeUndefined()
      expect(await store.listJobs()).toHaveLength(4)
    })

    it('refuses a finished job and leaves it alone; says when the job is not there', async () => {
      const { store, admin } = await seeded()
      for (const id of ['j-failed', 'j-complete', 'j-cancelled']) {
        const before = await store.getJob(id)
        expect(await admin.cancelJob(id, { remove: true })).toEqual({ ok: false, reason: 'finished', job: before })
        expect(await store.getJob(id)).toEqual(before)
      }
      expect(await admin.cancelJob('ghost')).toEqual({ ok: false, reason: 'not found' })
    })
  })

  describe('purgeJobs', () => {
    it('removes exactly the jobs of a finished status and counts them', async () => {
      const { store, admin } = await seeded()
      await store.saveJobs([makeJob('done-2', { status: JobStatus.COMPLETE })])
      expect(await admin.purgeJobs(JobStatus.COMPLETE)).toEqual({ ok: true, removed: 2 })
      expect((await store.listJobs()).map((j) => j.id).sort()).toEqual(['j-cancelled', 'j-error', 'j-failed', 'j-new'])
      expect(await admin.purgeJobs(JobStatus.COMPLETE)).toEqual({ ok: true, removed: 0 })
    })

    it('refuses an unfinished status without force and removes nothing; with force removes them', async () => {
      const { store, admin } = await seeded()
      expect(await admin.purgeJobs(JobStatus.NEW)).toEqual({ ok: false, reason: 'unfinished' })
      expect(await store.getJob('j-new')).toBeDefined()
      expect(await admin.purgeJobs(JobStatus.NEW, { force: true })).toEqual({ ok: true, removed: 1 })
      expect(await store.getJob('j-new')).toBeUndefined()
    })

    it('keeps at most 500 removals in flight, and removes every job however many', async () => {
      const store = new MemoryStore()
      stores.push(store)
      await store.open()
      await store.saveJobs(Array.from({ length: 1234 }, (_, i) => makeJob(`f${i}`, { status: JobStatus.FAILED })))
      let inFlight = 0
      let most = 0
      const counting: AdminStore = {
        getJob: (id) => store.getJob(id),
        updateJob: (id, patch) => store.updateJob(id, patch),
        listJobs: (filter) => store.listJobs(filter),
        listFeedback: () => store.listFeedback(),
        removeJob: async (id) => {
          most = Math.max(most, ++inFlight)
          try {
            await store.removeJob(id)
          } finally {
            inFlight--
          }
        },
      }
      expect(await new StoreAdmin(counting).purgeJobs(JobStatus.FAILED)).toEqual({ ok: true, removed: 1234 })
      expect(most).toBe(500)
      expect(await store.listJobs()).toEqual([])
    })
  })
})
