import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  type RegistryAddress,
  type RegistryContext,
  RegistrySource,
  type RegistrySourceOptions,
} from '../../src/node/discovery/registry-source.js'
import type { Timer } from '../../src/scheduling/timer-heap.js'
import { groupKeys } from '../../src/storage/redis/group-keys.js'
import { encodeMemberEntry } from '../../src/storage/redis/member-entry.js'
import { FakeSourceNode } from '../helpers/fake-source-node.js'
import { LEVEL } from '../helpers/log-capture.js'
import { startRedisServer } from '../helpers/redis-server.js'
import { unique, useRedis } from '../helpers/shared-redis.js'

const NOW = 1_700_000_000_000

/** The node as a registry source sees it: time stands still at `time` unless the test moves it. */
class FakeNode extends FakeSourceNode<RegistryAddress> implements RegistryContext {
  time = NOW
  now(): number {
    return this.time
  }
}

const at = (...addresses: string[]): RegistryAddress[] =>
  addresses.map((a) => {
    const colon = a.lastIndexOf(':')
    return { host: a.slice(0, colon), port: Number(a.slice(colon + 1)) }
  })

const server = useRedis()
let redis: Redis
beforeAll(() => {
  redis = new Redis({ port: server.port, host: '127.0.0.1' })
})
afterAll(() => {
  redis?.disconnect()
})

/** A fresh group per test: its keys are the test's own. */
let group = ''
const sources: RegistrySource[] = []
afterEach(async () => {
  for (const source of sources.splice(0)) source.close()
  const keys = groupKeys(group)
  await redis.del(keys.members)
})

function register(name: string, advertise: string, leaseUntil: number, answers: string[] = []): Promise<number> {
  return redis.hset(groupKeys(group).members, name, encodeMemberEntry({ advertise, leaseUntil, answers }))
}

function announce(name: string): Promise<number> {
  return redis.publish(groupKeys(group).events, name)
}

const subscribed = (e: { msg: string }): boolean => e.msg === 'subscribed to the group events'

/** Starts a source and resolves once it has reported its first set and listens for events. */
async function started(
  options: Partial<RegistrySourceOptions> = {},
  url = server.url,
): Promise<{ node: FakeNode; source: RegistrySource }> {
  const node = new FakeNode()
  const source = new RegistrySource(node, { url, group, ...options })
  sources.push(source)
  source.start()
  await node.until(() => node.changes.length > 0, 'the first set')
  await node.logs.waitFor(subscribed, 1, 'the subscription')
  return { node, source }
}

