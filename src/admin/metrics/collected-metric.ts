import type { MetricsRegistry } from './prom-client.js'
import type { Metric } from 'prom-client'
import { InvalidArgumentError } from '../../errors.js'

export type MetricType = 'counter' | 'gauge' | 'histogram'

export type Labels = Record<string, string | number>

/**
 * One sample: a value with its labels (`metricName` for a histogram's `_bucket`, `_sum`,
 * `_count`). `sharedLabels`, the labels of a whole histogram series, are written once per
 * series in the text format (prom-client caches their text per object), as prom-client's own
 * histograms do; `get()` merges them into `labels`.
 */
export interface Sample {
  value: number
  labels: Labels
  metricName?: string
  sharedLabels?: Labels
}

interface MetricObject {
  name: string
  help: string
  type: MetricType
  aggregator: 'sum'
  values: Sample[]
}

/** `sample` with its shared labels merged into its labels, for readers other than the text format. */
function splay(sample: Sample): Sample {
  const { sharedLabels, ...rest } = sample
  return sharedLabels === undefined ? sample : { ...rest, labels: { ...sharedLabels, ...sample.labels } }
}

/**
 * A metric whose samples are read, when the registry is scraped, from the plain counters
 * the code keeps where jobs move. prom-client's MetricsRegistry reads every metric through `get()`
 * (its MetricObject: name, help, type, aggregator, values), so a job costs an increment of
 * a field, never a labelled call with its label lookup; and a histogram's buckets, counted
 * by `BucketCounts`, are given as they are (prom-client's Histogram can only be observed).
 */
export class CollectedMetric {
  readonly aggregator = 'sum'

  constructor(
    /** Not readonly: a registry of the OpenMetrics type renames counters (drops `_total`). */
    public name: string,
    readonly help: string,
    readonly type: MetricType,
    private readonly collect: () => Sample[],
  ) {}

  /** What `registry.getMetricsAsJSON()` (and any reader of the MetricObject) sees: every label on every sample. */
  get(): MetricObject {
    return this.object(this.collect().map(splay))
  }

  /** What the registry writes as text: a histogram series' labels shared by its lines. */
  getForPromString(): MetricObject {
    return this.object(this.collect())
  }

  private object(values: Sample[]): MetricObject {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  /** `registry.resetMetrics()`: the counts belong to the code that keeps them, and stay. */
  reset(): void {}
}

/**
 * Registers `metrics` in `registry`, unless it holds them already. A name the registry
 * holds for another metric is refused, naming the option.
 */
export function registerMetrics(registry: MetricsRegistry, metrics: readonly CollectedMetric[], option: string): void {
  for (const metric of metrics) {
    const held = registry.getSingleMetric(metric.name)
    if (held === (metric as unknown)) continue
    if (held !== undefined) {
      throw new InvalidArgumentError(
        `'${option}' holds a metric named '${metric.name}' already; job-reactor's metric names are its own`,
      )
    }
    registry.registerMetric(metric as unknown as Metric)
  }
}

/**
 * Observations counted per bucket, for a histogram read at scrape time: an observation is
 * a short scan of the bounds and two additions, no allocation.
 */
export class BucketCounts {
  /** Per bucket, not cumulative; the last one is +Inf. */
  readonly counts: Float64Array
  sum = 0
  count = 0

  /** @param bounds upper bounds (inclusive), ascending. */
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1)
  }

  observe(value: number): void {
    const bounds = this.bounds
    let i = 0
    while (i < bounds.length && value > (bounds[i] as number)) i++
    this.counts[i] = (this.counts[i] as number) + 1
    this.sum += value
    this.count++
  }
}

const NO_LABELS: Labels = Object.freeze({})

/**
 * A histogram's samples as the text format wants them: cumulative `_bucket`s with `le`,
 * `_sum`, `_count`, every one sharing the series' `labels` (one object, formatted once).
 */
export function histogramSamples(name: string, labels: Labels, buckets: BucketCounts): Sample[] {
  const samples: Sample[] = []
  const bucket = `${name}_bucket`
  let cumulative = 0
  for (let i = 0; i < buckets.counts.length; i++) {
    cumulative += buckets.counts[i] as number
    const le = i < buckets.bounds.length ? (buckets.bounds[i] as number) : '+Inf'
    samples.push({ metricName: bucket, labels: { le }, sharedLabels: labels, value: cumulative })
  }
  samples.push({ metricName: `${name}_sum`, labels: NO_LABELS, sharedLabels: labels, value: buckets.sum })
  samples.push({ metricName: `${name}_count`, labels: NO_LABELS, sharedLabels: labels, value: buckets.count })
  return samples
}
