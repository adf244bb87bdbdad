import { beforeEach, describe, expect, it } from 'vitest'
import { StoreError } from '../../src/errors.js'
import { LeaseKeeper, type LeaseContext } from '../../src/node/lease-keeper.js'
import type { Timer } from '../../src/scheduling/timer-heap.js'
import { MemoryStore } from '../../src/storage/memory-store.js'
import type { NodeLeases, Store } from '../../src/storage/store.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { LEVEL, LogCapture } from '../helpers/log-capture.js'

const LEASE = 3000
const THIRD = LEASE / 3

/** Leases as an atomic take-or-renew store keeps them, expiring on the fake clock. */
class FakeLeases implements NodeLeases {
  readonly holders = new Map<string, { holder: string; until: number }>()
  readonly calls: string[] = []
  readonly stores = new Map<string, Store>()
  nodes: string[] = []
  down = false
  constructor(private readonly clock: FakeClock) {}

  async acquireLease(node: string, holder: string, ttlMs: number): Promise<string> {
    this.calls.push(`acquire ${node}`)
    if (this.down) throw new StoreError('store down')
    const lease = this.holders.get(node)
    if (lease !== undefined && lease.holder !== holder && lease.until > this.clock.now()) return lease.holder
    this.holders.set(node, { holder, until: this.clock.now() + ttlMs })
    return holder
  }
  async releaseLease(node: string, holder: string): Promise<void> {
    this.calls.push(`release ${node}`)
    if (this.holders.get(node)?.holder === holder) this.holders.delete(node)
  }
  async listNodes(): Promise<string[]> {
    this.calls.push('list')
    if (this.down) throw new StoreError('store down')
    return this.nodes
  }
  forNode(node: string): Store {
    let store = this.stores.get(node)
    if (store === undefined) this.stores.set(node, (store = new MemoryStore()))
    return store
  }
}

/** The node, as much as the keeper sees of it: its name, log, adoptions and scheduler. */
class FakeNode implements LeaseContext {
  readonly name = 'me'
  readonly logs = new LogCapture()
  readonly log = this.logs.logger
  readonly adoptions: { peer: string; store: Store }[] = []
  /** Unfinished jobs per peer: what adopting it finds, then what this node still holds of it. */
  readonly jobsOf = new Map<string, number>()
  private readonly handles = new Map<Timer, unknown>()
  constructor(private readonly clock: FakeClock) {}

  async adopt(peer: string, store: Store): Promise<number> {
    this.adoptions.push({ peer, store })
    return this.jobsOf.get(peer) ?? 0
  }
  heldFor(peer: string): number {
    return this.jobsOf.get(peer) ?? 0
  }
  after(timer: Timer, ms: number): void {
    this.handles.set(
      timer,
      this.clock.setTimeout(() => timer.fire(), ms),
    )
  }
  cancelTimer(timer: Timer): void {
    this.clock.clearTimeout(this.handles.get(timer))
  }
}

