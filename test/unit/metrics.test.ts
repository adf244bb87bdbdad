import { Counter, type OpenMetricsContentType, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { BucketCounts, histogramSamples } from '../../src/admin/metrics/collected-metric.js'
import { reportDistributor, type DistributorMetricsSource } from '../../src/admin/metrics/distributor-metrics.js'
import { reportNode, type NodeMetricsSource } from '../../src/admin/metrics/node-metrics.js'
import { NameStats } from '../../src/distributor/job-stats.js'
import { resolveDistributorOptions } from '../../src/distributor/options.js'
import { ErrorCode, InvalidArgumentError } from '../../src/errors.js'
import { NodeJobStats } from '../../src/node/node-job-stats.js'
import { resolveNodeOptions } from '../../src/node/options.js'
import { parsePromText, sampleValue } from '../helpers/prom-text.js'

/** A distributor as its metrics see it: a few fields, no sockets. */
function fakeDistributor(member: string, spoolUp?: boolean): DistributorMetricsSource & { echo: NameStats } {
  const echo = Object.assign(new NameStats('echo'), { enqueued: 7, dispatched: 6, succeeded: 4, failed: 1 })
  const late = Object.assign(new NameStats('late "one"'), { enqueued: 2, pending: 2, cancelled: 1, orphans: 3 })
  return {
    group: 'web',
    member,
    echo,
    jobStats: () => [echo, late],
    oldestPendingSeconds: () => new Map([['late "one"', 12.5]]),
    nodes: () => [
      { name: 'w1', inFlight: 2 },
      { name: 'w2', inFlight: 0 },
    ],
    spoolUp: () => spoolUp,
    limited: () => new Map([['echo', { jobs: 3, keys: 2 }]]),
  }
}

function fakeNode(name: string): NodeMetricsSource & { stats: NodeJobStats } {
  const stats = new NodeJobStats()
  const noop = stats.of('noop')
  noop.retries = 2
  for (const seconds of [0, 0.002, 0.02, 4000]) noop.wait.observe(seconds)
  noop.run.observe(0.0005)
  stats.of('idle')
  return {
    name,
    stats,
    runningCount: 3,
    scheduledCount: 10,
    queuedCount: 1,
    jobCount: 14,
    feedbackPending: 5,
    distributorCount: 2,
    storeUp: false,
    jobStats: () => stats.values(),
  }
}

describe('BucketCounts', () => {
  it('counts each observation in the first bucket whose bound holds it, and gives cumulative samples', () => {
    const buckets = new BucketCounts([0.1, 1])
    for (const v of [0, 0.1, 0.5, 1, 7]) buckets.observe(v)
    expect([...buckets.counts]).toEqual([2, 2, 1])
    const series = { name: 'x' }
    expect(histogramSamples('h', series, buckets)).toEqual([
      { metricName: 'h_bucket', labels: { le: 0.1 }, sharedLabels: series, value: 2 },
      { metricName: 'h_bucket', labels: { le: 1 }, sharedLabels: series, value: 4 },
      { metricName: 'h_bucket', labels: { le: '+Inf' }, sharedLabels: series, value: 5 },
      { metricName: 'h_sum', labels: {}, sharedLabels: series, value: 8.6 },
      { metricName: 'h_count', labels: {}, sharedLabels: series, value: 5 },
    ])
  })
})

describe('distributor metrics', () => {
  it('read the counters when scraped, labelled by group, member and job name, in the text format', async () => {
    const registry = new Registry()
    const source = fakeDistributor('web-1', true)
    reportDistributor(registry, source, 'metrics.registry')
    let families = parsePromText(await registry.metrics())
    const echo = { group: 'web', member: 'web-1', name: 'echo' }
    expect(sampleValue(families, 'jr_jobs_enqueued_total', echo)).toBe(7)
    expect(sampleValue(families, 'jr_jobs_dispatched_total', echo)).toBe(6)
    expect(sampleValue(families, 'jr_jobs_finished_total', { ...echo, outcome: 'success' })).toBe(4)
    expect(sampleValue(families, 'jr_jobs_finished_total', { ...echo, outcome: 'failed' })).toBe(1)
    expect(sampleValue(families, 'jr_jobs_finished_total', { name: 'late "one"', outcome: 'cancelled' })).toBe(1)
    expect(sampleValue(families, 'jr_feedback_orphans_total', { name: 'late "one"' })).toBe(3)
    expect(sampleValue(families, 'jr_jobs_pending', { name: 'late "one"' })).toBe(2)
    expect(sampleValue(families, 'jr_jobs_limited', { name: 'echo' })).toBe(3)
    expect(sampleValue(families, 'jr_job_oldest_pending_seconds', { name: 'late "one"' })).toBe(12.5)
    expect(sampleValue(families, 'jr_job_oldest_pending_seconds', echo)).toBe(0)
    expect(sampleValue(families, 'jr_jobs_in_flight', { node: 'w1' })).toBe(2)
    expect(sampleValue(families, 'jr_nodes_connected', { member: 'web-1' })).toBe(2)
    expect(sampleValue(families, 'jr_spool_up', { member: 'web-1' })).toBe(1)
    // Read at scrape time: a later increment shows in the next scrape.
    source.echo.enqueued++
    families = parsePromText(await registry.metrics())
    expect(sampleValue(families, 'jr_jobs_enqueued_total', echo)).toBe(8)
    expect(families.get('jr_jobs_enqueued_total')?.type).toBe('counter')
    expect(families.get('jr_jobs_pending')?.type).toBe('gauge')
  })

  it('report several distributors through one registry, each its own series, until each stops', async () => {
    const registry = new Registry()
    const stopFirst = reportDistributor(registry, fakeDistributor('web-1'), 'metrics.registry')
    reportDistributor(registry, fakeDistributor('web-2'), 'metrics.registry')
    let families = parsePromText(await registry.metrics())
    expect(sampleValue(families, 'jr_jobs_enqueued_total', { member: 'web-1', name: 'echo' })).toBe(7)
    expect(sampleValue(families, 'jr_jobs_enqueued_total', { member: 'web-2', name: 'echo' })).toBe(7)
    // Without a spool a member reports no jr_spool_up.
    expect(families.get('jr_spool_up')?.samples).toEqual([])
    stopFirst()
    families = parsePromText(await registry.metrics())
    expect(() => sampleValue(families, 'jr_jobs_enqueued_total', { member: 'web-1', name: 'echo' })).toThrow(
      /0 samples/,
    )
  })

  it('keep Prometheus names in an OpenMetrics registry, whose counters get _total back', async () => {
    const registry = new Registry<OpenMetricsContentType>()
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE)
    reportDistributor(registry, fakeDistributor('web-1'), 'metrics.registry')
    const text = await registry.metrics()
    expect(text).toContain('\njr_jobs_enqueued_total{group="web",member="web-1",name="echo"} 7\n')
    expect(text.endsWith('# EOF\n')).toBe(true)
  })

  it('refuse a registry that holds one of their names for a metric of its own, naming the option', () => {
    const registry = new Registry()
    new Counter({ name: 'jr_jobs_pending', help: 'not ours', registers: [registry] })
    expect(() => reportDistributor(registry, fakeDistributor('web-1'), 'metrics.registry')).toThrow(
      /'metrics.registry' holds a metric named 'jr_jobs_pending'/,
    )
  })
})

