import { Resolver } from 'node:dns/promises'
import { isIPv4, isIPv6 } from 'node:net'
import { checkInteger } from '../../config.js'
import { coerceError, InvalidArgumentError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { Timer } from '../../scheduling/timer-heap.js'

/** One distributor found by name: an IP address (IPv6 bare, e.g. `::1`) and the port of the target. */
export interface DnsAddress {
  readonly host: string
  readonly port: number
}

/** A `dns:NAME:PORT` distributor entry, parsed. */
export interface DnsTarget {
  readonly name: string
  readonly port: number
}

/** What a DNS source needs of its node. */
export interface DnsContext {
  readonly log: Logger
  /** Fires `timer` once, `ms` from now, on the node's scheduler. */
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
  /**
   * The complete current set, sorted, whenever it differs from the last one reported (and
   * once after the first answer, even an empty one). It must not throw.
   */
  onChange(addresses: readonly DnsAddress[]): void
}

export interface DnsSourceOptions {
  /** The name whose A and AAAA records are the distributors. */
  name: string
  /** The port every address gets (DNS A/AAAA records carry none). */
  port: number
  /**
   * The one DNS server to ask instead of the system's: the value of `JR_DNS_SERVER`, as
   * `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port` (see parseDnsServer). Unset or empty: the
   * system's servers.
   */
  server?: string | undefined
  /** The shortest wait between two resolutions (a TTL of 0 included). @default 1000 */
  minIntervalMs?: number
  /** The longest wait between two resolutions, however long the TTL or the failure streak. @default 30000 */
  maxIntervalMs?: number
}

export const DEFAULT_DNS_MIN_INTERVAL_MS = 1_000
export const DEFAULT_DNS_MAX_INTERVAL_MS = 30_000
/**
 * Per try. With 2 tries a silent server fails a resolution after about 6 s (c-ares doubles
 * the timeout on the retry), so a dead server costs a few seconds, not a hung source.
 */
const RESOLVER_TIMEOUT_MS = 2_000
const RESOLVER_TRIES = 2
const DNS_PORT = 53
/** The answers that mean "no records of this family", as opposed to "no answer". */
const NO_RECORDS = new Set(['ENODATA', 'ENOTFOUND'])

const TARGET_FORM = 'dns:NAME:PORT'

type State = 'idle' | 'resolving' | 'waiting' | 'closed'
type DnsRecord = { address: string; ttl: number }

/**
 * Parses a `--distributor` value of the form `dns:NAME:PORT`. Returns undefined for any
 * other value (a plain `host:port` is not ours to judge); throws InvalidArgumentError naming
 * the value when it starts with `dns:` but is not a name and a port.
 */
export function parseDnsTarget(spec: string): DnsTarget | undefined {
  if (!spec.startsWith('dns:')) return undefined
  const bad = (why: string): InvalidArgumentError =>
    new InvalidArgumentError(`distributor '${spec}' must be ${TARGET_FORM} (${why})`)
  const rest = spec.slice('dns:'.length)
  const colon = rest.lastIndexOf(':')
  if (colon === -1 || colon === rest.length - 1) throw bad('no port')
  const name = rest.slice(0, colon)
  const portText = rest.slice(colon + 1)
  if (name === '') throw bad('no name')
  if (!isDnsName(name)) throw bad(`'${name}' is not a DNS name`)
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN
  if (!(port >= 1 && port <= 65535)) throw bad(`port '${portText}' is not an integer in 1..65535`)
  return { name, port }
}

/**
 * Labels of letters, digits, '-' and '_' (service names such as `_jr._tcp` have them), at
 * most 63 characters each and 253 in all, with an optional final dot. Anything else (a colon
 * left from a malformed port, a space) could only fail at every resolution, so it fails here.
 */
function isDnsName(name: string): boolean {
  const bare = name.endsWith('.') ? name.slice(0, -1) : name
  if (bare.length === 0 || bare.length > 253) return false
  return bare.split('.').every((label) => /^[A-Za-z0-9_-]{1,63}$/.test(label))
}

/**
 * Parses `JR_DNS_SERVER`: an IP address with an optional port (`10.0.0.10`, `10.0.0.10:5353`,
 * `::1`, `[::1]`, `[::1]:5353`), port 53 when none is given. Returns undefined for an unset or
 * empty value (how a shell unsets a variable for one command). Names are refused: the server
 * that would resolve them is the one being chosen.
 */
export function parseDnsServer(value: string | undefined): { host: string; port: number } | undefined {
  if (value === undefined || value === '') return undefined
  const bad = (why: string): InvalidArgumentError =>
    new InvalidArgumentError(
      `JR_DNS_SERVER must be an IP address with an optional port (host, host:port or [v6]:port), got '${value}' (${why})`,
    )
  if (isIPv6(value)) return { host: value, port: DNS_PORT }
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*))(?::([^:]*))?$/.exec(value)
  if (m === null) throw bad('not host, host:port or [v6]:port')
  const bracketed = m[1]
  const host = bracketed ?? m[2] ?? ''
  if (bracketed !== undefined ? !isIPv6(host) : !isIPv4(host)) {
    throw bad(`'${host}' is not an ${bracketed !== undefined ? 'IPv6' : 'IPv4'} address`)
  }
  if (m[3] === undefined) return { host, port: DNS_PORT }
  const port = /^\d{1,5}$/.test(m[3]) ? Number(m[3]) : Number.NaN
  if (!(port >= 1 && port <= 65535)) throw bad(`port '${m[3]}' is not an integer in 1..65535`)
  return { host, port }
}

