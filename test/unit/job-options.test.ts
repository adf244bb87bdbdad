import { describe, expect, it } from 'vitest'
import { resolveEnqueueOptions } from '../../src/distributor/options.js'
import { toWireJob, TrackedJob } from '../../src/distributor/tracked-job.js'
import { encodeMessageFrame } from '../../src/protocol/encode.js'
import { MessageType, type JobRunOptions, type WireJob } from '../../src/protocol/messages.js'
import { JOB_RUN_OPTIONS, jobExtras, parseMessage } from '../../src/protocol/parse-message.js'
import { pack, unpack } from '../../src/protocol/msgpack.js'

const NOW = 1_700_000_000_000

/** One value of every option a job carries to its node: the compiler checks that none is missing. */
const SAMPLE = {
  period: 2.5,
  cron: '0 9 * * 1-5',
  tz: 'Europe/Berlin',
  defer: true,
  maxAttempt: 3,
  retry: { strategy: 'fixed', delay: 4 },
  timeout: 30,
} satisfies Required<JobRunOptions>

const plain: WireJob = { id: 'j1', name: 'w', args: pack({}), dueAt: NOW, run: 1 }

function tracked(opts: object): TrackedJob {
  const resolved = resolveEnqueueOptions(opts, NOW)
  return new TrackedJob(
    'j1',
    { cancel: () => Promise.resolve(false) },
    'w',
    pack({}),
    resolved.dueAt,
    resolved.job,
    'w',
    0,
    undefined,
    undefined,
  )
}

describe('the options a job carries to its node: one list', () => {
  it('lists every option, in the order the wire holds them', () => {
    expect(JOB_RUN_OPTIONS).toEqual(Object.keys(SAMPLE))
  })

  it.each(JOB_RUN_OPTIONS)('%s goes on the wire and comes back', (key) => {
    // A zone travels with its expression: a node refuses one without the other.
    const given = key === 'tz' ? { cron: SAMPLE.cron, tz: SAMPLE.tz } : { [key]: SAMPLE[key] }
    const job: WireJob = { ...plain, ...given }
    // jobExtras looks at each option by name before its loop: it must know every one.
    expect(jobExtras(job)).toEqual(given)
    const frame = encodeMessageFrame({ type: MessageType.DISPATCH, seq: 1, jobs: [job] }, 1 << 20)
    const message = parseMessage(unpack(frame.subarray(4)))
    expect(message.type === MessageType.DISPATCH && message.jobs[0]).toEqual(job)
  })

  it.each(JOB_RUN_OPTIONS)('%s given at enqueue is sent with the job', (key) => {
    // A zone means nothing without the expression it is the zone of.
    const given = key === 'tz' ? { cron: SAMPLE.cron, tz: SAMPLE.tz } : { [key]: SAMPLE[key] }
    const wire = toWireJob(tracked(given))
    expect(jobExtras(wire)).toEqual(given)
  })

  it('sends a job without options as it is, and no `defer: false`', () => {
    for (const opts of [{}, { after: 5 }, { node: 'w1' }, { notNode: 'w2', defer: false }]) {
      const job = tracked(opts)
      expect(toWireJob(job)).toBe(job)
      expect(jobExtras(toWireJob(job))).toBeUndefined()
    }
  })

  it('sends every option given, as the node reads it', () => {
    // `period` and `cron` are exclusive: each with the rest.
    const { period, cron, tz, ...rest } = SAMPLE
    expect(jobExtras(toWireJob(tracked({ ...rest, period, node: 'w1' })))).toEqual({ ...rest, period })
    expect(jobExtras(toWireJob(tracked({ ...rest, cron, tz, node: 'w1' })))).toEqual({ ...rest, cron, tz })
    expect(toWireJob(tracked({ retryMultiplier: 2 })).retry).toEqual({ strategy: 'linear', multiplier: 2 })
  })

  it('keeps onProgress in this process: a job with only it (or a delay) shares the options of a job without any, and sends none', () => {
    const onProgress = (): void => {}
    const resolved = resolveEnqueueOptions({ onProgress, after: 1 }, NOW)
    expect(resolved.onProgress).toBe(onProgress)
    expect(resolved.job).toBe(resolveEnqueueOptions({}, NOW).job)
    expect(jobExtras(toWireJob(tracked({ onProgress, period: 5 })))).toEqual({ period: 5 })
    expect(resolveEnqueueOptions({}, NOW).onProgress).toBeUndefined()
    expect(() => resolveEnqueueOptions({ onProgress: 'log' }, NOW)).toThrow(
      `'onProgress' must be a function, got "log"`,
    )
  })

  it('knows every enqueue option, and names them all when one is not', () => {
    expect(() => resolveEnqueueOptions({ colour: 'red' }, NOW)).toThrow(
      "unknown enqueue option 'colour' (known: after, runAt, period, cron, tz, node, notNode, defer, maxAttempt, retryMultiplier, retry, timeout, onProgress, unique, limitKey, priority)",
    )
  })
})
