import { createServer, type Server } from 'node:http'
import { Gauge, Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import { Distributor } from '../../src/distributor/distributor.js'
import { pack } from '../../src/protocol/msgpack.js'
import {
  allAccepted,
  Resources,
  spawnConnectedNode,
  spawnNode,
  startDistributor,
  startNode,
} from '../helpers/cluster.js'
import { serve } from '../helpers/http-server.js'
import { connectPeer } from '../helpers/peers.js'
import { parsePromText, sampleValue, type PromFamily } from '../helpers/prom-text.js'
import { freePort, startRedisServer } from '../helpers/redis-server.js'

const res = new Resources()
afterEach(() => res.releaseAll())

/** GETs `url` and parses the body strictly as the Prometheus text format. */
async function scrape(url: string): Promise<Map<string, PromFamily>> {
  const response = await fetch(url)
  expect(response.status).toBe(200)
  expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8')
  return parsePromText(await response.text())
}

/** A method the handler must refuse: 405, an Allow header, and a JSON error. */
async function expectRefused(url: string, method: string): Promise<void> {
  const response = await fetch(url, { method })
  expect(response.status).toBe(405)
  expect(response.headers.get('allow')).toBe('GET, HEAD')
  expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8')
  const body = (await response.json()) as { error: { code: string; message: string } }
  expect(body.error.code).toBe('ERR_METHOD_NOT_ALLOWED')
  expect(body.error.message).toContain(method)
}

/** The port a jr-node child serves its metrics on, from its `metrics listening` log line. */
function metricsPortOf(output: string): number {
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue
    const entry = JSON.parse(line) as { msg?: string; port?: number }
    if (entry.msg === 'metrics listening' && entry.port !== undefined) return entry.port
  }
  throw new Error(`no 'metrics listening' line in:\n${output}`)
}

