import type { RequestHandler } from '../admin/http.js'
import { metricsHandler } from '../admin/metrics/metrics-handler.js'
import type { MetricsServer } from '../admin/metrics/metrics-server.js'
import { reportNode, type NodeMetricsSource } from '../admin/metrics/node-metrics.js'
import { promClient, type MetricsRegistry } from '../admin/metrics/prom-client.js'
import type { Logger } from '../logger.js'
import type { NodeNameStats } from './node-job-stats.js'

/** What the metrics read of the node's parts, when scraped: each as it is at that moment. */
export interface NodeMetricsParts {
  readonly name: string
  readonly runner: { readonly runningCount: number; readonly queuedCount: number }
  readonly scheduler: { readonly size: number }
  readonly live: { readonly size: number }
  readonly outbox: { readonly size: number }
  readonly links: { links(): Iterable<{ readonly ready: boolean }> }
  readonly jobStats: { values(): Iterable<NodeNameStats> }
  storeUp(): boolean
}

/** What the metrics wiring reads of the node's options. */
export interface NodeMetricsOptions {
  readonly metricsRegistry: MetricsRegistry | undefined
  readonly metricsPort: number | undefined
  readonly metricsHost: string
}

/**
 * A node's metrics (docs/monitoring.md): the registry they report through (the
 * application's, or one made on first read), the `(req, res)` handler, and with
 * `metricsPort` the HTTP endpoint serving them.
 *
 * Lifecycle: constructed (reporting through the application's registry, if given) →
 * serve() (with `metricsPort`) → close() (the endpoint closed, the reporting stopped).
 */
export class NodeMetricsWiring {
  private readonly source: NodeMetricsSource
  /** The registry the metrics report through: the application's, or one made on first read. */
  private reportedTo: MetricsRegistry | undefined
  /** Stops reporting through the application's registry (at close). */
  private readonly unreport: (() => void) | undefined
  /** With `metricsPort`: the HTTP endpoint serving the metrics. */
  private server: MetricsServer | undefined

  constructor(
    parts: NodeMetricsParts,
    private readonly options: NodeMetricsOptions,
    private readonly log: Logger,
  ) {
    this.source = metricsSource(parts)
    const registry = options.metricsRegistry
    if (registry !== undefined) {
      this.reportedTo = registry
      this.unreport = reportNode(registry, this.source, 'metrics.registry')
    }
  }

  /**
   * The one given as `metrics.registry`, or one of the node's own, made (and prom-client
   * loaded) on first read, which also holds prom-client's default metrics of the process,
   * labelled `node`.
   */
  get registry(): MetricsRegistry {
    if (this.reportedTo === undefined) {
      const { Registry, collectDefaultMetrics } = promClient()
      const registry = new Registry()
      reportNode(registry, this.source, 'metrics')
      collectDefaultMetrics({ register: registry, labels: { node: this.source.name } })
      this.reportedTo = registry
    }
    return this.reportedTo
  }

  handler(): RequestHandler {
    return metricsHandler(this.registry)
  }

  /** With `metricsPort`: the port the metrics are served on (the real one for port 0), once serving. */
  get port(): number | undefined {
    return this.server?.port
  }

  /** With `metricsPort`: listens; rejects when it cannot (the port is taken, say). */
  async serve(): Promise<void> {
    const { metricsPort, metricsHost } = this.options
    if (metricsPort === undefined) return
    // Loaded here: node:http is a few milliseconds of import time that a node without it skips.
    const { MetricsServer } = await import('../admin/metrics/metrics-server.js')
    const server = new MetricsServer(this.handler())
    await server.start(metricsHost, metricsPort)
    this.server = server
    this.log.info({ host: metricsHost, port: server.port }, 'metrics listening')
  }

  /** The endpoint closes; the registry still reports (a start that failed after serve()). */
  async stopServing(): Promise<void> {
    await this.server?.close()
  }

  async close(): Promise<void> {
    await this.stopServing()
    this.unreport?.()
  }
}

/** What the metrics read, when scraped: counters kept where jobs move, and the tables as they are. */
function metricsSource(parts: NodeMetricsParts): NodeMetricsSource {
  return {
    name: parts.name,
    get runningCount() {
      return parts.runner.runningCount
    },
    get scheduledCount() {
      return parts.scheduler.size
    },
    get queuedCount() {
      return parts.runner.queuedCount
    },
    get jobCount() {
      return parts.live.size
    },
    get feedbackPending() {
      return parts.outbox.size
    },
    get distributorCount() {
      let n = 0
      for (const link of parts.links.links()) if (link.ready) n++
      return n
    },
    get storeUp() {
      return parts.storeUp()
    },
    jobStats: () => parts.jobStats.values(),
  }
}
