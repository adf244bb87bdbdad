import { describe, expect, it } from 'vitest'
import type { Limit } from '../../src/distributor/limit-options.js'
import { NameLimit } from '../../src/distributor/limits.js'
import {
  slotsDecision,
  slotsTarget,
  startGraceMs,
  startsWanted,
} from '../../src/distributor/spool/group-limit-decisions.js'
import { GroupLimits, type LimitGrants } from '../../src/distributor/spool/group-limits.js'
import { limitScope } from '../../src/storage/redis/group-keys.js'
import {
  decodeLimitAnswers,
  encodeLimitOps,
  type LimitAnswer,
  type LimitOp,
} from '../../src/storage/redis/limit-scripts.js'
import type { Timer } from '../../src/scheduling/timer-heap.js'
import { LogCapture } from '../helpers/log-capture.js'
import { unpack } from '../../src/protocol/msgpack.js'

describe('limits across a group: what a member asks for', () => {
  it('holds the slots its jobs in flight and waiting could use, within the limit; none once detached', () => {
    expect(slotsTarget(3, 0, 0, false)).toBe(0)
    expect(slotsTarget(3, 1, 0, false)).toBe(1)
    expect(slotsTarget(3, 1, 1, false)).toBe(2)
    expect(slotsTarget(3, 2, 100, false)).toBe(3)
    expect(slotsTarget(3, 2, 100, true)).toBe(0)
    expect(slotsTarget(undefined, 2, 100, false)).toBe(0)
  })

  it('keeps its share while other members wait, or what its jobs in flight use', () => {
    // 1 other waits: half of 3, rounded up.
    expect(slotsTarget(3, 0, 100, false, 1)).toBe(2)
    expect(slotsTarget(3, 3, 100, false, 1)).toBe(3)
    expect(slotsTarget(3, 1, 0, false, 1)).toBe(1)
    // 2 others wait: a third of 3.
    expect(slotsTarget(3, 0, 100, false, 2)).toBe(1)
    expect(slotsTarget(10, 0, 100, false, 3)).toBe(3)
    expect(slotsTarget(3, 0, 100, true, 2)).toBe(0)
  })

  it('takes turns when fewer slots than members want them: a slot freed by a job that ended goes back', () => {
    // Concurrency 1, one other waits: the job in flight keeps its slot…
    expect(slotsTarget(1, 1, 100, false, 1)).toBe(1)
    // …and once it ends, the slot goes back rather than to the backlog.
    expect(slotsTarget(1, 0, 100, false, 1, true)).toBe(0)
    // A slot just granted (no job of it ended here) is kept for its job; holding none, one is asked for.
    expect(slotsTarget(1, 0, 100, false, 1, false)).toBe(1)
    // Concurrency 2, two others wait: in flight only, one freed goes back.
    expect(slotsTarget(2, 2, 100, false, 2)).toBe(2)
    expect(slotsTarget(2, 1, 100, false, 2, true)).toBe(1)
    expect(slotsTarget(2, 0, 0, false, 2, false)).toBe(0)
    // As many slots as members wanting: the share, as before.
    expect(slotsTarget(2, 0, 100, false, 1, true)).toBe(1)
  })

  it('gives back what it holds beyond its target, asks for the rest unless refused since the last notice', () => {
    expect(slotsDecision(3, 1, false)).toBe('give')
    expect(slotsDecision(3, 1, true)).toBe('give')
    expect(slotsDecision(1, 3, false)).toBe('ask')
    expect(slotsDecision(1, 3, true)).toBe('none')
    expect(slotsDecision(2, 2, false)).toBe('none')
  })

  it('asks for one start per waiting job, within the rate and the free slots held', () => {
    expect(startsWanted(5, 100, undefined, false, false)).toBe(5)
    expect(startsWanted(5, 2, undefined, false, false)).toBe(2)
    expect(startsWanted(5, 100, 3, false, false)).toBe(3)
    expect(startsWanted(5, 100, 0, false, false)).toBe(0)
    expect(startsWanted(5, 100, -1, false, false)).toBe(0)
    expect(startsWanted(5, 100, undefined, true, false)).toBe(0)
    expect(startsWanted(5, 100, undefined, false, true)).toBe(0)
  })

  it('uses a granted start within a tenth of the window, 1 to 50 ms', () => {
    expect(startGraceMs(1)).toBe(1)
    expect(startGraceMs(100)).toBe(10)
    expect(startGraceMs(500)).toBe(50)
    expect(startGraceMs(60_000)).toBe(50)
  })
})

