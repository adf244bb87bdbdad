import { availableParallelism } from 'node:os'
import { resolveMetricsOptions, type MetricsOptions, type MetricsRegistry } from '../admin/metrics/prom-client.js'
import {
  booleanOption,
  integerOption,
  checkKnownKeys,
  checkPlainOptions,
  checkSecret,
  checkString,
  DEFAULT_CONCURRENCY,
  DEFAULT_HOST,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_STORE_TIMEOUT_MS,
  DEFAULT_WINDOW_PER_SLOT,
  DEFAULT_LEASE_MS,
  MIN_MAX_FRAME_SIZE,
  DEFAULT_RECONNECT_MAX_MS,
  DEFAULT_RECONNECT_MIN_MS,
  DEFAULT_SHUTDOWN_TIMEOUT_MS,
  DEFAULT_STALL_TIMEOUT_MS,
  describe,
  parseHostPort,
} from '../config.js'
import { InvalidArgumentError } from '../errors.js'
import { DEFAULT_MAX_FRAME_SIZE } from '../protocol/frame.js'
import { createLogger, resolveLogLevel, type Logger, type LogLevel } from '../logger.js'
import { checkGroup } from '../protocol/identity.js'
import { checkStorageUrl } from '../storage/redis/url.js'
import type { Store } from '../storage/store.js'
import { type DnsTarget, parseDnsServer, parseDnsTarget } from './discovery/dns-source.js'
import type { JobRegistry } from './registry.js'

export interface NodeTlsOptions {
  /** CA certificate(s) that signed the distributor's certificate (PEM). */
  ca?: string | Buffer
  /** Client certificate and key, for mutual TLS (PEM). */
  cert?: string | Buffer
  key?: string | Buffer
  /** Name to check the distributor's certificate against. @default the host dialled */
  servername?: string
}

export interface NodeOptions {
  /** The node's name: routing (`node`, `notNode`), logs, and its storage namespace. */
  name: string
  /**
   * Distributors to serve: `'host:port'` (one distributor), or `'dns:NAME:PORT'` (every A
   * and AAAA record of NAME, kept current as the records change; `JR_DNS_SERVER` picks the
   * DNS server). May be combined with `discover`: the node serves the union.
   * @default ['127.0.0.1:5000'], or none with `discover`
   */
  distributors?: string[]
  /**
   * The distributor group whose members `discover` finds. Only with `discover`: the
   * distributors of `distributors` may belong to any group.
   */
  group?: string
  /**
   * Find the members of `group` in the Redis registry the distributors keep, and follow it as
   * they come and go: `redis://…`, `rediss://…`, `redis-cluster://…` or `rediss-cluster://…`.
   */
  discover?: string
  /** Directory of job files, loaded recursively (.js, .mjs, .ts). @default config.jobDirectory */
  jobDirectory?: string
  /**
   * Use these definitions instead of loading a directory. `defer` jobs then run on the
   * node's event loop (a worker thread loads job files by path), with a warning.
   */
  registry?: JobRegistry
  /** 'memory', 'redis://host:port[/db]', 'redis-cluster://h1:p1,h2:p2', or a Store. @default 'memory' */
  storage?: string | Store
  /** Chains run at once, at most. @default 100 */
  concurrency?: number
  /**
   * Jobs a distributor may have in flight to this node (sent and unfinished), like a prefetch
   * count. Larger keeps a fast node fed while feedback is on its way back; smaller spreads
   * long jobs more evenly. A delayed or periodic job counts a tenth, and only until this node
   * accepts it. @default 10 × concurrency
   */
  window?: number
  /** Shared secret the distributors require (16+ characters). */
  secret?: string
  /** Dial the distributors over TLS. */
  tls?: NodeTlsOptions
  /** @default 16 MiB */
  maxFrameSize?: number
  /** Redial backoff bounds. @default 100 and 10000 */
  reconnectMinMs?: number
  reconnectMaxMs?: number
  /** A distributor that stops reading for this long is dropped (and redialled). @default 30000 */
  stallTimeoutMs?: number
  /** A distributor that has not completed the handshake by then is dropped (and redialled). @default 10000 */
  handshakeTimeoutMs?: number
  /**
   * A store that answers nothing for this long while operations wait counts as down, as if
   * it refused connections: no new jobs, writes replayed in order once it answers. A slow
   * store that keeps answering is not down, however long its queue. @default 5000
   */
  storeTimeoutMs?: number
  /** On close, how long running chains may take before they are abandoned to storage. @default 30000 */
  shutdownTimeoutMs?: number
  /** Worker threads for `defer: true` jobs (started on first use). @default cores - 1, at least 1 */
  workerThreads?: number
  /**
   * Durable storage: adopt the unfinished jobs of a peer on the same Redis whose lease
   * expired (it died and stayed down). Exactly one peer adopts each dead node. @default false
   */
  takeover?: boolean
  /** How long a node's claim on its stored jobs lasts without renewal. @default 15000 */
  leaseMs?: number
  /**
   * Prometheus metrics (`node.metrics`, `node.metricsHandler()`): counted always; `{ registry }`
   * reports them through the application's prom-client registry instead of one of their own.
   * @default a registry of their own, made on first read (or at start with `metricsPort`)
   */
  metrics?: MetricsOptions
  /**
   * Serve the metrics at `http://metricsHost:metricsPort/metrics` (0: any free port, read it
   * from `node.metricsPort`). No authentication. @default none: not served
   */
  metricsPort?: number
  /** The address the metrics are served on; only with `metricsPort`. @default '127.0.0.1' */
  metricsHost?: string
  logger?: Logger
  /** @default 'info' (or JR_LOG_LEVEL) */
  logLevel?: LogLevel
}