/**
 * The distributors of a node given `dns:NAME:PORT`: every A and AAAA record of NAME, kept
 * current by resolving it again when its shortest TTL runs out, so that distributors behind
 * a headless service (or any name with one record per instance) come and go without a
 * restart of the node.
 *
 * STATES
 * - idle: constructed; `start()` → resolving.
 * - resolving: both families asked at once; the answer (or failure) → waiting.
 * - waiting: one timer armed, at the TTL after an answer, at the backoff after a failure;
 *   it fires → resolving.
 * - closed: from any state via `close()`; the timer is cancelled and a resolution still
 *   under way is cancelled and its outcome dropped. Final.
 *
 * A failure (no server, SERVFAIL, timeout) is not an answer: the last set stays in force,
 * nothing is reported, and only the first failure of a streak is a warning. An empty answer
 * (NXDOMAIN, or no record of either family) is an answer: the set becomes empty.
 *
 * INVARIANTS: at most one resolution is under way and at most one timer is armed, never
 * both; `onChange` is never called after `close()`.
 */
export class DnsSource {
  private state: State = 'idle'
  private readonly resolver = new Resolver({ timeout: RESOLVER_TIMEOUT_MS, tries: RESOLVER_TRIES })
  private readonly timer = new Timer(() => void this.resolve())
  private readonly name: string
  private readonly port: number
  private readonly minIntervalMs: number
  private readonly maxIntervalMs: number
  /** The hosts last reported, sorted; undefined until the first answer. */
  private reported: readonly string[] | undefined
  /** Resolutions failed in a row. */
  private failures = 0

  constructor(
    private readonly ctx: DnsContext,
    options: DnsSourceOptions,
  ) {
    const target = `${options.name}:${options.port}`
    if (!isDnsName(options.name)) {
      throw new InvalidArgumentError(
        `distributor 'dns:${target}' must be ${TARGET_FORM} ('${options.name}' is not a DNS name)`,
      )
    }
    this.name = options.name
    this.port = checkInteger('port', options.port, 1, 65535)
    this.minIntervalMs = checkInteger('minIntervalMs', options.minIntervalMs ?? DEFAULT_DNS_MIN_INTERVAL_MS, 1)
    this.maxIntervalMs = checkInteger(
      'maxIntervalMs',
      options.maxIntervalMs ?? Math.max(DEFAULT_DNS_MAX_INTERVAL_MS, this.minIntervalMs),
      this.minIntervalMs,
    )
    const server = parseDnsServer(options.server)
    if (server !== undefined) {
      this.resolver.setServers([
        isIPv6(server.host) ? `[${server.host}]:${server.port}` : `${server.host}:${server.port}`,
      ])
    }
  }

  /** Resolves the name now and keeps it resolved until `close()`. A second call does nothing. */
  start(): void {
    if (this.state !== 'idle') return
    void this.resolve()
  }

  close(): void {
    if (this.state === 'closed') return
    const wasResolving = this.state === 'resolving'
    this.state = 'closed'
    this.ctx.cancelTimer(this.timer)
    // Ends the queries under way at once (ECANCELLED) instead of letting them run to their timeout.
    if (wasResolving) this.resolver.cancel()
  }

  private async resolve(): Promise<void> {
    if (this.state === 'closed') return
    this.state = 'resolving'
    // Both settled before going on, so that no query of this round is still under way when
    // the next one starts.
    const [v4, v6] = await Promise.allSettled([
      this.family(this.resolver.resolve4(this.name, { ttl: true })),
      this.family(this.resolver.resolve6(this.name, { ttl: true })),
    ])
    // A close() during the resolution: whatever came back is no longer wanted.
    if ((this.state as State) === 'closed') return
    this.state = 'waiting'
    if (v4.status === 'rejected' || v6.status === 'rejected') {
      this.failed(coerceError(v4.status === 'rejected' ? v4.reason : (v6 as PromiseRejectedResult).reason))
      return
    }
    if (this.failures > 0) {
      this.ctx.log.info({ name: this.name, failures: this.failures }, 'the distributors resolve again')
      this.failures = 0
    }
    const records = [...v4.value, ...v6.value]
    // No record, no TTL: ask again soon, as distributors that are starting get their records then.
    const ttlMs = records.length === 0 ? 0 : 1000 * Math.min(...records.map((r) => r.ttl))
    this.ctx.after(this.timer, this.clamp(ttlMs))
    const hosts = [...new Set(records.map((r) => r.address))].sort()
    if (this.reported !== undefined && sameHosts(this.reported, hosts)) return
    if (hosts.length === 0) {
      this.ctx.log.warn({ name: this.name }, `'${this.name}' has no A or AAAA records: no distributor to dial`)
    }
    this.reported = hosts
    this.ctx.onChange(hosts.map((host) => ({ host, port: this.port })))
  }

  /** The records of one family; "none of this family" is an empty list, any other error a failure. */
  private async family(query: Promise<DnsRecord[]>): Promise<DnsRecord[]> {
    try {
      return await query
    } catch (err) {
      if (NO_RECORDS.has((err as { code?: unknown }).code as string)) return []
      throw err
    }
  }

  private failed(error: Error): void {
    this.failures++
    const delay = this.clamp(this.minIntervalMs * 2 ** Math.min(this.failures - 1, 30))
    // The first failure in a row is worth a warning (a wrong server or a name the server
    // refuses would otherwise go unnoticed); the retries after it are not.
    this.ctx.log[this.failures === 1 ? 'warn' : 'debug'](
      { name: this.name, code: (error as { code?: unknown }).code, reason: error.message, retryInMs: delay },
      this.reported === undefined
        ? 'cannot resolve the distributors'
        : 'cannot resolve the distributors; keeping the last known ones',
    )
    this.ctx.after(this.timer, delay)
  }

  private clamp(ms: number): number {
    return Math.min(this.maxIntervalMs, Math.max(this.minIntervalMs, ms))
  }
}

function sameHosts(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((host, i) => host === b[i])
}
