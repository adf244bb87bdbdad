import { createRequire } from 'node:module'
import type { Registry, RegistryContentType } from 'prom-client'
import { checkKnownKeys, checkPlainOptions, describe } from '../../config.js'
import { InvalidArgumentError } from '../../errors.js'

/** A prom-client registry of either content type (the Prometheus text format, or OpenMetrics). */
export type MetricsRegistry = Registry<RegistryContentType>

/** The `metrics` option of a distributor or a node. */
export interface MetricsOptions {
  /**
   * Register the metrics in this prom-client `Registry` (the application's own) instead of
   * one made for them. @default a registry of their own, made on first read of `.metrics`
   */
  registry?: MetricsRegistry
}

type PromClient = typeof import('prom-client')

let loaded: PromClient | undefined

/**
 * prom-client, loaded on first use: importing it costs about a fifth of this package's own
 * import time (docs/performance.md), which an application that never reads its metrics
 * does not pay. Metrics given a registry of the application's need no prom-client of ours.
 */
export function promClient(): PromClient {
  loaded ??= createRequire(import.meta.url)('prom-client') as PromClient
  return loaded
}

/**
 * What this package calls on a registry: any prom-client Registry has it (also another copy
 * of prom-client than ours, as an application may install).
 */
function isRegistry(value: unknown): value is MetricsRegistry {
  if (typeof value !== 'object' || value === null) return false
  const r = value as Record<string, unknown>
  return (
    typeof r['registerMetric'] === 'function' &&
    typeof r['getSingleMetric'] === 'function' &&
    typeof r['metrics'] === 'function' &&
    typeof r['contentType'] === 'string'
  )
}

const METRICS_KEYS = ['registry'] as const

/** The `metrics` option: the application's registry, or undefined for one of their own. */
export function resolveMetricsOptions(value: unknown): MetricsRegistry | undefined {
  if (value === undefined) return undefined
  const o = checkPlainOptions('metrics', value)
  checkKnownKeys('metrics', o, METRICS_KEYS)
  const registry = o['registry']
  if (registry === undefined) return undefined
  if (!isRegistry(registry)) {
    throw new InvalidArgumentError(`'metrics.registry' must be a prom-client Registry, got ${describe(registry)}`)
  }
  return registry
}
