import { describe, expect, it } from 'vitest'
import { ErrorCode, InvalidArgumentError } from '../../src/errors.js'
import type { LiveJob } from '../../src/node/live-jobs.js'
import { PROGRESS_WINDOW_MS, ProgressReporter, type ProgressLink } from '../../src/node/progress-reporter.js'
import { MessageType, type Message, type ProgressValue } from '../../src/protocol/messages.js'
import { MAX_PROGRESS_BYTES, checkProgress } from '../../src/protocol/progress-value.js'
import { Scheduler } from '../../src/scheduling/scheduler.js'
import type { Timer } from '../../src/scheduling/timer-heap.js'
import { MemoryStore } from '../../src/storage/memory-store.js'
import { JobStatus } from '../../src/storage/store.js'
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

/** The reporter on the node's scheduler, driven by a fake clock. */
function setUp() {
  const clock = new FakeClock()
  const scheduler = new Scheduler<Timer>((timer) => timer.fire(), clock)
  const link = new RecordingLink()
  const reporter = new ProgressReporter({
    after: (timer, ms) => scheduler.schedule(timer, clock.now() + ms),
    cancelTimer: (timer) => void scheduler.cancel(timer),
    linkFor: (identity) => (identity === 'web/d1' ? link : undefined),
    maxFrameSize: 16 * 1024 * 1024,
  })
  return { clock, link, reporter }
}

function running(id: string): LiveJob {
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
    store: new MemoryStore(),
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
    const { link, reporter } = setUp()
    reporter.settle(running('j1'))
    expect(link.messages).toEqual([])
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
