import { afterEach, describe, expect, it } from 'vitest'
import type { Distributor } from '../../src/distributor/distributor.js'
import type { JobHandle } from '../../src/distributor/job-handle.js'
import type { JobArgsObject } from '../../src/protocol/args.js'
import { Resources, startDistributor, startNode } from '../helpers/cluster.js'

const res = new Resources()
afterEach(() => res.releaseAll())

/** Counts the jobs `d` creates from now on. */
function countEnqueues(d: Distributor): () => number {
  let count = 0
  d.on('job:enqueue', () => count++)
  return () => count
}

/** Resolves once the node held the jobs of these handles (accepted them). */
function accepted(d: Distributor, ...handles: JobHandle[]): Promise<unknown> {
  return Promise.all(handles.map((h) => d.waitFor('job:accepted', (e) => e.id === h.id)))
}

describe('unique jobs, until finished', () => {
  it('two enqueues with one key make one job, both callers get its result, and its end releases the key', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const created = countEnqueues(d)
    const seen: { who: string; args: JobArgsObject }[] = []
    const first = d.enqueue(
      'echo',
      { n: 1 },
      { unique: { key: 'k' } },
      (args) => void seen.push({ who: 'first', args }),
    )
    const second = d.enqueue(
      'echo',
      { n: 2 },
      { unique: { key: 'k' } },
      (args) => void seen.push({ who: 'second', args }),
    )
    expect(await first.unique).toEqual({ key: 'k', outcome: 'created', id: first.id })
    expect(await second.unique).toEqual({ key: 'k', outcome: 'deduplicated', id: first.id })
    expect(second.id).toBe(first.id)
    const [a, b] = await Promise.all([first.done, second.done])
    expect(a).toEqual({ n: 1, result: 'Yay!', trail: ['first', 'second@w1'] })
    expect(b).toBe(a)
    expect(seen.map((s) => s.who)).toEqual(['first', 'second'])
    expect(seen.map((s) => s.args)).toEqual([a, a])
    expect(created()).toBe(1)

    const third = d.enqueue('echo', { n: 3 }, { unique: { key: 'k' } })
    expect((await third.unique)?.outcome).toBe('created')
    expect(third.id).not.toBe(first.id)
    await third.done
  })

  it("a joined caller's onProgress hears the shared job's progress, as the first caller's does", async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const heard: { who: string; done: number }[] = []
    const hear = (who: string) => (value: unknown) => void heard.push({ who, done: (value as { done: number }).done })
    const first = d.enqueue('progress_burst', { n: 3 }, { unique: { key: 'p' }, onProgress: hear('first') })
    const second = d.enqueue('progress_burst', { n: 3 }, { unique: { key: 'p' }, onProgress: hear('second') })
    expect((await second.unique)?.outcome).toBe('deduplicated')
    await Promise.all([first.done, second.done])
    // The burst is coalesced (the first value at once, the last before the result): each
    // caller hears the same values, the first caller's closure first.
    const of = (who: string) => heard.filter((h) => h.who === who).map((h) => h.done)
    expect(of('first').at(-1)).toBe(3)
    expect(of('second')).toEqual(of('first'))
    expect(heard[0]?.who).toBe('first')
    expect(second.progress).toEqual({ done: 3, of: 3 })
  })

  it('keys are per job name, and a job without a key is never joined', async () => {
    const d = await startDistributor(res)
    const echo = d.enqueue('echo', {}, { unique: { key: 'k' } })
    const noop = d.enqueue('noop', {}, { unique: { key: 'k' } })
    const plain = d.enqueue('echo', {})
    expect((await noop.unique)?.outcome).toBe('created')
    expect(new Set([echo.id, noop.id, plain.id]).size).toBe(3)
    expect(await plain.unique).toBeUndefined()
  })

  it('a joined closure that throws keeps no other caller from its result', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const reported = d.waitFor('feedback:error')
    let got: JobArgsObject | undefined
    const first = d.enqueue('noop', {}, { unique: { key: 'k' } }, () => {
      throw new Error('first closure')
    })
    d.enqueue('noop', {}, { unique: { key: 'k' } }, (args) => void (got = args))
    await first.done
    expect(got).toEqual({})
    expect((await reported).error.message).toBe('first closure')
  })

  it("a joined caller's cancel() cancels the shared job, and every caller's done sees it", async () => {
    const d = await startDistributor(res)
    const first = d.enqueue('echo', { n: 1 }, { unique: { key: 'k' } })
    const second = d.enqueue('echo', { n: 2 }, { unique: { key: 'k' } })
    expect(await second.cancel()).toBe(true)
    expect(await first.done).toEqual({ n: 1 })
    expect(await second.done).toEqual({ n: 1 })
    expect((await d.enqueue('echo', {}, { unique: { key: 'k' } }).unique)?.outcome).toBe('created')
  })
})