describe('RegistrySource', () => {
  it('reports the advertised addresses of the live members, sorted, and skips the others', async () => {
    group = unique('g')
    await register('b', '127.0.0.1:5002', NOW + 15_000)
    await register('a', '127.0.0.1:5001', NOW + 10_000, ['old'])
    await register('old', '127.0.0.1:5000', NOW - 1)
    await redis.hset(groupKeys(group).members, 'broken', '{"advertise":"nowhere"}')
    const { node } = await started()

    expect(node.changes).toEqual([at('127.0.0.1:5001', '127.0.0.1:5002')])
    const bad = node.logs.matching((e) => e.level === LEVEL.warn && e.msg === 'skipping a bad registry entry')
    expect(bad).toHaveLength(1)
    expect(bad[0]).toMatchObject({ member: 'broken' })
  })

  it('reports an empty group once, and a member that registers after a message on the channel', async () => {
    group = unique('g')
    const { node } = await started()
    expect(node.changes).toEqual([[]])

    await register('a', '127.0.0.1:5001', NOW + 15_000)
    await announce('a')
    await node.until(() => node.changes.length === 2, 'the new member')
    expect(node.changes[1]).toEqual(at('127.0.0.1:5001'))

    // A member whose entry is removed, or whose lease is written as run out, is gone at the next message.
    await register('b', '127.0.0.1:5002', NOW + 15_000)
    await announce('b')
    await node.until(() => node.changes.length === 3, 'the second member')
    await redis.hdel(groupKeys(group).members, 'a')
    await register('b', '127.0.0.1:5002', NOW - 5)
    await announce('b')
    await node.until(() => node.changes.length === 4, 'both gone')
    expect(node.changes[2]).toEqual(at('127.0.0.1:5001', '127.0.0.1:5002'))
    expect(node.changes[3]).toEqual([])
  })

  it('reads again as the first live lease runs out, or at the interval, whichever comes first', async () => {
    group = unique('g')
    await register('a', '127.0.0.1:5001', NOW + 300)
    await register('b', '127.0.0.1:5002', NOW + 60_000)
    const { node } = await started({ intervalMs: 4000 })
    await node.until(() => node.armed !== undefined, 'the timer')
    expect(node.delays.at(-1)).toBe(301)

    // No message: the member simply stopped renewing.
    node.time = NOW + 301
    expect(await node.fire()).toBe(4000)
    expect(node.changes).toEqual([at('127.0.0.1:5001', '127.0.0.1:5002'), at('127.0.0.1:5002')])
    // Nothing changed: nothing reported, the interval again.
    expect(await node.fire()).toBe(4000)
    expect(node.changes).toHaveLength(2)
  })

  it('keeps the last set while Redis is away, warns once per streak, and reads again when it is back', async () => {
    group = unique('g')
    const dir = await mkdtemp(join(tmpdir(), 'jr-registry-'))
    // A server of its own, with its data on disk: it comes back with the registry.
    let own = await startRedisServer({ appendonly: true, dir })
    try {
      const writer = new Redis({ port: own.port, host: '127.0.0.1' })
      await writer.hset(
        groupKeys(group).members,
        'a',
        encodeMemberEntry({ advertise: '127.0.0.1:5001', leaseUntil: NOW + 60_000, answers: [] }),
      )
      writer.disconnect()
      const { node } = await started({ intervalMs: 2000 }, own.url)
      await node.until(() => node.armed !== undefined, 'the timer')
      // Subscribed before Redis goes: a subscription cut short would warn of its own.
      await node.logs.waitFor(subscribed, 1, 'the first subscription')
      await own.kill()

      expect(await node.fire()).toBe(2000)
      expect(await node.fire()).toBe(2000)
      expect(node.changes).toEqual([at('127.0.0.1:5001')])
      const warnings = node.logs.matching((e) => e.level === LEVEL.warn)
      // Messages, not a count: a failure shows what else was said.
      expect(warnings.map((w) => w.msg)).toEqual(['cannot read the group registry; keeping the last known members'])

      own = await startRedisServer({ appendonly: true, dir, port: own.port })
      // The connection comes back by itself, and a read follows it.
      await node.logs.waitFor((e) => e.msg === 'the group registry answers again', 1, 'a read after the outage')
      expect(node.changes).toHaveLength(1)
      // Resubscribed: a message is heard again.
      await node.logs.waitFor(subscribed, 2, 'the second subscription')
      const again = new Redis({ port: own.port, host: '127.0.0.1' })
      await again.hset(
        groupKeys(group).members,
        'b',
        encodeMemberEntry({ advertise: '127.0.0.1:5002', leaseUntil: NOW + 60_000, answers: [] }),
      )
      await again.publish(groupKeys(group).events, 'b')
      again.disconnect()
      await node.until(() => node.changes.length === 2, 'the member added after the outage')
      expect(node.changes[1]).toEqual(at('127.0.0.1:5001', '127.0.0.1:5002'))
    } finally {
      await own.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('reads and listens on Redis Cluster', async () => {
    group = unique('g')
    const cluster = await startRedisServer({ cluster: true })
    const writer = new Redis({ port: cluster.port, host: '127.0.0.1' })
    try {
      await writer.hset(
        groupKeys(group).members,
        'a',
        encodeMemberEntry({ advertise: '127.0.0.1:5001', leaseUntil: NOW + 60_000, answers: [] }),
      )
      const { node } = await started({}, cluster.url)
      expect(node.changes).toEqual([at('127.0.0.1:5001')])
      await writer.hdel(groupKeys(group).members, 'a')
      await writer.publish(groupKeys(group).events, 'a')
      await node.until(() => node.changes.length === 2, 'the member to go')
      expect(node.changes[1]).toEqual([])
    } finally {
      writer.disconnect()
      for (const source of sources.splice(0)) source.close()
      await cluster.stop()
    }
  })

  it('stops at close(): its timer is cancelled and it reads nothing more', async () => {
    group = unique('g')
    const { node, source } = await started()
    await node.until(() => node.armed !== undefined, 'the timer')
    const timer = node.armed as Timer
    const armings = node.delays.length
    source.close()
    expect(node.armed).toBeUndefined()

    // A scheduler that fired it anyway, in the same turn as the close: no read, no new timer.
    await register('a', '127.0.0.1:5001', NOW + 15_000)
    timer.fire()
    expect(node.delays).toHaveLength(armings)
    expect(node.changes).toEqual([[]])
  })
})
