import { describe, expect, it } from 'vitest'
import { StoreError } from '../../src/errors.js'
import { createLogger } from '../../src/logger.js'
import { STORE_PROBE_MS, StoreOutage, type OutageContext } from '../../src/node/store-outage.js'
import type { Timer } from '../../src/scheduling/timer-heap.js'
import type { Store } from '../../src/storage/store.js'

const durable = { durable: true } as Store
const volatile = { durable: false } as Store

/** A node as the outage guard sees it: a store to ping, a timer, and what it was told. */
function fakeNode() {
  const changes: (string | undefined)[] = []
  const probes: { timer: Timer; ms: number }[] = []
  let answer: () => Promise<void> = () => Promise.resolve()
  let closed = false
  const ctx: OutageContext = {
    log: createLogger('silent'),
    ping: () => (closed ? undefined : answer()),
    after: (timer, ms) => void probes.push({ timer, ms }),
    changed: (error) => void changes.push(error?.message),
  }
  return {
    ctx,
    changes,
    probes,
    storeAnswers: (fn: () => Promise<void>) => (answer = fn),
    close: () => (closed = true),
    /** Fires the last probe armed. */
    probe: () => (probes.at(-1) as { timer: Timer }).timer.fire(),
  }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

describe('StoreOutage', () => {
  it('a memory store is never written: what depends on the write happens at once', () => {
    const node = fakeNode()
    const outage = new StoreOutage(node.ctx)
    const order: string[] = []
    const result = outage.persist(
      volatile,
      () => {
        order.push('write')
        return Promise.resolve()
      },
      () => order.push('then'),
    )
    expect(result).toBeUndefined()
    expect(order).toEqual(['then'])
  })

  it('a durable write comes first, then what depends on it', async () => {
    const node = fakeNode()
    const outage = new StoreOutage(node.ctx)
    const order: string[] = []
    await outage.persist(
      durable,
      async () => void order.push('write'),
      () => order.push('then'),
    )
    expect(order).toEqual(['write', 'then'])
    expect(node.changes).toEqual([])
  })

  it('a failed write marks the store down once, queues the write, and probes every STORE_PROBE_MS until it answers', async () => {
    const node = fakeNode()
    const outage = new StoreOutage(node.ctx)
    const order: string[] = []
    let fail = true
    const write = (name: string) => () =>
      fail ? Promise.reject(new Error(`${name} failed`)) : Promise.resolve(void order.push(name))
    await outage.persist(durable, write('a'), () => order.push('then a'))
    // Down: later writes wait without being tried.
    expect(outage.persist(durable, write('b'), () => order.push('then b'))).toBeUndefined()
    outage.replayLater(write('c'))
    expect(node.changes).toEqual(['a failed'])
    expect(node.probes.map((p) => p.ms)).toEqual([STORE_PROBE_MS])
    // Still down at the first probe: probed again.
    node.storeAnswers(() => Promise.reject(new StoreError('still down')))
    node.probe()
    await turn()
    expect(node.probes.map((p) => p.ms)).toEqual([STORE_PROBE_MS, STORE_PROBE_MS])
    expect(order).toEqual([])
    // Back: replayed in order, each write before what depends on it, then the node is told.
    fail = false
    node.storeAnswers(() => Promise.resolve())
    node.probe()
    await turn()
    expect(order).toEqual(['a', 'then a', 'b', 'then b', 'c'])
    expect(node.changes).toEqual(['a failed', undefined])
  })

  it('a write that fails during the replay keeps it and the rest, in order, for the next recovery', async () => {
    const node = fakeNode()
    const outage = new StoreOutage(node.ctx)
    const order: string[] = []
    const failing = new Set(['a', 'b'])
    const write = (name: string) => () =>
      failing.has(name) ? Promise.reject(new Error(`${name} failed`)) : Promise.resolve(void order.push(name))
    await outage.persist(durable, write('a'), () => order.push('then a'))
    outage.persist(durable, write('b'), () => order.push('then b'))
    outage.persist(durable, write('c'), () => order.push('then c'))
    failing.delete('a')
    node.probe()
    await turn()
    // 'a' went through; 'b' failed again: down again, with 'b' and 'c' kept.
    expect(order).toEqual(['a', 'then a'])
    expect(node.changes).toEqual(['a failed', 'b failed'])
    failing.delete('b')
    node.probe()
    await turn()
    expect(order).toEqual(['a', 'then a', 'b', 'then b', 'c', 'then c'])
    expect(node.changes).toEqual(['a failed', 'b failed', undefined])
  })

  it('a write made during the replay waits behind it, and the store is up only once it is written', async () => {
    const node = fakeNode()
    const outage = new StoreOutage(node.ctx)
    const order: string[] = []
    let fail = true
    let letA = (): void => {}
    const write = (name: string) => () => {
      if (fail) return Promise.reject(new Error(`${name} failed`))
      order.push(`write ${name}`)
      return name === 'a' ? new Promise<void>((resolve) => (letA = resolve)) : Promise.resolve()
    }
    await outage.persist(durable, write('a'), () => order.push('then a'))
    outage.persist(durable, write('b'), () => order.push('then b'))
    fail = false
    node.probe()
    await turn()
    // 'a' is being replayed: a write made now goes after 'b', not straight to the store.
    expect(order).toEqual(['write a'])
    expect(outage.persist(durable, write('c'), () => order.push('then c'))).toBeUndefined()
    expect(order).toEqual(['write a'])
    letA()
    await turn()
    expect(order).toEqual(['write a', 'then a', 'write b', 'then b', 'write c', 'then c'])
    expect(node.changes).toEqual(['a failed', undefined])
  })

  it('a closed node stops probing', async () => {
    const node = fakeNode()
    const outage = new StoreOutage(node.ctx)
    await outage.persist(
      durable,
      () => Promise.reject(new Error('down')),
      () => {},
    )
    node.close()
    node.probe()
    await turn()
    expect(node.probes).toHaveLength(1)
    expect(node.changes).toEqual(['down'])
  })
})
