/**
 * Unique keys across a distributor group (issue 19, "Unique jobs", scope: the whole group
 * with a Redis spool): a key is claimed in Redis in the same script that spools its job
 * (docs/redis.md), so that members, restarts and replicas booting together make one job
 * per key. Real redis-server, real distributors (in the test process, and three web-app
 * processes for the boot case), real nodes.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { pack } from 'msgpackr'
import { afterEach, describe, expect, it } from 'vitest'
import type { Distributor } from '../../src/distributor/distributor.js'
import { ErrorCode } from '../../src/errors.js'
import { groupKeys } from '../../src/storage/redis/group-keys.js'
import { GroupStore } from '../../src/storage/redis/group-store.js'
import { OpWriter } from '../../src/storage/redis/op-writer.js'
import { Node } from '../../src/node/node.js'
import { config, FIXTURE_JOBS, Resources, startDistributor, startNode } from '../helpers/cluster.js'
import { unique, useRedis } from '../helpers/shared-redis.js'
import { WebApp } from '../helpers/web-app.js'

const res = new Resources()
afterEach(() => res.releaseAll())

const redis = useRedis()

function member(group: string, name: string, port = 0): Promise<Distributor> {
  return startDistributor(res, { group, name, storage: redis.url, leaseMs: 2000, port })
}

/**
 * Resolves once every spool write `d` queued so far landed: a job no node runs is spooled
 * behind them (batches land in order) and its `persisted` waits for its own write.
 */
async function spoolWritten(d: Distributor): Promise<void> {
  const marker = d.enqueue('nobody-runs-this', {})
  await marker.persisted
  await marker.cancel()
}