export interface ResolvedNodeOptions {
  name: string
  /** The `host:port` entries of `distributors`. */
  distributors: LinkTarget[]
  /** The `dns:NAME:PORT` entries of `distributors`, each once. */
  dnsTargets: DnsTarget[]
  /** `JR_DNS_SERVER` as found in the environment when there are DNS targets. */
  dnsServer: string | undefined
  group: string | undefined
  discover: string | undefined
  jobDirectory: string | undefined
  registry: JobRegistry | undefined
  storage: string | Store
  concurrency: number
  window: number
  secret: string | undefined
  tls: NodeTlsOptions | undefined
  maxFrameSize: number
  reconnectMinMs: number
  reconnectMaxMs: number
  stallTimeoutMs: number
  handshakeTimeoutMs: number
  storeTimeoutMs: number
  shutdownTimeoutMs: number
  workerThreads: number
  takeover: boolean
  leaseMs: number
  /** The application's registry (option `metrics.registry`); undefined: one of their own. */
  metricsRegistry: MetricsRegistry | undefined
  /** Undefined: the metrics are not served over HTTP. */
  metricsPort: number | undefined
  metricsHost: string
  logLevel: LogLevel
  logger: Logger
}

const NODE_KEYS = [
  'name',
  'distributors',
  'group',
  'discover',
  'jobDirectory',
  'registry',
  'storage',
  'concurrency',
  'window',
  'secret',
  'tls',
  'maxFrameSize',
  'reconnectMinMs',
  'reconnectMaxMs',
  'stallTimeoutMs',
  'handshakeTimeoutMs',
  'storeTimeoutMs',
  'shutdownTimeoutMs',
  'workerThreads',
  'takeover',
  'leaseMs',
  'metrics',
  'metricsPort',
  'metricsHost',
  'logger',
  'logLevel',
] as const

const DEFAULT_DISTRIBUTOR = '127.0.0.1:5000'