describe('node metrics', () => {
  it('read the node when scraped, labelled by node (and job name), histograms included', async () => {
    const registry = new Registry()
    reportNode(registry, fakeNode('w1'), 'metrics')
    const families = parsePromText(await registry.metrics())
    const node = { node: 'w1' }
    expect(sampleValue(families, 'jr_node_chains_running', node)).toBe(3)
    expect(sampleValue(families, 'jr_node_jobs_scheduled', node)).toBe(10)
    expect(sampleValue(families, 'jr_node_jobs_queued', node)).toBe(1)
    expect(sampleValue(families, 'jr_node_jobs_held', node)).toBe(14)
    expect(sampleValue(families, 'jr_node_feedback_unacked', node)).toBe(5)
    expect(sampleValue(families, 'jr_node_store_up', node)).toBe(0)
    expect(sampleValue(families, 'jr_node_distributors_connected', node)).toBe(2)
    expect(sampleValue(families, 'jr_job_retries_total', { node: 'w1', name: 'noop' })).toBe(2)
    expect(sampleValue(families, 'jr_job_retries_total', { node: 'w1', name: 'idle' })).toBe(0)
    const noop = { node: 'w1', name: 'noop' }
    expect(sampleValue(families, 'jr_job_wait_seconds_count', noop)).toBe(4)
    expect(sampleValue(families, 'jr_job_wait_seconds_bucket', { ...noop, le: '0.001' })).toBe(1)
    expect(sampleValue(families, 'jr_job_wait_seconds_bucket', { ...noop, le: '3600' })).toBe(3)
    expect(sampleValue(families, 'jr_job_wait_seconds_bucket', { ...noop, le: '+Inf' })).toBe(4)
    expect(sampleValue(families, 'jr_job_run_seconds_sum', noop)).toBe(0.0005)
    expect(sampleValue(families, 'jr_job_run_seconds_count', { node: 'w1', name: 'idle' })).toBe(0)
    expect(families.get('jr_job_run_seconds')?.type).toBe('histogram')
    // Readers of the metric objects (JSON) get every label on every sample.
    const json = await registry.getMetricsAsJSON()
    const run = json.find((m) => m.name === 'jr_job_run_seconds')
    expect(run?.values).toContainEqual({
      metricName: 'jr_job_run_seconds_bucket',
      labels: { node: 'w1', name: 'noop', le: 0.001 },
      value: 1,
    })
    expect(run?.values).toContainEqual({ metricName: 'jr_job_run_seconds_count', labels: noop, value: 1 })
  })
})