describe('unique keys across a distributor group', () => {
  it('two members enqueue one key: one job; the duplicate learns its id and member; its end frees the key', async () => {
    const group = unique('uniq')
    const a = await member(group, 'a')
    const b = await member(group, 'b')
    const first = a.enqueue('echo', { n: 1 }, { unique: { key: 'k' } })
    expect(await first.unique).toEqual({ key: 'k', outcome: 'created', id: first.id })
    const dup = b.enqueue('echo', { n: 2 }, { unique: { key: 'k' } })
    expect(await dup.unique).toEqual({ key: 'k', outcome: 'deduplicated', id: first.id })
    expect(dup.id).toBe(first.id)
    await expect(dup.done).rejects.toMatchObject({ code: ErrorCode.DEDUPLICATED, id: first.id, member: 'a' })
    await dup.persisted
    expect(b.activeCount).toBe(0)

    await startNode(res, a, { name: unique('w') })
    expect(await first.done).toMatchObject({ n: 1, result: 'Yay!' })
    await spoolWritten(a)
    const again = b.enqueue('echo', { n: 3 }, { unique: { key: 'k' } })
    const made = await again.unique
    expect(made?.outcome).toBe('created')
    expect(made?.id).not.toBe(first.id)
  })

  it('keyed jobs enqueued among plain ones with a node connected all run once and report to their callers', async () => {
    const a = await member(unique('mixed'), 'a')
    await startNode(res, a, { name: unique('w') })
    const handles = Array.from({ length: 200 }, (_, i) =>
      i % 2 === 0 ? a.enqueue('echo', { i }, { unique: { key: `k${i}` } }) : a.enqueue('echo', { i }),
    )
    const results = await Promise.all(handles.map((h) => h.done))
    expect(results.map((r) => r['i'])).toEqual(handles.map((_, i) => i))
    expect(a.activeCount).toBe(0)
  })

  it('callers of one process joined while the claim is on its way all get the result', async () => {
    const a = await member(unique('join'), 'a')
    const got: number[] = []
    const h1 = a.enqueue('echo', { n: 1 }, { unique: { key: 'j' } }, () => void got.push(1))
    const h2 = a.enqueue('echo', { n: 2 }, { unique: { key: 'j' } }, () => void got.push(2))
    expect(await h1.unique).toEqual({ key: 'j', outcome: 'created', id: h1.id })
    expect(await h2.unique).toEqual({ key: 'j', outcome: 'deduplicated', id: h1.id })
    await startNode(res, a, { name: unique('w') })
    expect(await h2.done).toMatchObject({ n: 1 })
    expect(got).toEqual([1, 2])
    expect(a.activeCount).toBe(0)
  })

  it('a claim retried after its batch had landed answers the schedule it replaced again, so that the retry still cancels it', async () => {
    const store = new GroupStore(redis.url, unique('retry'))
    await store.connect()
    try {
      const claim = (id: string, definition: string): Buffer =>
        new OpWriter()
          .value('u')
          .value(id)
          .value('record')
          .value('report\0k')
          .value(definition)
          .number(0)
          .number(1)
          .bytes()
      expect(await store.applySpool('a', claim('S', 'every day'))).toEqual([])
      const again = claim('J', 'every hour')
      const answer = [{ id: 'J', outcome: 'rescheduled', holder: 'S', member: 'a' }]
      expect(await store.applySpool('b', again)).toEqual(answer)
      expect(await store.applySpool('b', again)).toEqual(answer)
      // A later job of the same definition is joined to J.
      expect(await store.applySpool('c', claim('K', 'every hour'))).toEqual([
        { id: 'K', outcome: 'deduplicated', holder: 'J', member: 'b' },
      ])
    } finally {
      await store.close()
    }
  })

  it('a throttled key whose time ran out in Redis lets another member in, and is pruned', async () => {
    const group = unique('throttle')
    const a = await member(group, 'a')
    const b = await member(group, 'b')
    const opts = { unique: { key: 't', mode: 'throttle', ttl: 3600 } } as const
    const first = a.enqueue('echo', {}, opts)
    expect((await first.unique)?.outcome).toBe('created')
    expect((await b.enqueue('echo', {}, opts).unique)?.outcome).toBe('deduplicated')
    // The hour passes in Redis: the holder's expiry (and its place in the throttle set) moves to the past.
    const keys = groupKeys(group)
    const scope = 'echo\0t'
    const client = new Redis(redis.url)
    try {
      await client.hset(keys.unique, scope, pack([first.id, 'a', '', 1, 0]))
      await client.zadd(keys.uniqueTtl, 1, scope)
      const next = b.enqueue('echo', {}, opts)
      const made = await next.unique
      expect(made?.outcome).toBe('created')
      expect(made?.id).toBe(next.id)
      expect(await client.zscore(keys.uniqueTtl, scope)).not.toBe('1')
      expect(await client.hget(keys.uniqueIds, next.id)).toBe(scope)
    } finally {
      client.disconnect()
    }
  })

  it('a keyed schedule on a durable node outlives its member: the restarted member finds it, and a changed one replaces it', async () => {
    const group = unique('restart')
    const a = await member(group, 'web-1')
    const node = await startNode(res, a, { name: unique('durable'), storage: redis.url })
    const schedule = { period: 3600, after: 3600, unique: { key: 'report' } }
    const first = a.enqueue('echo', {}, schedule)
    await first.persisted
    const port = a.port
    await a.close()

    const again = await member(group, 'web-1', port)
    // The node may have redialled while start() ran: its connect event came before this line.
    if (again.nodes.length === 0) await again.waitFor('node:connect', () => true)
    const boot = again.enqueue('echo', {}, schedule)
    expect(await boot.unique).toEqual({ key: 'report', outcome: 'deduplicated', id: first.id })
    // The schedule, read back from the spool, is the one job this member holds.
    expect(again.activeCount).toBe(1)

    const cancelled = node.waitFor('job:cancelled', (e) => e.id === first.id)
    const changed = again.enqueue('echo', {}, { ...schedule, period: 7200 })
    const replaced = await changed.unique
    expect(replaced).toEqual({ key: 'report', outcome: 'replaced', id: changed.id })
    await cancelled
    expect((await again.enqueue('echo', {}, { ...schedule, period: 7200 }).unique)?.id).toBe(changed.id)
  })

  it('three web-app processes of one group enqueue the same cron job with one key at start: one schedule runs, once per tick', async () => {
    const group = unique('boot')
    const file = join(tmpdir(), `${unique('ticks')}.log`)
    writeFileSync(file, '')
    res.add(file, () => {})
    const apps = await Promise.all(
      ['web-1', 'web-2', 'web-3'].map((name) =>
        WebApp.start(res, { distributor: { group, name, storage: redis.url, leaseMs: 2000 } }),
      ),
    )
    const node = new Node(
      { name: unique('w'), distributors: apps.map((app) => `127.0.0.1:${app.port}`), jobDirectory: FIXTURE_JOBS },
      config(),
    )
    res.add(node, (n) => n.close({ force: true }))
    await node.start()
    for (const app of apps) await app.until(() => app.events.some((e) => e.event === 'node:connect'), 'the node')
    for (const app of apps)
      app.enqueue({ count: 1, name: 'tick', args: { file }, opts: { cron: '* * * * * *', unique: { key: 'tick' } } })
    for (const app of apps) await app.until(() => app.uniques.length === 1, 'the outcome of its enqueue')
    const outcomes = apps.map((app) => app.uniques[0])
    expect(outcomes.filter((u) => u?.outcome === 'created')).toHaveLength(1)
    const creator = apps[outcomes.findIndex((u) => u?.outcome === 'created')] as WebApp
    const id = creator.uniques[0]?.id
    expect(outcomes.map((u) => u?.id)).toEqual([id, id, id])

    // The schedule's runs reach the closure of the member holding it, one result per run.
    await creator.until(() => creator.results.length >= 3, 'three runs')
    const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean)
    const runs = lines.map((line) => line.split(' '))
    expect(new Set(runs.map(([ran]) => ran))).toEqual(new Set([id]))
    const dueAts = runs.map(([, dueAt]) => dueAt)
    expect(new Set(dueAts).size).toBe(dueAts.length)
  })
})
