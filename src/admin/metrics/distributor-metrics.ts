import type { MetricsRegistry } from './prom-client.js'
import type { NameStats } from '../../distributor/job-stats.js'
import { CollectedMetric, registerMetrics, type Sample } from './collected-metric.js'

/** What the distributor's metrics read from a distributor, when scraped. */
export interface DistributorMetricsSource {
  /** The labels that tell members of a group apart: replicas never report the same series. */
  readonly group: string
  readonly member: string
  /** Per job name: counters, and the jobs pending now. */
  jobStats(): Iterable<NameStats>
  /** Per job name, how long the job next in line has waited in the pending queue, in seconds. */
  oldestPendingSeconds(): ReadonlyMap<string, number>
  /** The connected nodes, each with its jobs in flight (counted against its window). */
  nodes(): Iterable<{ readonly name: string; readonly inFlight: number }>
  /** With a spool: whether its writes land; undefined without one. */
  spoolUp(): boolean | undefined
  /** Per limited job name: jobs held back by its limit now, and their keys. */
  limited(): ReadonlyMap<string, { jobs: number; keys: number }>
}

/** The distributors that report through a registry: several may share one (an application's own). */
const sourcesOf = new WeakMap<MetricsRegistry, Set<DistributorMetricsSource>>()
const metricsOf = new WeakMap<MetricsRegistry, readonly CollectedMetric[]>()

/**
 * Reports `source` through `registry`; returns what stops it (the distributor closed). The
 * first distributor of a registry registers the metrics there; each metric lists every
 * distributor's series, told apart by `group` and `member`. Throws InvalidArgumentError,
 * naming `option`, when the registry holds one of these names for a metric of its own.
 */
export function reportDistributor(
  registry: MetricsRegistry,
  source: DistributorMetricsSource,
  option: string,
): () => void {
  let sources = sourcesOf.get(registry)
  if (sources === undefined) {
    sources = new Set()
    sourcesOf.set(registry, sources)
    metricsOf.set(registry, distributorMetrics(sources))
  }
  // Again when the application cleared its registry since.
  registerMetrics(registry, metricsOf.get(registry) ?? [], option)
  sources.add(source)
  const reporting = sources
  return () => void reporting.delete(source)
}

/** The distributor's metrics; names and labels are part of the API (docs/monitoring.md). */
function distributorMetrics(sources: ReadonlySet<DistributorMetricsSource>): CollectedMetric[] {
  const perName = (value: (stats: NameStats) => number) => (): Sample[] => {
    const samples: Sample[] = []
    for (const source of sources) {
      const { group, member } = source
      for (const stats of source.jobStats())
        samples.push({ labels: { group, member, name: stats.name }, value: value(stats) })
    }
    return samples
  }
  const perMember = (value: (source: DistributorMetricsSource) => number | undefined) => (): Sample[] => {
    const samples: Sample[] = []
    for (const source of sources) {
      const v = value(source)
      if (v !== undefined) samples.push({ labels: { group: source.group, member: source.member }, value: v })
    }
    return samples
  }
  return [
    new CollectedMetric(
      'jr_jobs_enqueued_total',
      'Jobs enqueued at this distributor, by job name.',
      'counter',
      perName((s) => s.enqueued),
    ),
    new CollectedMetric(
      'jr_jobs_dispatched_total',
      'Jobs sent to a node, by job name (a job sent again after its node was lost counts again).',
      'counter',
      perName((s) => s.dispatched),
    ),
    new CollectedMetric(
      'jr_jobs_finished_total',
      'Results delivered to the application, by job name and outcome: one per one-shot job, one per run of a periodic job.',
      'counter',
      () => {
        const samples: Sample[] = []
        for (const source of sources) {
          const { group, member } = source
          for (const s of source.jobStats()) {
            const name = s.name
            samples.push({ labels: { group, member, name, outcome: 'success' }, value: s.succeeded })
            samples.push({ labels: { group, member, name, outcome: 'failed' }, value: s.failed })
            samples.push({ labels: { group, member, name, outcome: 'cancelled' }, value: s.cancelled })
          }
        }
        return samples
      },
    ),
    new CollectedMetric(
      'jr_feedback_orphans_total',
      'Results for jobs this distributor does not hold, with no named feedback handler for their job name.',
      'counter',
      perName((s) => s.orphans),
    ),
    new CollectedMetric(
      'jr_jobs_pending',
      'Jobs waiting at the distributor for a node, by job name.',
      'gauge',
      perName((s) => s.pending),
    ),
    new CollectedMetric(
      'jr_jobs_limited',
      'Jobs waiting at the distributor because their limit (concurrency or rate) is reached, by limited job name (included in jr_jobs_pending).',
      'gauge',
      () => {
        const samples: Sample[] = []
        for (const source of sources) {
          const { group, member } = source
          for (const [name, held] of source.limited())
            samples.push({ labels: { group, member, name }, value: held.jobs })
        }
        return samples
      },
    ),
    new CollectedMetric(
      'jr_job_oldest_pending_seconds',
      'How long the job next in line has waited for a node, by job name (0 when none waits).',
      'gauge',
      () => {
        const samples: Sample[] = []
        for (const source of sources) {
          const { group, member } = source
          const oldest = source.oldestPendingSeconds()
          for (const s of source.jobStats()) {
            samples.push({ labels: { group, member, name: s.name }, value: oldest.get(s.name) ?? 0 })
          }
        }
        return samples
      },
    ),
    new CollectedMetric(
      'jr_jobs_in_flight',
      "Jobs sent to a node and not finished there, by node (those that count against the node's window).",
      'gauge',
      () => {
        const samples: Sample[] = []
        for (const source of sources) {
          const { group, member } = source
          for (const node of source.nodes())
            samples.push({ labels: { group, member, node: node.name }, value: node.inFlight })
        }
        return samples
      },
    ),
    new CollectedMetric(
      'jr_nodes_connected',
      'Nodes connected to this distributor.',
      'gauge',
      perMember((source) => {
        let n = 0
        for (const _ of source.nodes()) n++
        return n
      }),
    ),
    new CollectedMetric(
      'jr_spool_up',
      'With a spool: 1 while its writes land in Redis, 0 while they fail (they are retried).',
      'gauge',
      perMember((source) => {
        const up = source.spoolUp()
        return up === undefined ? undefined : up ? 1 : 0
      }),
    ),
  ]
}