/** One turn of the event loop: every promise chain the store calls started has settled. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

describe('LeaseKeeper', () => {
  let clock: FakeClock
  let leases: FakeLeases
  let node: FakeNode

  beforeEach(() => {
    clock = new FakeClock()
    leases = new FakeLeases(clock)
    node = new FakeNode(clock)
  })

  /** Moves time on by `ms` a third of a lease at a time, letting each renewal finish. */
  async function run(ms: number): Promise<void> {
    for (let left = ms; left > 0; left -= THIRD) {
      clock.advance(Math.min(THIRD, left))
      await settle()
    }
  }

  const keeper = (takeover = false): LeaseKeeper => new LeaseKeeper(node, leases, LEASE, takeover)
  const renewals = (peer = 'me'): number => leases.calls.filter((c) => c === `acquire ${peer}`).length
  const lines = (msg: string): unknown[] => node.logs.matching((e) => e.msg.startsWith(msg))

  describe('its own lease', () => {
    it('acquireOwn takes a free lease at once, for a lease period', async () => {
      await keeper().acquireOwn()
      expect(leases.holders.get('me')).toEqual({ holder: 'me', until: clock.now() + LEASE })
      expect(lines("node '")).toEqual([])
    })

    it('acquireOwn waits while a peer finishes the jobs it took over, asking every third of a lease, and warns once', async () => {
      leases.holders.set('me', { holder: 'heir', until: clock.now() + 100 * LEASE })
      let owned = false
      const own = keeper()
        .acquireOwn()
        .then(() => (owned = true))
      await settle()
      expect(owned).toBe(false)
      await run(THIRD - 1)
      expect(renewals()).toBe(1)
      await run(1)
      expect(renewals()).toBe(2)
      await run(2 * THIRD)
      expect(renewals()).toBe(4)
      expect(owned).toBe(false)
      const warned = node.logs.matching(
        (e) => e.msg === "node 'heir' took over this node's jobs; waiting until it has finished them",
      )
      expect(warned).toHaveLength(1)
      expect(warned[0]).toMatchObject({ level: LEVEL.warn, holder: 'heir' })

      // The peer is done and lets go: the next try takes it.
      await leases.releaseLease('me', 'heir')
      await run(THIRD)
      await own
      expect(owned).toBe(true)
      expect(leases.holders.get('me')?.holder).toBe('me')
    })

    it('renews every third of a lease from start(), so it never lapses', async () => {
      const k = keeper()
      await k.acquireOwn()
      k.start()
      await run(THIRD - 1)
      expect(renewals()).toBe(1)
      await run(1)
      expect(renewals()).toBe(2)
      for (let i = 0; i < 9; i++) {
        await run(THIRD)
        // Always a lease in hand, two thirds of a period ahead of now at least.
        expect(leases.holders.get('me')?.until).toBeGreaterThanOrEqual(clock.now() + (2 * LEASE) / 3)
      }
      expect(renewals()).toBe(11)
      expect(await leases.acquireLease('me', 'thief', LEASE)).toBe('me')
      await k.stop()
    })

    it('logs an error when a peer holds its lease at a renewal, and goes on renewing', async () => {
      const k = keeper()
      await k.acquireOwn()
      k.start()
      // As after an outage longer than a lease: a peer adopted this node's jobs.
      leases.holders.set('me', { holder: 'thief', until: clock.now() + 10 * LEASE })
      await run(THIRD)
      expect(node.logs.matching((e) => e.msg === "lost the lease on this node's jobs to 'thief'")).toEqual([
        expect.objectContaining({ level: LEVEL.error, holder: 'thief' }),
      ])
      await run(THIRD)
      expect(renewals()).toBe(3)
      await k.stop()
    })

    it('warns when a renewal fails, and tries again a third of a lease later', async () => {
      const k = keeper()
      await k.acquireOwn()
      k.start()
      leases.down = true
      await run(THIRD)
      expect(lines('cannot renew the lease')).toEqual([expect.objectContaining({ level: LEVEL.warn })])
      leases.down = false
      await run(THIRD)
      expect(renewals()).toBe(3)
      expect(leases.holders.get('me')).toEqual({ holder: 'me', until: clock.now() + LEASE })
      await k.stop()
    })
  })

  describe('takeover', () => {
    /** Peers: 'alive' renews its own lease, 'dead' left 2 jobs, 'empty' left none. */
    function peers(): void {
      leases.nodes = ['me', 'alive', 'dead', 'empty']
      leases.holders.set('alive', { holder: 'alive', until: clock.now() + 100 * LEASE })
      node.jobsOf.set('dead', 2)
    }
    const adopted = (): string[] => node.adoptions.map((a) => a.peer)

    it('without takeover, never looks at other nodes', async () => {
      peers()
      const k = keeper(false)
      k.start()
      await run(3 * LEASE)
      expect(leases.calls.filter((c) => c !== 'acquire me')).toEqual([])
      expect(adopted()).toEqual([])
      await k.stop()
    })

    it("adopts, once a lease period, the jobs of peers whose lease expired, from that peer's store", async () => {
      peers()
      const k = keeper(true)
      k.start()
      await run(LEASE - 1)
      expect(adopted()).toEqual([])
      await run(1)
      expect(adopted()).toEqual(['dead', 'empty'])
      expect(node.adoptions[0]?.store).toBe(leases.forNode('dead'))
      // It holds the lease of the peer it took jobs from; a peer with nothing left is let go at once.
      expect(leases.holders.get('dead')?.holder).toBe('me')
      expect(leases.holders.has('empty')).toBe(false)
      expect(leases.holders.get('alive')?.holder).toBe('alive')
      expect(node.logs.matching((e) => e.msg === "took over a dead peer's unfinished jobs")).toEqual([
        expect.objectContaining({ level: LEVEL.warn, peer: 'dead', jobs: 2 }),
      ])

      // A lease later: the adopted peer is not adopted again; the empty one is looked at again.
      await run(LEASE)
      expect(adopted()).toEqual(['dead', 'empty', 'empty'])
      await k.stop()
    })

    it("keeps an adopted peer's lease while it holds that peer's jobs, and releases it when they are done", async () => {
      peers()
      const k = keeper(true)
      k.start()
      await run(LEASE)
      const before = renewals('dead')
      await run(2 * THIRD)
      expect(renewals('dead')).toBe(before + 2)
      expect(leases.holders.get('dead')).toEqual({ holder: 'me', until: clock.now() + LEASE })

      node.jobsOf.set('dead', 0)
      await run(THIRD)
      expect(leases.holders.has('dead')).toBe(false)
      expect(lines("finished a dead peer's jobs; released its lease")).toEqual([
        expect.objectContaining({ level: LEVEL.info, peer: 'dead' }),
      ])
      // Renewals leave it alone from now on (no look at the peers falls in these two thirds).
      const released = renewals('dead')
      const own = renewals('me')
      await run(2 * THIRD)
      expect(renewals('dead')).toBe(released)
      expect(renewals('me')).toBe(own + 2)
      await k.stop()
    })

    it('warns when a look at the peers fails, and looks again a lease later', async () => {
      peers()
      const k = keeper(true)
      k.start()
      leases.down = true
      await run(LEASE)
      expect(lines('takeover check failed')).toEqual([expect.objectContaining({ level: LEVEL.warn })])
      leases.down = false
      await run(LEASE)
      expect(adopted()).toEqual(['dead', 'empty'])
      await k.stop()
    })

    it("stop() cancels its timers and releases every adopted peer's lease", async () => {
      peers()
      const k = keeper(true)
      k.start()
      await run(LEASE)
      expect(leases.holders.get('dead')?.holder).toBe('me')
      await k.stop()
      expect(leases.holders.has('dead')).toBe(false)
      expect(clock.armed).toBe(0)
      const calls = leases.calls.length
      await run(3 * LEASE)
      expect(leases.calls).toHaveLength(calls)
    })
  })
})
