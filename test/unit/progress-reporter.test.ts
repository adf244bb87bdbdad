import { describe, expect, it, vi } from 'vitest'
import { ErrorCode, InvalidArgumentError } from '../../src/errors.js'
import type { LiveJob } from '../../src/node/live-jobs.js'
import { PROGRESS_WINDOW_MS, ProgressReporter, type ProgressLink } from '../../src/node/progress-reporter.js'
import { MessageType, type Message, type ProgressValue } from '../../src/protocol/messages.js'
import { MAX_PROGRESS_BYTES, checkProgress } from '../../src/protocol/progress-value.js'
import { Scheduler } from '../../src/scheduling/scheduler.js'
import type { Timer } from '../../src/scheduling/timer-heap.js'
import { MemoryStore } from '../../src/storage/memory-store.js'
import { type JobPatch, JobStatus, type Store } from '../../src/storage/store.js'
import { DurableMemoryStore } from '../helpers/durable-memory-store.js'
import { FakeClock } from '../helpers/fake-clock.js'

/** A link that is up (or not) and keeps what it is given. */
class RecordingLink implements ProgressLink {
  ready = true
  readonly peerMaxFrameSize = 16 * 1024 * 1024
  readonly messages: Message[] = []
  send(message: Message): boolean {
    this.messages.push(message)
    return true
  }
  /** Every value sent, in order, as [job id, value]. */
  get values(): [string, ProgressValue][] {
    const out: [string, ProgressValue][] = []
    for (const m of this.messages)
      if (m.type === MessageType.PROGRESS) for (const i of m.items) out.push([i.id, i.value])
    return out
  }
}

/** A durable store that counts its record updates. */
class CountingStore extends DurableMemoryStore {
  readonly updates: JobPatch[] = []
  override updateJob(id: string, patch: JobPatch): Promise<void> {
    this.updates.push(patch)
    return super.updateJob(id, patch)
  }
}

/**
 * The reporter on the node's scheduler, driven by a fake clock. Its store writes go through
 * `persist` as the node's do: at once while `store.down` is false, else into `store.backlog`
 * (replayed by the test, as StoreOutage does when the store is back).
 */
function setUp() {
  const clock = new FakeClock()
  const scheduler = new Scheduler<Timer>((timer) => timer.fire(), clock)
  const link = new RecordingLink()
  const store = { down: false, backlog: [] as (() => Promise<void>)[], persisted: 0 }
  const reporter = new ProgressReporter({
    after: (timer, ms) => scheduler.schedule(timer, clock.now() + ms),
    cancelTimer: (timer) => void scheduler.cancel(timer),
    linkFor: (identity) => (identity === 'web/d1' ? link : undefined),
    persist: (target, write) => {
      // As StoreOutage.persist: a store that does not survive the process is not written.
      if (!target.durable) return
      store.persisted++
      if (store.down) store.backlog.push(write)
      else void write()
    },
    maxFrameSize: 16 * 1024 * 1024,
  })
  return { clock, link, reporter, store }
}

function running(id: string, store: Store = new MemoryStore()): LiveJob {
  return {
    id,
    name: 'import',
    args: new Uint8Array(),
    status: JobStatus.IN_PROGRESS,
    attempt: 1,
    run: 1,
    dueAt: 0,
    runDueAt: 0,
    defer: false,
    distributor: 'web/d1',
    createdAt: 0,
    phase: 'running',
    cancelRequested: false,
    store,
    timerIndex: -1,
  }
}