describe('metrics', () => {
  it('after a known workload the distributor and a jr-node child report its counts, in the text format', async () => {
    const d = await startDistributor(res, { group: 'web', name: 'web-1' })
    const node = await spawnConnectedNode(res, d, 'm1', ['--metrics-port', '0', '--log-level', 'info'])
    await node.waitForOutput(/"msg":"metrics listening"/)
    const nodeUrl = `http://127.0.0.1:${metricsPortOf(node.output())}/metrics`

    // N successes, F jobs that succeed on their second attempt, M that fail all 3 attempts.
    const N = 6
    const F = 2
    const M = 3
    const noop = Array.from({ length: N }, () => d.enqueue('noop'))
    const flaky = Array.from({ length: F }, () => d.enqueue('flaky', {}, { retryMultiplier: 0 }))
    const failing = Array.from({ length: M }, () => d.enqueue('always_fail', {}, { maxAttempt: 3, retryMultiplier: 0 }))
    await Promise.all([...noop, ...flaky].map((h) => h.done))
    await Promise.all(failing.map((h) => h.done.catch(() => undefined)))
    // One delayed job cancelled on the node, one that no node runs.
    const delayed = d.enqueue('stamp', {}, { after: 3600 })
    await allAccepted(d, [delayed])
    expect(await delayed.cancel()).toBe(true)
    d.enqueue('nobody_runs_this')

    const url = `${await serve(res, d.metricsHandler())}metrics`
    const dist = await scrape(url)
    const member = { group: 'web', member: 'web-1' }
    const of = (name: string, labels: Record<string, string> = {}) => ({ ...member, name, ...labels })
    expect(sampleValue(dist, 'jr_jobs_enqueued_total', of('noop'))).toBe(N)
    expect(sampleValue(dist, 'jr_jobs_enqueued_total', of('flaky'))).toBe(F)
    expect(sampleValue(dist, 'jr_jobs_enqueued_total', of('always_fail'))).toBe(M)
    expect(sampleValue(dist, 'jr_jobs_enqueued_total', of('nobody_runs_this'))).toBe(1)
    // Retries happen on the node: each job was dispatched once.
    expect(sampleValue(dist, 'jr_jobs_dispatched_total', of('always_fail'))).toBe(M)
    expect(sampleValue(dist, 'jr_jobs_dispatched_total', of('nobody_runs_this'))).toBe(0)
    expect(sampleValue(dist, 'jr_jobs_finished_total', of('noop', { outcome: 'success' }))).toBe(N)
    expect(sampleValue(dist, 'jr_jobs_finished_total', of('flaky', { outcome: 'success' }))).toBe(F)
    expect(sampleValue(dist, 'jr_jobs_finished_total', of('flaky', { outcome: 'failed' }))).toBe(0)
    expect(sampleValue(dist, 'jr_jobs_finished_total', of('always_fail', { outcome: 'failed' }))).toBe(M)
    expect(sampleValue(dist, 'jr_jobs_finished_total', of('stamp', { outcome: 'cancelled' }))).toBe(1)
    expect(sampleValue(dist, 'jr_jobs_finished_total', of('stamp', { outcome: 'success' }))).toBe(0)
    expect(sampleValue(dist, 'jr_feedback_orphans_total', of('noop'))).toBe(0)
    expect(sampleValue(dist, 'jr_jobs_pending', of('nobody_runs_this'))).toBe(1)
    expect(sampleValue(dist, 'jr_jobs_pending', of('noop'))).toBe(0)
    expect(sampleValue(dist, 'jr_job_oldest_pending_seconds', of('nobody_runs_this'))).toBeGreaterThanOrEqual(0)
    expect(sampleValue(dist, 'jr_job_oldest_pending_seconds', of('noop'))).toBe(0)
    expect(sampleValue(dist, 'jr_jobs_in_flight', { ...member, node: 'm1' })).toBe(0)
    expect(sampleValue(dist, 'jr_nodes_connected', member)).toBe(1)

    const own = await scrape(nodeUrl)
    const on = (name: string) => ({ node: 'm1', name })
    expect(sampleValue(own, 'jr_job_retries_total', on('noop'))).toBe(0)
    expect(sampleValue(own, 'jr_job_retries_total', on('flaky'))).toBe(F)
    expect(sampleValue(own, 'jr_job_retries_total', on('always_fail'))).toBe(2 * M)
    // One wait and one run per attempt; the cancelled job never started.
    for (const [name, attempts] of [
      ['noop', N],
      ['flaky', 2 * F],
      ['always_fail', 3 * M],
      ['stamp', 0],
    ] as const) {
      expect(sampleValue(own, 'jr_job_wait_seconds_count', on(name))).toBe(attempts)
      expect(sampleValue(own, 'jr_job_run_seconds_count', on(name))).toBe(attempts)
      expect(sampleValue(own, 'jr_job_run_seconds_bucket', { ...on(name), le: '+Inf' })).toBe(attempts)
    }
    expect(sampleValue(own, 'jr_job_wait_seconds_sum', on('noop'))).toBeGreaterThanOrEqual(0)
    expect(sampleValue(own, 'jr_node_chains_running', { node: 'm1' })).toBe(0)
    expect(sampleValue(own, 'jr_node_store_up', { node: 'm1' })).toBe(1)
    expect(sampleValue(own, 'jr_node_distributors_connected', { node: 'm1' })).toBe(1)
    for (const name of [
      'jr_node_jobs_scheduled',
      'jr_node_jobs_queued',
      'jr_node_jobs_held',
      'jr_node_feedback_unacked',
    ]) {
      expect(own.get(name)?.type).toBe('gauge')
    }
    // prom-client's default metrics of the jr-node process, event-loop delay among them.
    expect(sampleValue(own, 'nodejs_eventloop_lag_p99_seconds', { node: 'm1' })).toBeGreaterThanOrEqual(0)
    expect(own.get('process_cpu_seconds_total')?.type).toBe('counter')
  })

  it('serve GET and HEAD only: another method gets a 405 with a JSON error, on both ends', async () => {
    const d = await startDistributor(res)
    const node = await spawnConnectedNode(res, d, 'm2', ['--metrics-port', '0', '--log-level', 'info'])
    await node.waitForOutput(/"msg":"metrics listening"/)
    const nodeUrl = `http://127.0.0.1:${metricsPortOf(node.output())}/metrics`
    const url = `${await serve(res, d.metricsHandler())}metrics`
    for (const target of [url, nodeUrl]) {
      await expectRefused(target, 'POST')
      await expectRefused(target, 'DELETE')
      const head = await fetch(target, { method: 'HEAD' })
      expect(head.status).toBe(200)
      expect(Number(head.headers.get('content-length'))).toBeGreaterThan(0)
      expect(await head.text()).toBe('')
    }
    const elsewhere = await fetch(nodeUrl.replace('/metrics', '/status'))
    expect(elsewhere.status).toBe(404)
    expect(await elsewhere.json()).toEqual({
      error: { code: 'ERR_NOT_FOUND', message: 'no such path "/status": metrics are at /metrics' },
    })
    // The query string does not matter.
    expect((await fetch(`${nodeUrl}?x=1`)).status).toBe(200)
  })

  it('jr-node fails to start, exit status 2, when its metrics port is taken', async () => {
    const d = await startDistributor(res)
    const port = await freePort()
    const holder = createServer()
    await new Promise<void>((resolve) => holder.listen(port, '127.0.0.1', resolve))
    res.add(holder, (s: Server) => new Promise((resolve) => s.close(resolve)))
    const node = spawnNode(res, [
      '--name',
      'm3',
      '--distributor',
      `127.0.0.1:${d.port}`,
      '--metrics-port',
      String(port),
    ])
    expect(await node.exited).toBe(2)
    expect(node.output()).toContain('EADDRINUSE')
  })

  it('count jobs in flight per node and chains running while they run', async () => {
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: 'busy', concurrency: 5 })
    const started = new Promise<void>((resolve) => {
      let n = 0
      node.on('job:start', () => {
        if (++n === 3) resolve()
      })
    })
    for (let i = 0; i < 3; i++) d.enqueue('hang')
    await started
    const dist = parsePromText(await d.metrics.metrics())
    expect(sampleValue(dist, 'jr_jobs_in_flight', { node: 'busy' })).toBe(3)
    expect(sampleValue(dist, 'jr_jobs_dispatched_total', { name: 'hang' })).toBe(3)
    const own = parsePromText(await node.metrics.metrics())
    expect(sampleValue(own, 'jr_node_chains_running', { node: 'busy' })).toBe(3)
    expect(sampleValue(own, 'jr_node_jobs_held', { node: 'busy' })).toBe(3)
    expect(sampleValue(own, 'jr_job_wait_seconds_count', { name: 'hang' })).toBe(3)
    // Still running: no run time yet.
    expect(sampleValue(own, 'jr_job_run_seconds_count', { name: 'hang' })).toBe(0)
  })

  it('count a result nobody holds as an orphan of its job name', async () => {
    const d = await startDistributor(res)
    const fake = await connectPeer(res, d)
    await fake.handshake({ node: 'fake', jobs: ['ghost'], window: 10, concurrency: 10 })
    const item = { name: 'ghost', run: 1, kind: 'success', final: true, cancelled: false, args: pack({}) } as const
    fake.send({ type: 'feedback', seq: 1, items: [{ id: 'never-enqueued-1', ...item }] })
    fake.send({ type: 'feedback', seq: 2, items: [{ id: 'never-enqueued-2', ...item, kind: 'error' }] })
    await fake.nextOfType('feedback-ack')
    await fake.nextOfType('feedback-ack')
    const families = parsePromText(await d.metrics.metrics())
    expect(sampleValue(families, 'jr_feedback_orphans_total', { name: 'ghost' })).toBe(2)
    expect(sampleValue(families, 'jr_jobs_finished_total', { name: 'ghost', outcome: 'success' })).toBe(0)
  })

  it('report through an application registry shared by a distributor and a node, until each closes', async () => {
    const registry = new Registry()
    const d = await startDistributor(res, { metrics: { registry } })
    expect(d.metrics).toBe(registry)
    const node = await startNode(res, d, { name: 'shared', metrics: { registry } })
    expect(node.metrics).toBe(registry)
    await d.enqueue('echo').done
    let families = parsePromText(await registry.metrics())
    expect(sampleValue(families, 'jr_jobs_finished_total', { name: 'echo', outcome: 'success' })).toBe(1)
    expect(sampleValue(families, 'jr_job_run_seconds_count', { node: 'shared', name: 'echo' })).toBe(1)
    // The application's registry gets no default metrics from us.
    expect(families.has('process_cpu_seconds_total')).toBe(false)
    await node.close()
    await d.close()
    families = parsePromText(await registry.metrics())
    expect(families.get('jr_jobs_finished_total')?.samples).toEqual([])
    expect(families.get('jr_job_run_seconds')?.samples).toEqual([])
  })

  it('refuse an application registry that already holds one of the names', () => {
    // Another distributor's metrics are no conflict: they share the registry.
    const shared = new Registry()
    new Distributor({ port: 0, metrics: { registry: shared } })
    expect(() => new Distributor({ port: 0, metrics: { registry: shared } })).not.toThrow()
    const taken = new Registry()
    new Gauge({ name: 'jr_nodes_connected', help: 'an application metric', registers: [taken] })
    expect(() => new Distributor({ port: 0, metrics: { registry: taken } })).toThrow(
      /'metrics.registry' holds a metric named 'jr_nodes_connected'/,
    )
  })

  it('answer 500 with a JSON error when a collector of the application throws', async () => {
    const registry = new Registry()
    new Gauge({
      name: 'app_broken',
      help: 'an application metric whose collect throws',
      registers: [registry],
      collect() {
        throw new Error('the application collector failed')
      },
    })
    const d = await startDistributor(res, { metrics: { registry } })
    const response = await fetch(`${await serve(res, d.metricsHandler())}metrics`)
    expect(response.status).toBe(500)
    expect(await response.json()).toEqual({
      error: { code: 'ERR_METRICS', message: 'cannot collect the metrics: the application collector failed' },
    })
  })

  it('report the spool up with a Redis spool', async () => {
    const redis = await startRedisServer()
    res.add(redis, (r) => r.stop())
    const d = await startDistributor(res, { storage: redis.url, group: 'spooled', name: 'web-1' })
    const families = parsePromText(await d.metrics.metrics())
    expect(sampleValue(families, 'jr_spool_up', { group: 'spooled', member: 'web-1' })).toBe(1)
  })
})
