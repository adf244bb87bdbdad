import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { allAccepted, Resources, spawnConnectedNode, startDistributor } from '../helpers/cluster.js'
import { startRedisCluster, type RedisCluster } from '../helpers/redis-server.js'

const res = new Resources()
afterEach(() => res.releaseAll())

let cluster: RedisCluster
beforeAll(async () => {
  cluster = await startRedisCluster(3)
})
afterAll(() => cluster.stop())

describe('durable nodes on a 3-master Redis Cluster', () => {
  it('a node killed with SIGKILL and restarted with the same name resumes every job at its original due time', async () => {
    const d = await startDistributor(res, { heartbeatMs: 200 })
    const flags = ['--storage', cluster.url]
    // Several node names: their hash tags spread over the masters.
    const names = ['cl-a', 'cl-b', 'cl-c'].map((n) => `${n}-${process.pid}-${Date.now()}`)
    const procs = []
    for (const name of names) procs.push(await spawnConnectedNode(res, d, name, flags))
    const dueAt = Date.now() + 1200
    const handles = Array.from({ length: 600 }, (_, i) => d.enqueue('stamp', { i }, { runAt: dueAt }))
    await allAccepted(d, handles)
    for (const p of procs) p.child.kill('SIGKILL')
    for (const p of procs) expect(await p.exited).toBeNull()
    for (const name of names) await spawnConnectedNode(res, d, name, flags)
    const results = await Promise.all(handles.map((h) => h.done))
    expect(new Set(results.map((a) => a['i'])).size).toBe(600)
    expect(results.every((a) => a['dueAt'] === dueAt)).toBe(true)
  })
})