describe('limits across a group: keys and the script’s arguments', () => {
  it('names a scope by its name’s length, name and key, so that no two run together', () => {
    expect(limitScope('export', undefined)).toBe('6:export')
    expect(limitScope('export', 'c-42')).toBe('6:export:c-42')
    expect(limitScope('export', '')).toBe('6:export:')
    expect(limitScope('a:b', 'c')).not.toBe(limitScope('a', 'b:c'))
    expect(limitScope('a:1', undefined)).not.toBe(limitScope('a', '1'))
  })

  it('packs one key and one flat operation per scope, and reads two numbers back per operation', () => {
    const { keys, packed } = encodeLimitOps('jr:group:{g}:', [
      { kind: 'slots', scope: '1:x', concurrency: 3, target: 2, wants: 4 },
      { kind: 'starts', scope: '1:y', max: 5, perMs: 500, want: 4, graceMs: 50, seq: 7, giveBack: [1, 2] },
    ])
    expect(keys).toEqual(['jr:group:{g}:slots:1:x', 'jr:group:{g}:rate:1:y'])
    expect(unpack(packed)).toEqual(['c', 1, 3, 2, 4, 'r', 2, 5, 500, 4, 50, 7, 2, 1, 2])
    expect(decodeLimitAnswers([2, -1, 1, 3, 120, 0])).toEqual([
      { granted: 2, waitMs: -1, waiting: 1 },
      { granted: 3, waitMs: 120, waiting: 0 },
    ])
  })
})