describe('unique jobs, throttle', () => {
  it('within the ttl a duplicate of a finished job creates nothing and gets its result', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const opts = { unique: { key: 'k', mode: 'throttle', ttl: 3600 } } as const
    const first = d.enqueue('echo', { n: 1 }, opts)
    const result = await first.done
    let got: JobArgsObject | undefined
    let again: ReturnType<typeof d.enqueue> | undefined
    const ran = new Promise<void>((resolve) => {
      again = d.enqueue('echo', { n: 2 }, opts, (args) => {
        got = args
        resolve()
      })
    })
    expect(await again?.unique).toEqual({ key: 'k', outcome: 'deduplicated', id: first.id })
    await ran
    expect(got).toEqual(result)
    expect(d.activeCount).toBe(0)
  })
})

describe('unique jobs, replace', () => {
  it('replaces the args and due time of a job still waiting here; a job already at its node is left alone', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    d.pause('stamp')
    const replace = { key: 'r', mode: 'replace' } as const
    const first = d.enqueue('stamp', { v: 1 }, { after: 3600, unique: replace })
    const second = d.enqueue('stamp', { v: 2 }, { after: 0.01, unique: replace })
    expect(await second.unique).toEqual({ key: 'r', outcome: 'replaced', id: first.id })
    d.pause('stamp', false)
    const args = await first.done
    expect(args).toMatchObject({ v: 2, node: 'w1' })
    expect(args['dueAt']).toBeLessThan(Date.now() + 60_000)
    expect(await second.done).toBe(args)

    const sent = d.enqueue('stamp', { v: 3 }, { after: 3600, unique: replace })
    await accepted(d, sent)
    const late = d.enqueue('stamp', { v: 4 }, { after: 0, unique: replace })
    expect(await late.unique).toEqual({ key: 'r', outcome: 'deduplicated', id: sent.id })
    expect(await late.cancel()).toBe(true)
    expect(await sent.done).toEqual({ v: 3 })
  })
})

describe('unique schedules', () => {
  it('a cron job with a key enqueued three times is one schedule; a changed definition replaces it', async () => {
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: 'w1' })
    const created = countEnqueues(d)
    const boot = (cron: string, args: JobArgsObject = {}): JobHandle =>
      d.enqueue('cron_stamp', args, { cron, tz: 'Europe/Berlin', unique: { key: 'report' } })
    const handles = [boot('0 9 * * 1-5'), boot('0 9 * * 1-5'), boot('0 9 * * 1-5')]
    expect((await Promise.all(handles.map((h) => h.unique))).map((u) => u?.outcome)).toEqual([
      'created',
      'deduplicated',
      'deduplicated',
    ])
    expect(new Set(handles.map((h) => h.id)).size).toBe(1)
    await accepted(d, handles[0] as JobHandle)
    expect(created()).toBe(1)
    expect(node.jobCount).toBe(1)

    const changed = boot('0 10 * * 1-5')
    expect(await changed.unique).toEqual({ key: 'report', outcome: 'replaced', id: changed.id })
    expect(changed.id).not.toBe(handles[0]?.id)
    await Promise.all([(handles[0] as JobHandle).done, accepted(d, changed)])
    expect(node.jobCount).toBe(1)
    expect(await boot('0 10 * * 1-5').unique).toEqual({ key: 'report', outcome: 'deduplicated', id: changed.id })
    // Other args are another definition too.
    const otherArgs = boot('0 10 * * 1-5', { to: 'ops' })
    expect((await otherArgs.unique)?.outcome).toBe('replaced')
    await Promise.all([changed.done, accepted(d, otherArgs)])
    expect(node.jobCount).toBe(1)
    expect(created()).toBe(3)
  })

  it('a periodic job with a key: the same period joins it, another period replaces it', async () => {
    const d = await startDistributor(res)
    const every = (period: number): JobHandle => d.enqueue('noop', {}, { after: 3600, period, unique: { key: 'tick' } })
    const first = every(60)
    expect((await every(60).unique)?.outcome).toBe('deduplicated')
    const second = every(30)
    expect((await second.unique)?.outcome).toBe('replaced')
    expect(await first.done).toEqual({})
    expect(d.activeCount).toBe(1)
    expect(d.pendingCount).toBe(1)
    expect(every(30).id).toBe(second.id)
  })
})
