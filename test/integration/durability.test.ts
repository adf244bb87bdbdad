import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Distributor } from '../../src/distributor/distributor.js'
import type { JobHandle } from '../../src/distributor/job-handle.js'
import { allAccepted, Resources, spawnConnectedNode, startDistributor, startNode } from '../helpers/cluster.js'
import { startRedisServer } from '../helpers/redis-server.js'
import { unique, useRedis } from '../helpers/shared-redis.js'

const res = new Resources()
afterEach(() => res.releaseAll())

const redis = useRedis()

/**
 * A redis-server that writes every command to its append-only file before answering, and
 * can be killed and started again on the same data and port. Stopped after the test.
 */
async function crashableRedis(): Promise<{ url: string; crash(): Promise<void>; restart(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'jr-aof-'))
  res.add(dir, (p) => rm(p, { recursive: true, force: true }))
  let server = await startRedisServer({ appendonly: true, dir })
  res.add(null, () => server.stop())
  return {
    url: server.url,
    crash: () => server.kill('SIGKILL'),
    restart: async () => {
      server = await startRedisServer({ appendonly: true, dir, port: server.port })
    },
  }
}

describe('durable nodes on Redis', () => {
  it('a node killed with SIGKILL and restarted with the same name finishes every job, delayed ones at their original due time', async () => {
    const d = await startDistributor(res, { heartbeatMs: 200 })
    const name = unique('durable')
    const flags = ['--storage', redis.url]
    const first = await spawnConnectedNode(res, d, name, flags)
    const dueAt = Date.now() + 1500
    const delayed = Array.from({ length: 1000 }, (_, i) => d.enqueue('stamp', { i }, { runAt: dueAt }))
    const instant = Array.from({ length: 1000 }, (_, i) => d.enqueue('slow', { i, ms: 2 }))
    // Kill it once some instant jobs are done and every delayed one is stored there.
    let successes = 0
    const enough = new Promise<void>((resolve) =>
      d.on('job:success', () => {
        if (++successes === 100) resolve()
      }),
    )
    await Promise.all([enough, allAccepted(d, delayed)])
    first.child.kill('SIGKILL')
    expect(await first.exited).toBeNull()
    await spawnConnectedNode(res, d, name, flags)
    const instantResults = await Promise.all(instant.map((h) => h.done))
    expect(new Set(instantResults.map((a) => a['i'])).size).toBe(1000)
    const delayedResults = await Promise.all(delayed.map((h) => h.done))
    expect(new Set(delayedResults.map((a) => a['i'])).size).toBe(1000)
    for (const args of delayedResults) {
      // Absolute due times: the restart did not restart the delay from zero.
      expect(args['dueAt']).toBe(dueAt)
      expect(args['ranAt'] as number).toBeGreaterThanOrEqual(dueAt)
    }
  })

  it('feedback produced while the distributor is gone arrives as feedback:orphan at its successor', async () => {
    const d1 = await startDistributor(res)
    const port = d1.port
    const name = unique('outbox')
    await spawnConnectedNode(res, d1, name, ['--storage', redis.url])
    const handles = Array.from({ length: 200 }, (_, i) => d1.enqueue('stamp', { i }, { after: 0.8 }))
    await allAccepted(d1, handles)
    await d1.close()
    for (const h of handles) await expect(h.done).rejects.toMatchObject({ code: 'ERR_DISTRIBUTOR_CLOSED' })
    const d2 = res.add(new Distributor({ port, heartbeatMs: 1000 }), (d) => d.close())
    const orphans = new Map<string, Record<string, unknown>>()
    const all = new Promise<void>((resolve) =>
      d2.on('feedback:orphan', (e) => {
        orphans.set(e.id, e.args)
        if (orphans.size === handles.length) resolve()
      }),
    )
    await d2.start()
    await all
    expect([...orphans.keys()].sort()).toEqual(handles.map((h) => h.id).sort())
    expect([...orphans.values()].every((a) => typeof a['ranAt'] === 'number')).toBe(true)
  })

  it('jobs accepted before redis-server was killed still complete after it restarts', async () => {
    const server = await crashableRedis()
    const d = await startDistributor(res)
    const name = unique('outage')
    await spawnConnectedNode(res, d, name, ['--storage', server.url])
    const handles = Array.from({ length: 300 }, (_, i) => d.enqueue('stamp', { i }, { after: 1 }))
    await allAccepted(d, handles)
    await server.crash()
    await server.restart()
    const results = await Promise.all(handles.map((h) => h.done))
    expect(new Set(results.map((a) => a['i'])).size).toBe(300)
  })

  it('while its Redis is down a node takes no new jobs (they go elsewhere) and finishes what it held once Redis is back', async () => {
    const server = await crashableRedis()
    const d = await startDistributor(res)
    const durable = await startNode(res, d, { name: unique('flaky'), storage: server.url })
    const held = Array.from({ length: 50 }, (_, i) => d.enqueue('stamp', { i }, { after: 0.3, node: durable.name }))
    await allAccepted(d, held)
    const down = durable.waitFor('store:down')
    await server.crash()
    // The held jobs fire, run, and cannot record their end: the node notices the outage.
    await down
    await startNode(res, d, { name: 'backup' })
    const during = await Promise.all(Array.from({ length: 20 }, () => d.enqueue('where', {}).done))
    expect(new Set(during.map((a) => a['node']))).toEqual(new Set(['backup']))
    const up = durable.waitFor('store:up')
    await server.restart()
    await up
    const results = await Promise.all(held.map((h) => h.done))
    expect(new Set(results.map((a) => a['i'])).size).toBe(50)
  })
})

