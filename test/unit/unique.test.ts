import { afterAll, afterEach, describe, expect, it, vi } from 'vitest'
import { Distributor } from '../../src/distributor/distributor.js'
import { decideUnique, type HolderView } from '../../src/distributor/unique.js'
import { ErrorCode } from '../../src/errors.js'

describe('decideUnique', () => {
  const holder = (over: Partial<HolderView> = {}): HolderView => ({
    state: 'pending',
    scheduled: false,
    sameDefinition: false,
    ...over,
  })

  it('creates without a holder, joins or replaces a plain job, reschedules a changed schedule', () => {
    expect(decideUnique(undefined, 'replace', true)).toBe('create')
    expect(decideUnique(holder(), 'until-finished', false)).toBe('join')
    expect(decideUnique(holder(), 'throttle', false)).toBe('join')
    expect(decideUnique(holder({ state: 'done' }), 'throttle', false)).toBe('join')
    expect(decideUnique(holder(), 'replace', false)).toBe('replace')
    expect(decideUnique(holder({ state: 'sent' }), 'replace', false)).toBe('join')
    expect(decideUnique(holder({ state: 'accepted' }), 'replace', false)).toBe('join')
    expect(decideUnique(holder({ scheduled: true, sameDefinition: true }), 'until-finished', true)).toBe('join')
    expect(decideUnique(holder({ scheduled: true, state: 'accepted' }), 'until-finished', true)).toBe('reschedule')
    // A plain job under the key of a schedule, or the other way round, is a changed definition.
    expect(decideUnique(holder({ scheduled: true }), 'until-finished', false)).toBe('reschedule')
    expect(decideUnique(holder(), 'until-finished', true)).toBe('reschedule')
  })
})

describe('unique enqueue options', () => {
  const d = new Distributor({ port: 0 })
  afterAll(() => d.close())

  it.each([
    ['a string', 'k', /'unique' must be an object/],
    ['no key', {}, /'unique.key' must be a string of 1..1024 characters, got undefined/],
    ['an empty key', { key: '' }, /'unique.key'/],
    ['a key too long', { key: 'k'.repeat(1025) }, /'unique.key'/],
    ['a number key', { key: 42 }, /'unique.key'/],
    [
      'an unknown mode',
      { key: 'k', mode: 'debounce' },
      /'unique.mode' must be one of until-finished, throttle, replace/,
    ],
    ['throttle without ttl', { key: 'k', mode: 'throttle' }, /'unique.ttl' is required with mode 'throttle'/],
    ['a ttl of 0', { key: 'k', mode: 'throttle', ttl: 0 }, /'unique.ttl'/],
    ['a ttl that is no number', { key: 'k', mode: 'throttle', ttl: '1m' }, /'unique.ttl'/],
    ['a ttl outside throttle', { key: 'k', ttl: 5 }, /'unique.ttl' applies to mode 'throttle' only/],
    ['an unknown field', { key: 'k', scope: 'group' }, /unknown unique option 'scope'/],
  ])('refuses %s, naming the field', (_what, unique, message) => {
    expect(() => d.enqueue('noop', {}, { unique } as never)).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARG, message: expect.stringMatching(message) }),
    )
    expect(d.activeCount).toBe(0)
  })

  it('refuses throttle for a schedule', () => {
    expect(() => d.enqueue('noop', {}, { cron: '@daily', unique: { key: 'k', mode: 'throttle', ttl: 60 } })).toThrow(
      /'unique.mode' 'throttle' does not apply to a 'period' or 'cron' job/,
    )
  })

  it('jobs whose claim is on its way count against maxPending', async () => {
    const spooled = new Distributor({ port: 0, storage: 'redis://127.0.0.1:1', maxPending: 3 })
    for (let i = 0; i < 3; i++) spooled.enqueue('noop', {}, { unique: { key: `k${i}` } })
    expect(() => spooled.enqueue('noop', {}, { unique: { key: 'k3' } })).toThrow(
      expect.objectContaining({ code: ErrorCode.QUEUE_FULL }),
    )
    expect(() => spooled.enqueue('noop', {})).toThrow(expect.objectContaining({ code: ErrorCode.QUEUE_FULL }))
    await spooled.close()
  })

  it('a spooled distributor closed before its name was held fails a claim not yet sent: done and unique reject', async () => {
    const spooled = new Distributor({ port: 0, storage: 'redis://127.0.0.1:1' })
    const handle = spooled.enqueue('noop', {}, { unique: { key: 'k' } })
    await spooled.close()
    await expect(handle.unique).rejects.toMatchObject({ code: ErrorCode.DISTRIBUTOR_CLOSED })
    await expect(handle.done).rejects.toMatchObject({ code: ErrorCode.DISTRIBUTOR_CLOSED })
    await expect(handle.persisted).rejects.toMatchObject({ code: ErrorCode.DISTRIBUTOR_CLOSED })
  })
})

describe('throttle on fake time', () => {
  afterEach(() => {
    vi.useRealTimers()
  })

  it('lets a second job in only once the ttl has passed, finished or not', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'] })
    const d = new Distributor({ port: 0 })
    const opts = { unique: { key: 'k', mode: 'throttle', ttl: 60 } } as const
    const first = d.enqueue('noop', {}, opts)
    expect((await first.unique)?.outcome).toBe('created')
    vi.advanceTimersByTime(30_000)
    expect(await d.enqueue('noop', {}, opts).unique).toEqual({ key: 'k', outcome: 'deduplicated', id: first.id })
    // Ended (cancelled here, as no node is connected): the key still holds for the ttl.
    expect(await first.cancel()).toBe(true)
    vi.advanceTimersByTime(29_999)
    expect((await d.enqueue('noop', {}, opts).unique)?.id).toBe(first.id)
    vi.advanceTimersByTime(1)
    const second = d.enqueue('noop', {}, opts)
    expect((await second.unique)?.outcome).toBe('created')
    expect(second.id).not.toBe(first.id)
    // The ttl runs from the second job's enqueue, though it is still pending.
    vi.advanceTimersByTime(59_999)
    expect(d.enqueue('noop', {}, opts).id).toBe(second.id)
    vi.advanceTimersByTime(1)
    expect((await d.enqueue('noop', {}, opts).unique)?.outcome).toBe('created')
    expect(d.activeCount).toBe(2)
    await d.close()
  })
})