describe('GroupLimits against a fake group', () => {
  /** A Redis side that answers from a script of its own, and records each call. */
  class FakeGrants implements LimitGrants {
    readonly calls: LimitOp[][] = []
    failNext = false
    /** Holds every call until it resolves. */
    gate: Promise<void> | undefined
    heard: ((scope: string) => void) | undefined
    grant = (op: LimitOp): LimitAnswer =>
      op.kind === 'slots'
        ? { granted: op.target, waitMs: -1, waiting: 0 }
        : { granted: op.want, waitMs: -1, waiting: 0 }
    async grantLimits(_member: string, ops: readonly LimitOp[]): Promise<LimitAnswer[]> {
      this.calls.push([...ops])
      if (this.gate !== undefined) await this.gate
      if (this.failNext) {
        this.failNext = false
        throw new Error('redis is down')
      }
      return ops.map(this.grant)
    }
    async publishSlots(): Promise<void> {}
    async subscribeSlots(_member: string, onScope: (scope: string) => void): Promise<void> {
      this.heard = onScope
    }
  }

  const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

  function setup(limit: Limit) {
    const timers: Timer[] = []
    const store = new FakeGrants()
    const group = new GroupLimits(
      { log: new LogCapture().logger, after: (timer) => void timers.push(timer), cancelTimer: () => {} },
      store,
      'm1',
      'm1#p1',
    )
    let wakes = 0
    const name = new NameLimit(
      'export',
      limit,
      { wake: () => void wakes++, wakeAt: () => {}, cancelTimer: () => {} },
      group,
    )
    const line = { waiting: 0 }
    name.routes.add({ wake: () => {}, wakeAll: () => {}, waiting: () => line.waiting })
    group.start()
    return { group, store, name, line, timers, wakes: () => wakes }
  }

  it('asks for the slots its waiting jobs could use in one call per turn, and gives them back when none waits', async () => {
    const { group, store, name, line, wakes } = setup({ concurrency: 3, perKey: false, rate: undefined })
    line.waiting = 5
    expect(name.mayStart('', Date.now())).toBe(false)
    name.mayStart('', Date.now())
    await turn()
    await turn()
    expect(store.calls).toEqual([[{ kind: 'slots', scope: '6:export', concurrency: 3, target: 3, wants: 3 }]])
    expect(group.slots(name, '')).toBe(3)
    expect(wakes()).toBeGreaterThan(0)
    expect(name.mayStart('', Date.now())).toBe(true)
    line.waiting = 0
    group.changed(name, '')
    await turn()
    expect(store.calls[1]).toEqual([{ kind: 'slots', scope: '6:export', concurrency: 3, target: 0, wants: 0 }])
    expect(group.slots(name, '')).toBe(0)
  })

  it('refused while its jobs waited, tells the group it waits no more once they left unsent', async () => {
    const { group, store, name, line } = setup({ concurrency: 1, perKey: false, rate: undefined })
    // Another member holds the only slot: nothing is granted.
    store.grant = (op) =>
      op.kind === 'slots' ? { granted: 0, waitMs: 5000, waiting: 0 } : { granted: op.want, waitMs: -1, waiting: 0 }
    line.waiting = 1
    group.changed(name, '')
    await turn()
    await turn()
    expect(store.calls.at(-1)).toEqual([{ kind: 'slots', scope: '6:export', concurrency: 1, target: 1, wants: 1 }])
    // Its waiting job is cancelled; the holder gives its slot back.
    line.waiting = 0
    store.heard?.('6:export')
    await turn()
    await turn()
    expect(store.calls.at(-1)).toEqual([{ kind: 'slots', scope: '6:export', concurrency: 1, target: 0, wants: 0 }])
  })

  it('keeps what it holds through a failed call, and makes a failed give-back again after its backoff', async () => {
    const { group, store, name, line, timers } = setup({ concurrency: 2, perKey: false, rate: undefined })
    line.waiting = 2
    group.changed(name, '')
    await turn()
    await turn()
    expect(group.slots(name, '')).toBe(2)
    line.waiting = 0
    store.failNext = true
    group.changed(name, '')
    await turn()
    await turn()
    expect(store.calls).toHaveLength(2)
    // Nothing here uses a slot on its way back; Redis may still count it: asked again.
    expect(group.slots(name, '')).toBe(0)
    const retry = timers.at(-1) as Timer
    retry.fire()
    await turn()
    expect(store.calls[2]).toEqual([{ kind: 'slots', scope: '6:export', concurrency: 2, target: 0, wants: 0 }])
  })

  it('having given everything back while others wait, keeps no timer and asks nothing when it hears of the scope', async () => {
    const { group, store, name, line, timers } = setup({ concurrency: 2, perKey: false, rate: undefined })
    // Another member waits (its lease runs out in 500 ms).
    store.grant = (op) =>
      op.kind === 'slots'
        ? { granted: op.target, waitMs: 500, waiting: 1 }
        : { granted: op.want, waitMs: -1, waiting: 0 }
    line.waiting = 1
    group.changed(name, '')
    await turn()
    await turn()
    expect(group.slots(name, '')).toBe(1)
    timers.length = 0
    line.waiting = 0
    group.changed(name, '')
    await turn()
    await turn()
    expect(store.calls.at(-1)).toEqual([{ kind: 'slots', scope: '6:export', concurrency: 2, target: 0, wants: 0 }])
    const calls = store.calls.length
    expect(timers).toEqual([])
    store.heard?.('6:export')
    await turn()
    await turn()
    expect(store.calls).toHaveLength(calls)
  })

  it('raising the limit in place asks again for what was refused; removing its concurrency gives the slots back', async () => {
    const { group, store, name, line } = setup({ concurrency: 2, perKey: false, rate: undefined })
    store.grant = (op) =>
      op.kind === 'slots'
        ? { granted: Math.min(op.target, 1), waitMs: -1, waiting: 0 }
        : { granted: op.want, waitMs: -1, waiting: 0 }
    line.waiting = 3
    group.changed(name, '')
    await turn()
    await turn()
    expect(group.slots(name, '')).toBe(1)
    name.limit = { concurrency: 3, perKey: false, rate: undefined }
    await turn()
    await turn()
    expect(store.calls.at(-1)).toEqual([{ kind: 'slots', scope: '6:export', concurrency: 3, target: 3, wants: 3 }])
    name.limit = { concurrency: undefined, perKey: false, rate: { max: 10, per: 1 } }
    await turn()
    await turn()
    expect(store.calls.at(-1)).toEqual([{ kind: 'slots', scope: '6:export', concurrency: 0, target: 0, wants: 0 }])
    expect(group.slots(name, '')).toBe(0)
  })

  it('closing while its first ask is on its way gives back what that ask may grant, after it', async () => {
    const { group, store, name, line } = setup({ concurrency: 3, perKey: false, rate: undefined })
    let open = () => {}
    store.gate = new Promise<void>((resolve) => (open = resolve))
    line.waiting = 2
    group.changed(name, '')
    await turn()
    await turn()
    expect(store.calls).toHaveLength(1)
    const closed = group.giveBack()
    await turn()
    // Not before the ask was answered: Redis may run the two in either order otherwise.
    expect(store.calls).toHaveLength(1)
    store.gate = undefined
    open()
    await closed
    expect(store.calls[1]).toEqual([{ kind: 'slots', scope: '6:export', concurrency: 3, target: 0, wants: 0 }])
  })

  it('closing after an ask that failed gives back what it asked for (it may have landed)', async () => {
    const { group, store, name, line } = setup({ concurrency: 3, perKey: false, rate: undefined })
    store.failNext = true
    line.waiting = 2
    group.changed(name, '')
    await turn()
    await turn()
    expect(store.calls).toHaveLength(1)
    await group.giveBack()
    expect(store.calls[1]).toEqual([{ kind: 'slots', scope: '6:export', concurrency: 3, target: 0, wants: 0 }])
  })
})