describe('routing across a durable node restart', () => {
  it('jobs a restarted node resumed still count against its window', async () => {
    const d = await startDistributor(res, { heartbeatMs: 200 })
    const name = unique('window')
    const flags = ['--storage', redis.url, '--concurrency', '2', '--window', '2']
    const first = await spawnConnectedNode(res, d, name, flags)
    const held = [d.enqueue('slow', { ms: 600 }), d.enqueue('slow', { ms: 600 })]
    await allAccepted(d, held)
    first.child.kill('SIGKILL')
    await first.exited
    await spawnConnectedNode(res, d, name, flags)
    const order: string[] = []
    d.on('job:success', (e) => order.push(`success:${e.id}`))
    const third = d.enqueue('slow', { ms: 1 })
    d.on('job:dispatch', (e) => {
      if (e.id === third.id) order.push('dispatch:third')
    })
    await Promise.all([...held.map((h) => h.done), third.done])
    // The two resumed jobs fill the window: the third goes out only once one of them is done.
    expect(order.indexOf('dispatch:third')).toBeGreaterThan(0)
    expect(order[0]).toMatch(/^success:/)
  })
})

describe('periodic jobs across a node outage', () => {
  it('runs missed while the node was down run once when it is back, not once per missed period', async () => {
    const d = await startDistributor(res)
    const name = unique('periodic')
    const first = await startNode(res, d, { name, storage: redis.url })
    const runs: number[] = []
    const handle = d.enqueue('stamp', {}, { period: 0.2 }, (args) => {
      runs.push(args['run'] as number)
    })
    await d.waitFor('job:success', (e) => e.id === handle.id && e.run === 2)
    await first.close()
    const before = runs.length
    const lastBefore = runs[before - 1] as number
    // The node stays down for several periods: time has to pass, no event marks it.
    await new Promise((resolve) => setTimeout(resolve, 1000))
    await startNode(res, d, { name, storage: redis.url })
    await d.waitFor('job:success', (e) => e.id === handle.id && e.run > lastBefore + 1)
    const after = runs.slice(before)
    // The run that was due while it was down runs once, then the schedule skips ahead to the
    // next period after now instead of replaying each missed one.
    expect(after[0]).toBe(lastBefore + 1)
    expect(after[1] as number).toBeGreaterThanOrEqual(lastBefore + 4)
    expect(await handle.cancel()).toBe(true)
  })
})

describe('takeover of a dead node’s jobs', () => {
  it('when a node dies for good, exactly one peer with takeover on adopts its jobs and completes them', async () => {
    const d = await startDistributor(res, { heartbeatMs: 200 })
    const lease = ['--storage', redis.url, '--lease-ms', '600']
    const doomed = unique('doomed')
    const a = await spawnConnectedNode(res, d, doomed, lease)
    const dueAt = Date.now() + 800
    const handles = Array.from({ length: 200 }, (_, i) => d.enqueue('stamp', { i }, { runAt: dueAt, node: doomed }))
    await allAccepted(d, handles)
    a.child.kill('SIGKILL')
    const heirs = [unique('heir'), unique('heir')]
    for (const heir of heirs) await spawnConnectedNode(res, d, heir, [...lease, '--takeover'])
    const results = await Promise.all(handles.map((h) => h.done))
    expect(new Set(results.map((r) => r['i'])).size).toBe(200)
    const adopters = new Set(results.map((r) => r['node']))
    // One lease per dead node: one heir won it and ran every job; the other ran none.
    expect(adopters.size).toBe(1)
    expect(heirs).toContain([...adopters][0])
    expect(results.every((r) => r['dueAt'] === dueAt)).toBe(true)
  })

  /** A periodic job held by a node killed for good; `adopt()` starts a peer that takes its jobs over. */
  async function orphanedPeriodicJob(): Promise<{
    d: Distributor
    h: JobHandle
    adopt: (heir: string) => Promise<unknown>
  }> {
    const d = await startDistributor(res, { heartbeatMs: 200 })
    const lease = ['--storage', redis.url, '--lease-ms', '600']
    const doomed = unique('doomed')
    const a = await spawnConnectedNode(res, d, doomed, lease)
    const h = d.enqueue('stamp', {}, { period: 0.2, after: 0.8, node: doomed })
    await allAccepted(d, [h])
    a.child.kill('SIGKILL')
    return { d, h, adopt: (heir) => spawnConnectedNode(res, d, heir, [...lease, '--takeover']) }
  }

  it('a cancel waiting for a dead node reaches the peer that adopted the job once it reports on it', async () => {
    const { h, adopt } = await orphanedPeriodicJob()
    const answer = h.cancel()
    await adopt(unique('heir'))
    expect(await answer).toBe(true)
  })

  it('a periodic job adopted by a peer goes on there, and a cancel reaches it there', async () => {
    const { d, h, adopt } = await orphanedPeriodicJob()
    const heir = unique('heir')
    // Runs reported by the heir: the distributor takes it for the job's holder now, not
    // for a second copy to stop.
    const threeRuns = new Promise<void>((resolve) => {
      let runs = 0
      d.on('job:success', (e) => e.id === h.id && e.node === heir && ++runs === 3 && resolve())
    })
    await adopt(heir)
    await threeRuns
    expect(await h.cancel()).toBe(true)
  })
})