/** One event-loop turn: what was sent in it goes out together. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

describe('progress, coalesced per job on the node', () => {
  it('1,000 updates in a tight loop send the first at once and the last when the window ends', async () => {
    const { clock, link, reporter } = setUp()
    const job = running('j1')
    for (let i = 1; i <= 1000; i++) reporter.report(job, i)
    await turn()
    expect(link.values).toEqual([['j1', 1]])
    // One frame for the turn.
    expect(link.messages).toHaveLength(1)
    clock.advance(PROGRESS_WINDOW_MS)
    await turn()
    expect(link.values).toEqual([
      ['j1', 1],
      ['j1', 1000],
    ])
    // Nothing came within that window: it closes, and the next value goes out at once.
    clock.advance(PROGRESS_WINDOW_MS)
    await turn()
    expect(link.values).toHaveLength(2)
    reporter.report(job, 1001)
    await turn()
    expect(link.values.at(-1)).toEqual(['j1', 1001])
    expect(job.progress).toBe(1001)
  })

  it('1,000 updates spread over a second send at most one per window, in order, the last being the final value', async () => {
    const { clock, link, reporter } = setUp()
    const job = running('j1')
    const ms = 1000
    for (let i = 1; i <= 1000; i++) {
      reporter.report(job, i)
      clock.advance(ms / 1000)
      if (i % 50 === 0) await turn()
    }
    reporter.settle(job)
    const values = link.values.map(([, v]) => v as number)
    // At once, then at most one per window of the run, then the final one at the end.
    expect(values.length).toBeLessThanOrEqual(1 + ms / PROGRESS_WINDOW_MS + 1)
    expect(values.length).toBeGreaterThanOrEqual(ms / PROGRESS_WINDOW_MS)
    for (let i = 1; i < values.length; i++) expect(values[i]).toBeGreaterThan(values[i - 1] as number)
    expect(values.at(-1)).toBe(1000)
  })

  it("an attempt's end sends the value waiting for its window at once, and nothing after", async () => {
    const { clock, link, reporter } = setUp()
    const job = running('j1')
    const other = running('j2')
    reporter.report(other, 0.5)
    for (let i = 1; i <= 10; i++) reporter.report(job, { done: i })
    // Within the same turn: what waits for the end of the turn goes out with it, ahead of
    // the feedback the caller sends next.
    reporter.settle(job)
    expect(link.values).toEqual([
      ['j2', 0.5],
      ['j1', { done: 1 }],
      ['j1', { done: 10 }],
    ])
    job.phase = 'done'
    reporter.report(job, { done: 11 })
    clock.advance(10 * PROGRESS_WINDOW_MS)
    await turn()
    expect(link.values.filter(([id]) => id === 'j1')).toHaveLength(2)
    expect(job.progress).toEqual({ done: 10 })
  })

  it('a link that is down misses the values, and the job keeps its last one', async () => {
    const { clock, link, reporter } = setUp()
    link.ready = false
    const job = running('j1')
    for (let i = 1; i <= 5; i++) reporter.report(job, i)
    clock.advance(PROGRESS_WINDOW_MS)
    reporter.settle(job)
    await turn()
    expect(link.messages).toEqual([])
    expect(job.progress).toBe(5)
  })

  it('a job that never reported costs its attempt end nothing', () => {
    const { link, reporter, store } = setUp()
    reporter.settle(running('j1', new CountingStore()))
    expect(link.messages).toEqual([])
    expect(store.persisted).toBe(0)
  })
})

describe('progress kept in the job record', () => {
  async function storedJob(id: string): Promise<{ job: LiveJob; records: CountingStore }> {
    const records = new CountingStore()
    await records.open()
    const job = running(id, records)
    await records.saveJobs([job])
    return { job, records }
  }

  it('a durable job writes its record at most once per value sent, with its latest value, never per value reported', async () => {
    const { clock, link, reporter } = setUp()
    const { job, records } = await storedJob('j1')
    for (let i = 1; i <= 1000; i++) reporter.report(job, i)
    await turn()
    // The first value went out at once; the record, written at the end of the turn, has the latest.
    expect(link.values).toEqual([['j1', 1]])
    expect(records.updates).toEqual([{ progress: 1000 }])
    clock.advance(PROGRESS_WINDOW_MS)
    await turn()
    for (let i = 1001; i <= 1010; i++) reporter.report(job, { done: i })
    // The attempt's end: the last value is sent, and its record write left to the caller,
    // which makes it after its own when the record stays.
    expect(reporter.settle(job)).toBe(true)
    expect(link.values.map(([, v]) => v)).toEqual([1, 1000, { done: 1010 }])
    await turn()
    expect(records.updates).toEqual([{ progress: 1000 }, { progress: 1000 }])
    reporter.keep(job)
    expect(records.updates).toEqual([{ progress: 1000 }, { progress: 1000 }, { progress: { done: 1010 } }])
    expect((await records.getJob('j1'))?.progress).toEqual({ done: 1010 })
  })

  it('a job that reports and ends within one turn sends two values and leaves its one record write to the caller', async () => {
    const { link, reporter } = setUp()
    const { job, records } = await storedJob('j1')
    for (let i = 1; i <= 10; i++) reporter.report(job, i)
    expect(reporter.settle(job)).toBe(true)
    expect(link.values).toEqual([
      ['j1', 1],
      ['j1', 10],
    ])
    await turn()
    // Its end removes the record (the usual instant job): the caller writes nothing.
    expect(records.updates).toEqual([])
  })

  it('an attempt that ends after its last value was written leaves nothing to write', async () => {
    const { clock, reporter } = setUp()
    const { job, records } = await storedJob('j1')
    reporter.report(job, 1)
    await turn()
    expect(reporter.settle(job)).toBe(false)
    clock.advance(PROGRESS_WINDOW_MS)
    reporter.report(job, 2)
    await turn()
    clock.advance(PROGRESS_WINDOW_MS)
    await turn()
    expect(reporter.settle(running('j2'))).toBe(false)
    expect(records.updates).toEqual([{ progress: 1 }, { progress: 2 }])
  })

  it('a link that is down misses the value, the record does not', async () => {
    const { clock, link, reporter } = setUp()
    link.ready = false
    const { job, records } = await storedJob('j1')
    for (let i = 1; i <= 5; i++) reporter.report(job, i)
    await turn()
    clock.advance(PROGRESS_WINDOW_MS)
    reporter.report(job, 6)
    await turn()
    expect(link.messages).toEqual([])
    expect(records.updates).toEqual([{ progress: 5 }, { progress: 6 }])
    expect((await records.getJob('j1'))?.progress).toBe(6)
  })

  it('a memory node writes no record: the value is on the held job only', async () => {
    const { clock, reporter, store } = setUp()
    const records = new MemoryStore()
    await records.open()
    const job = running('j1', records)
    await records.saveJobs([job])
    const update = vi.spyOn(records, 'updateJob')
    for (let i = 1; i <= 5; i++) reporter.report(job, i)
    clock.advance(PROGRESS_WINDOW_MS)
    reporter.settle(job)
    await turn()
    expect(store.persisted).toBe(0)
    expect(update).not.toHaveBeenCalled()
    expect(job.progress).toBe(5)
  })

  it('while the store is down a job waits as one write, which takes its latest value when replayed', async () => {
    const { clock, reporter, store } = setUp()
    const { job, records } = await storedJob('j1')
    store.down = true
    for (let window = 0; window < 5; window++) {
      reporter.report(job, window)
      clock.advance(PROGRESS_WINDOW_MS)
      await turn()
    }
    expect(store.backlog).toHaveLength(1)
    expect(records.updates).toEqual([])
    // Replayed, and failing: it stays in place (as StoreOutage keeps it), and the values
    // reported after it add one write more, however many windows they span.
    const failing = vi.spyOn(records, 'updateJob').mockRejectedValueOnce(new Error('still down'))
    await expect(store.backlog[0]?.()).rejects.toThrow('still down')
    failing.mockRestore()
    for (let window = 0; window < 5; window++) {
      reporter.report(job, 40 + window)
      clock.advance(PROGRESS_WINDOW_MS)
      await turn()
    }
    reporter.report(job, 50)
    reporter.settle(job)
    expect(store.backlog).toHaveLength(2)
    store.down = false
    for (const write of store.backlog) await write()
    expect((await records.getJob('j1'))?.progress).toBe(50)
  })
})

describe('ctx.progress values', () => {
  it('takes finite numbers and small plain objects', () => {
    expect(checkProgress(0.25)).toBe(0.25)
    expect(checkProgress({ done: 3, of: 10, step: 'rows' })).toEqual({ done: 3, of: 10, step: 'rows' })
  })

  it.each([
    ['NaN', Number.NaN, "'progress' must be a finite number or a plain object, got NaN"],
    ['Infinity', Number.POSITIVE_INFINITY, 'got Infinity'],
    ['a string', 'half', 'got "half"'],
    ['an array', [1, 2], 'got an array'],
    ['a Date', new Date(0), 'got an object'],
    ['null', null, 'got null'],
    ['too large', { text: 'x'.repeat(MAX_PROGRESS_BYTES) }, `more than ${MAX_PROGRESS_BYTES}`],
  ])('refuses %s, naming it', (_what, value, message) => {
    let thrown: unknown
    try {
      checkProgress(value)
    } catch (err) {
      thrown = err
    }
    expect(thrown).toBeInstanceOf(InvalidArgumentError)
    expect((thrown as InvalidArgumentError).code).toBe(ErrorCode.INVALID_ARG)
    expect((thrown as Error).message).toContain("'progress'")
    expect((thrown as Error).message).toContain(message)
  })
})