describe('metrics options', () => {
  const refused = (fn: () => unknown, pattern: RegExp): void => {
    let thrown: unknown
    try {
      fn()
    } catch (err) {
      thrown = err
    }
    expect(thrown).toBeInstanceOf(InvalidArgumentError)
    expect((thrown as InvalidArgumentError).code).toBe(ErrorCode.INVALID_ARG)
    expect((thrown as Error).message).toMatch(pattern)
  }
  const distributor = (metrics: unknown) => () =>
    resolveDistributorOptions({ metrics }, { alwaysUseSpecifiedNode: false })
  const node = (options: Record<string, unknown>) => () => resolveNodeOptions({ name: 'w1', ...options })

  it('take an application registry, or nothing', () => {
    const registry = new Registry()
    expect(distributor({ registry })().metricsRegistry).toBe(registry)
    expect(distributor({})().metricsRegistry).toBeUndefined()
    expect(node({})().metricsRegistry).toBeUndefined()
    expect(node({ metrics: { registry } })().metricsRegistry).toBe(registry)
    expect(node({ metricsPort: 0 })()).toMatchObject({ metricsPort: 0, metricsHost: '127.0.0.1' })
    expect(node({ metricsPort: 9464, metricsHost: '0.0.0.0' })()).toMatchObject({ metricsHost: '0.0.0.0' })
    expect(node({})().metricsPort).toBeUndefined()
  })

  it('refuse bad values, naming the option', () => {
    refused(distributor(true), /metrics options must be an object, got true/)
    refused(distributor({ registry: {} }), /'metrics.registry' must be a prom-client Registry, got an object/)
    refused(distributor({ registry: 'default' }), /'metrics.registry' must be a prom-client Registry, got "default"/)
    refused(distributor({ prefix: 'x_' }), /unknown metrics option 'prefix'/)
    refused(node({ metrics: [] }), /metrics options must be an object, got an array/)
    refused(node({ metricsPort: 70000 }), /'metricsPort' must be an integer in 0\.\.65535, got 70000/)
    refused(node({ metricsPort: '9464' }), /'metricsPort' must be an integer/)
    refused(node({ metricsHost: '0.0.0.0' }), /'metricsHost' .* give 'metricsPort' too/)
    refused(node({ metricsPort: 0, metricsHost: '' }), /'metricsHost' must be a non-empty string/)
  })
})
