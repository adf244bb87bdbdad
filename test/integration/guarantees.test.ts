import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { Distributor } from '../../src/distributor/distributor.js'
import type { JobFailedError } from '../../src/errors.js'
import { MemoryStore } from '../../src/storage/memory-store.js'
import { Resources, spawnConnectedNode, spawnNode, startDistributor, startNode } from '../helpers/cluster.js'
import { unhandledRejectionsOf } from '../helpers/unhandled.js'

const res = new Resources()
afterEach(() => res.releaseAll())

/** Counts success feedback per node for every job enqueued from now on. */
function countByNode(d: Distributor): Map<string, number> {
  const counts = new Map<string, number>()
  d.on('job:success', (e) => counts.set(e.node, (counts.get(e.node) ?? 0) + 1))
  return counts
}

describe('guarantees, with real jr-node processes', () => {
  it('completes 1,000 jobs enqueued before any node connected', async () => {
    const d = await startDistributor(res)
    const handles = Array.from({ length: 1000 }, (_, i) => d.enqueue('echo', { i }))
    expect(d.pendingCount).toBe(1000)
    await spawnConnectedNode(res, d, 'late1')
    const results = await Promise.all(handles.map((h) => h.done))
    expect(results.map((r) => r['i'])).toEqual(Array.from({ length: 1000 }, (_, i) => i))
    expect(d.activeCount).toBe(0)
  })

  it('loses none of 5,000 jobs when a node is killed with SIGKILL mid-burst', async () => {
    const d = await startDistributor(res, { heartbeatMs: 200 })
    const victim = await spawnConnectedNode(res, d, 'victim')
    await spawnConnectedNode(res, d, 'survivor')
    const byNode = countByNode(d)
    let killed = false
    const requeued = new Set<string>()
    d.on('job:requeue', (e) => requeued.add(e.id))
    d.on('job:success', () => {
      if (!killed && (byNode.get('victim') ?? 0) >= 200) {
        killed = true
        victim.child.kill('SIGKILL')
      }
    })
    const handles = Array.from({ length: 5000 }, (_, i) => d.enqueue('slow', { i, ms: 1 }))
    const results = await Promise.all(handles.map((h) => h.done))
    expect(killed).toBe(true)
    expect(results).toHaveLength(5000)
    expect(new Set(results.map((r) => r['i'])).size).toBe(5000)
    // The victim held unfinished jobs when it died; they were re-run on the survivor.
    expect(requeued.size).toBeGreaterThan(0)
    expect(byNode.get('survivor')).toBeGreaterThan(0)
    expect(await victim.exited).toBeNull()
  })

  it('shares a burst of 10,000 no-op jobs evenly over two equal nodes', async () => {
    const d = await startDistributor(res)
    // Windows that hold the whole burst: it is placed in one pass, before either node could
    // finish a job and make the split depend on which process the machine ran first.
    await spawnConnectedNode(res, d, 'even1', ['--window', '5000'])
    await spawnConnectedNode(res, d, 'even2', ['--window', '5000'])
    const byNode = countByNode(d)
    await Promise.all(Array.from({ length: 10_000 }, () => d.enqueue('noop', {}).done))
    expect(byNode.get('even1')).toBe(5_000)
    expect(byNode.get('even2')).toBe(5_000)
  })

  it('a slow node gets less of a burst than a fast one', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'fast', concurrency: 10 })
    await startNode(res, d, { name: 'slow', concurrency: 1 })
    const byNode = countByNode(d)
    await Promise.all(Array.from({ length: 300 }, () => d.enqueue('slow', { ms: 2 }).done))
    expect(byNode.get('fast') ?? 0).toBeGreaterThan(byNode.get('slow') ?? 0)
  })

  it('jr-node drains on SIGTERM: the running job finishes and its feedback arrives before exit', async () => {
    const d = await startDistributor(res)
    const proc = await spawnConnectedNode(res, d, 'graceful')
    const started = d.waitFor('job:accepted')
    const handle = d.enqueue('slow', { ms: 300 })
    await started
    proc.child.kill('SIGTERM')
    const args = await handle.done
    expect(args['node']).toBe('graceful')
    expect(await proc.exited).toBe(0)
  })

  it('jr-node refuses bad flags with a clear message and exit code 2', async () => {
    const d = await startDistributor(res)
    const proc = spawnNode(res, ['--name', 'bad name!', '--distributor', `127.0.0.1:${d.port}`])
    expect(await proc.exited).toBe(2)
    expect(proc.output()).toMatch(/'name' may hold only/)
  })

  it('jr-node --config applies JobReactor settings in the node process, and names a bad one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jr-config-'))
    res.add(dir, (p) => rm(p, { recursive: true, force: true }))
    const good = join(dir, 'good.json')
    await writeFile(good, JSON.stringify({ maxAttempt: 2, retryMultiplier: 0 }))
    const d = await startDistributor(res)
    await spawnConnectedNode(res, d, 'configured', ['--config', good])
    const err = (await d.enqueue('always_fail', {}).done.catch((e: unknown) => e)) as JobFailedError
    expect(err.args['attempts']).toBe(2)
    const bad = join(dir, 'bad.json')
    await writeFile(bad, JSON.stringify({ maxAttempts: 2 }))
    const proc = spawnNode(res, ['--name', 'misconfigured', '--config', bad, '--distributor', `127.0.0.1:${d.port}`])
    expect(await proc.exited).toBe(2)
    expect(proc.output()).toMatch(/unknown config option 'maxAttempts'/)
  })

  it('handle.done rejections never go unhandled when nobody awaits them', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' }, { maxAttempt: 1 })
    const unhandled = await unhandledRejectionsOf(async () => {
      const failed = d.waitFor('job:failed')
      d.enqueue('always_fail', {}, {}, undefined, () => {})
      await failed
    })
    expect(unhandled).toEqual([])
  })

  it('a node on a store that does not survive the process never writes to it, and loses nothing', async () => {
    const d = await startDistributor(res)
    const writes: string[] = []
    const store = new MemoryStore()
    for (const method of ['saveJobs', 'updateJob', 'finishRun', 'removeJob', 'ackFeedback'] as const) {
      const original = store[method].bind(store) as (...args: unknown[]) => Promise<void>
      ;(store as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
        writes.push(method)
        return original(...args)
      }
    }
    await startNode(res, d, { name: 'volatile', storage: store }, { maxAttempt: 2, retryMultiplier: 0.01 })
    const results = await Promise.allSettled([
      d.enqueue('echo', { n: 1 }).done,
      d.enqueue('echo', { n: 2 }, { after: 0.05 }).done,
      d.enqueue('always_fail', {}).done,
    ])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected'])
    expect(writes).toEqual([])
  })
})
