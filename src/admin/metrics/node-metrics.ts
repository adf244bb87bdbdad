import type { MetricsRegistry } from './prom-client.js'
import type { NodeNameStats } from '../../node/node-job-stats.js'
import { CollectedMetric, histogramSamples, registerMetrics, type Sample } from './collected-metric.js'

/** What the node's metrics read from a node, when scraped. */
export interface NodeMetricsSource {
  /** The node's name: its `node` label. */
  readonly name: string
  /** Chains running now. */
  readonly runningCount: number
  /** Entries on the node's timer queue: jobs waiting for their due time, and its own few timers. */
  readonly scheduledCount: number
  /** Jobs due and waiting for a free slot. */
  readonly queuedCount: number
  /** Jobs held: saving, scheduled, queued or running. */
  readonly jobCount: number
  /** Results not yet acknowledged by their distributor. */
  readonly feedbackPending: number
  /** Distributors connected now. */
  readonly distributorCount: number
  /** The store takes writes (false from `store:down` until `store:up`). */
  readonly storeUp: boolean
  /** Per job name: retries and the wait and run histograms. */
  jobStats(): Iterable<NodeNameStats>
}

const sourcesOf = new WeakMap<MetricsRegistry, Set<NodeMetricsSource>>()
const metricsOf = new WeakMap<MetricsRegistry, readonly CollectedMetric[]>()

/**
 * Reports `source` through `registry`; returns what stops it (the node closed). As for
 * distributors, nodes may share a registry: their series are told apart by `node`. Throws
 * InvalidArgumentError, naming `option`, when the registry holds one of these names for a
 * metric of its own.
 */
export function reportNode(registry: MetricsRegistry, source: NodeMetricsSource, option: string): () => void {
  let sources = sourcesOf.get(registry)
  if (sources === undefined) {
    sources = new Set()
    sourcesOf.set(registry, sources)
    metricsOf.set(registry, nodeMetrics(sources))
  }
  registerMetrics(registry, metricsOf.get(registry) ?? [], option)
  sources.add(source)
  const reporting = sources
  return () => void reporting.delete(source)
}

/** The node's metrics; names and labels are part of the API (docs/monitoring.md). */
function nodeMetrics(sources: ReadonlySet<NodeMetricsSource>): CollectedMetric[] {
  const gauge = (name: string, help: string, value: (source: NodeMetricsSource) => number): CollectedMetric =>
    new CollectedMetric(name, help, 'gauge', () => {
      const samples: Sample[] = []
      for (const source of sources) samples.push({ labels: { node: source.name }, value: value(source) })
      return samples
    })
  const histogram = (name: string, help: string, pick: 'wait' | 'run'): CollectedMetric =>
    new CollectedMetric(name, help, 'histogram', () => {
      const samples: Sample[] = []
      for (const source of sources) {
        for (const stats of source.jobStats()) {
          samples.push(...histogramSamples(name, { node: source.name, name: stats.name }, stats[pick]))
        }
      }
      return samples
    })
  return [
    gauge('jr_node_chains_running', 'Chains running on this node now.', (s) => s.runningCount),
    gauge(
      'jr_node_jobs_scheduled',
      "Entries on the node's timer queue: jobs waiting for their due time (delayed, periodic, retry backoff), plus a few timers of its own.",
      (s) => s.scheduledCount,
    ),
    gauge('jr_node_jobs_queued', 'Jobs due and waiting for a free slot (concurrency).', (s) => s.queuedCount),
    gauge('jr_node_jobs_held', 'Jobs this node holds: saving, scheduled, queued or running.', (s) => s.jobCount),
    gauge(
      'jr_node_feedback_unacked',
      'Results waiting in the outbox for their distributor to acknowledge them.',
      (s) => s.feedbackPending,
    ),
    gauge('jr_node_store_up', "1 while the node's store takes writes, 0 while it is down.", (s) => (s.storeUp ? 1 : 0)),
    gauge('jr_node_distributors_connected', 'Distributors this node is connected to.', (s) => s.distributorCount),
    new CollectedMetric(
      'jr_job_retries_total',
      'Failed attempts followed by another attempt, by job name.',
      'counter',
      () => {
        const samples: Sample[] = []
        for (const source of sources) {
          for (const stats of source.jobStats()) {
            samples.push({ labels: { node: source.name, name: stats.name }, value: stats.retries })
          }
        }
        return samples
      },
    ),
    histogram(
      'jr_job_wait_seconds',
      'Per attempt, from its due time (the enqueue, for an instant job) to its start on this node, by job name.',
      'wait',
    ),
    histogram(
      'jr_job_run_seconds',
      'Per attempt, from its start to the end of its chain on this node, by job name.',
      'run',
    ),
  ]
}
