import { describe, expect, it } from 'vitest'
import { NO_JOB_OPTIONS } from '../../src/distributor/job-options.js'
import { Spool, type SpoolContext } from '../../src/distributor/spool/spool.js'
import { TrackedJob } from '../../src/distributor/tracked-job.js'
import type { Timer } from '../../src/scheduling/timer-heap.js'
import type { GroupStore } from '../../src/storage/redis/group-store.js'
import { LogCapture } from '../helpers/log-capture.js'

/** A spool write the test lets land when it wants. */
interface Write {
  ops: Buffer
  land: () => void
}

/** The spool's store, reduced to its writes: each waits for the test. */
class HeldWrites {
  readonly writes: Write[] = []
  applySpool(_member: string, ops: Buffer): Promise<never[]> {
    return new Promise((resolve) => this.writes.push({ ops, land: () => resolve([]) }))
  }
}

function setUp(): { spool: Spool; store: HeldWrites; persisted: string[] } {
  const store = new HeldWrites()
  const persisted: string[] = []
  const ctx: SpoolContext = {
    log: new LogCapture().logger,
    // The write deadlines never fire here: a held write is slow, not failed.
    after: (_timer: Timer, _ms: number) => {},
    cancelTimer: (_timer: Timer) => {},
    persisted: (job) => persisted.push(job.id),
    changed: () => {},
    claimed: () => {},
  }
  const spool = new Spool(ctx, store as unknown as GroupStore, 'web-1', 5000)
  spool.start()
  return { spool, store, persisted }
}

let seq = 0
const job = (): TrackedJob =>
  new TrackedJob(
    `job-${++seq}`,
    { cancel: () => Promise.resolve(false) },
    'noop',
    Buffer.alloc(1),
    0,
    NO_JOB_OPTIONS,
    'noop',
    seq,
    undefined,
    undefined,
  )

/** Lets one event-loop turn pass: the spool seals what was added in a turn at its end. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** Where a promise stands, once the callbacks already due have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false
  void promise.then(() => {
    done = true
  })
  await turn()
  return done
}

describe('Spool.flush', () => {
  it('resolves once what was spooled before it is written, though writes made after it keep the spool busy', async () => {
    const { spool, store, persisted } = setUp()
    const first = job()
    spool.add(first)
    await turn()
    expect(store.writes).toHaveLength(1)

    const second = job()
    spool.add(second)
    const flushed = spool.flush()
    // Under load, more comes in behind the flush all the time.
    const third = job()
    spool.add(third)
    await turn()
    expect(await settled(flushed)).toBe(false)

    store.writes[0]?.land()
    await turn()
    expect(store.writes).toHaveLength(2)
    expect(await settled(flushed)).toBe(false)
    const fourth = job()
    spool.add(fourth)
    store.writes[1]?.land()
    await turn()
    // The write holding `second` landed: the flush is done, though `third` and `fourth` wait.
    expect(persisted).toEqual([first.id, second.id])
    expect(await settled(flushed)).toBe(true)
    expect(store.writes).toHaveLength(3)
  })

  it('resolves at once with nothing to write, and on close with writes still held', async () => {
    const { spool, store } = setUp()
    expect(await settled(spool.flush())).toBe(true)
    spool.add(job())
    const flushed = spool.flush()
    expect(store.writes).toHaveLength(1)
    expect(await settled(flushed)).toBe(false)
    spool.close()
    expect(await settled(flushed)).toBe(true)
    expect(await settled(spool.flush())).toBe(true)
  })
})

describe('Spool.releaseKey', () => {
  it('resolves once the write holding the release landed, sharing the turn’s one write, without sending it early', async () => {
    const { spool, store } = setUp()
    spool.add(job())
    const first = spool.releaseKey('a') as Promise<void>
    const second = spool.releaseKey('b')
    // Still the turn's batch: nothing sent before the turn ends.
    expect(store.writes).toHaveLength(0)
    expect(first).toBe(second)
    await turn()
    expect(store.writes).toHaveLength(1)
    expect(await settled(first)).toBe(false)
    store.writes[0]?.land()
    expect(await settled(first)).toBe(true)
  })

  it('does not resolve on close with the release unwritten (the acks it holds go with their links)', async () => {
    const { spool } = setUp()
    const releasing = spool.releaseKey('a') as Promise<void>
    spool.close()
    expect(await settled(releasing)).toBe(false)
  })
})