export function resolveNodeOptions(input: unknown): ResolvedNodeOptions {
  const o = checkPlainOptions('node', input)
  checkKnownKeys('node', o, NODE_KEYS)
  const name = checkString('name', o['name'])
  if (!/^[\w.-]{1,200}$/.test(name)) {
    throw new InvalidArgumentError(`'name' may hold only letters, digits, '_', '.' and '-', got ${describe(name)}`)
  }
  const { group, discover } = resolveDiscovery(o)
  const list = o['distributors'] ?? (discover === undefined ? [DEFAULT_DISTRIBUTOR] : [])
  if (!Array.isArray(list) || (list.length === 0 && discover === undefined)) {
    throw new InvalidArgumentError(
      `'distributors' must be a non-empty array of 'host:port' or 'dns:NAME:PORT' (or give 'discover'), got ${describe(list)}`,
    )
  }
  const distributors: LinkTarget[] = []
  const dnsTargets: DnsTarget[] = []
  for (const [i, entry] of list.entries()) {
    const dns = typeof entry === 'string' ? parseDnsTarget(entry) : undefined
    if (dns === undefined) {
      distributors.push(linkTarget(parseHostPort(`distributors[${i}]`, entry)))
    } else if (!dnsTargets.some((t) => t.name === dns.name && t.port === dns.port)) {
      dnsTargets.push(dns)
    }
  }
  const dnsServer = dnsTargets.length === 0 ? undefined : process.env['JR_DNS_SERVER']
  // Checked now, not at the first resolution.
  parseDnsServer(dnsServer)
  const storage = o['storage'] ?? 'memory'
  if (
    typeof storage !== 'string' &&
    (typeof storage !== 'object' || storage === null || typeof (storage as Store).saveJobs !== 'function')
  ) {
    throw new InvalidArgumentError(`'storage' must be 'memory', a redis:// URL or a Store, got ${describe(storage)}`)
  }
  if (typeof storage === 'string' && storage !== 'memory') checkStorageUrl('storage', storage)
  const concurrency = integerOption(o, 'concurrency', DEFAULT_CONCURRENCY, 1, 100_000)
  const logLevel = resolveLogLevel(o['logLevel'])
  const reconnectMinMs = integerOption(o, 'reconnectMinMs', DEFAULT_RECONNECT_MIN_MS, 1)
  const reconnectMaxMs = integerOption(o, 'reconnectMaxMs', DEFAULT_RECONNECT_MAX_MS, reconnectMinMs)
  const metricsPort = integerOption(o, 'metricsPort', undefined, 0, 65535)
  if (o['metricsHost'] !== undefined && metricsPort === undefined) {
    throw new InvalidArgumentError(
      `'metricsHost' is where the metrics are served on 'metricsPort'; give 'metricsPort' too`,
    )
  }
  return {
    name,
    distributors,
    dnsTargets,
    dnsServer,
    group,
    discover,
    jobDirectory: o['jobDirectory'] === undefined ? undefined : checkString('jobDirectory', o['jobDirectory']),
    registry: o['registry'] as JobRegistry | undefined,
    storage: storage as string | Store,
    concurrency,
    window: integerOption(o, 'window', concurrency * DEFAULT_WINDOW_PER_SLOT, 1),
    secret: checkSecret('secret', o['secret']),
    tls: o['tls'] === undefined ? undefined : (checkPlainOptions('tls', o['tls']) as NodeTlsOptions),
    maxFrameSize: integerOption(o, 'maxFrameSize', DEFAULT_MAX_FRAME_SIZE, MIN_MAX_FRAME_SIZE, 2 ** 31 - 1),
    reconnectMinMs,
    reconnectMaxMs,
    stallTimeoutMs: integerOption(o, 'stallTimeoutMs', DEFAULT_STALL_TIMEOUT_MS, 1),
    handshakeTimeoutMs: integerOption(o, 'handshakeTimeoutMs', DEFAULT_HANDSHAKE_TIMEOUT_MS, 1),
    storeTimeoutMs: integerOption(o, 'storeTimeoutMs', DEFAULT_STORE_TIMEOUT_MS, 1),
    shutdownTimeoutMs: integerOption(o, 'shutdownTimeoutMs', DEFAULT_SHUTDOWN_TIMEOUT_MS, 0),
    workerThreads: integerOption(o, 'workerThreads', Math.max(1, availableParallelism() - 1), 1, 1024),
    takeover: booleanOption(o, 'takeover', false),
    leaseMs: integerOption(o, 'leaseMs', DEFAULT_LEASE_MS, 100),
    metricsRegistry: resolveMetricsOptions(o['metrics']),
    metricsPort,
    metricsHost: o['metricsHost'] === undefined ? DEFAULT_HOST : checkString('metricsHost', o['metricsHost']),
    logLevel,
    logger: (o['logger'] as Logger | undefined) ?? createLogger(logLevel).child({ node: name }),
  }
}

/** An address to dial: `address` is `host:port` as the node writes it, and tells links apart. */
export interface LinkTarget {
  readonly address: string
  readonly host: string
  readonly port: number
}

/** What the node dials for `host:port`; the address is how links are told apart. */
export function linkTarget({ host, port }: { host: string; port: number }): LinkTarget {
  return { address: `${host}:${port}`, host, port }
}

/** `group` and `discover` go together: one names what the other finds. */
function resolveDiscovery(o: Record<string, unknown>): { group: string | undefined; discover: string | undefined } {
  const group = o['group'] === undefined ? undefined : checkGroup('group', o['group'])
  const discover = o['discover']
  if (discover === undefined) {
    if (group !== undefined) {
      throw new InvalidArgumentError(
        `'group' names the group that 'discover' finds in Redis; give 'discover' too (a distributor of another group can be listed in 'distributors')`,
      )
    }
    return { group, discover: undefined }
  }
  const url = checkStorageUrl('discover', discover, false)
  if (group === undefined) {
    throw new InvalidArgumentError(`'discover' needs 'group': the distributor group whose members it finds`)
  }
  return { group, discover: url }
}
