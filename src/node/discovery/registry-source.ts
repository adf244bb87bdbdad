import type { Cluster, Redis } from 'ioredis'
import { checkInteger } from '../../config.js'
import { coerceError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { Timer } from '../../scheduling/timer-heap.js'
import { createClient } from '../../storage/redis/client.js'
import { type GroupKeys, groupKeys } from '../../storage/redis/group-keys.js'
import { isLive, parseMemberEntry } from '../../storage/redis/member-entry.js'
import { parseStorageUrl, type RedisTarget, redactUrl } from '../../storage/redis/url.js'

/** One live member of the group: the host and port of its `advertise` address. */
export interface RegistryAddress {
  readonly host: string
  readonly port: number
}

/** What a registry source needs of its node. */
export interface RegistryContext {
  readonly log: Logger
  /** Epoch ms, compared with the members' `leaseUntil`. */
  now(): number
  /** Fires `timer` once, `ms` from now, on the node's scheduler. */
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
  /**
   * The complete current set, sorted by `host:port`, whenever it differs from the last one
   * reported (and once after the first read, even an empty one). It must not throw.
   */
  onChange(addresses: readonly RegistryAddress[]): void
}

export interface RegistrySourceOptions {
  /** `redis://`, `rediss://`, `redis-cluster://` or `rediss-cluster://`: where the group's members register. */
  url: string
  /** The group whose members are the distributors. */
  group: string
  /** Key prefix the distributors use. @default 'jr:' */
  prefix?: string
  /**
   * The longest wait between two reads when no event arrives: how late a member that
   * stopped renewing without a word is noticed, at worst, and how often a failing Redis is
   * asked again. @default 5000 (a third of the default lease, the members' renewal period)
   */
  intervalMs?: number
}

export const DEFAULT_REGISTRY_INTERVAL_MS = 5_000

type State = 'idle' | 'running' | 'closed'

/**
 * The distributors of a node given `group` and `discover`: the live members of the group as
 * registered in Redis by the distributors themselves, so that members come and go (a rolling
 * deploy, a scale-out) without a restart of the node.
 *
 * It reads the members hash: every entry whose `leaseUntil` is not in the past is a
 * distributor at its `advertise` address. It reads again on every message on the group's
 * events channel (a member joined, left or adopted another), when its connections come back
 * (messages may have been missed meanwhile), and otherwise at `intervalMs`, or sooner when
 * the first live lease runs out before then: a member that dies without a word is gone once
 * its lease is.
 *
 * Two connections: SUBSCRIBE takes one for itself. Both reconnect for ever with capped
 * backoff and fail commands at once while down (client.ts), so that a read during an outage
 * fails rather than waits.
 *
 * STATES
 * - idle: constructed; `start()` → running.
 * - running: connecting or connected; at most one read under way (a read asked for meanwhile
 *   runs after it), one timer armed between reads.
 * - closed: from any state via `close()`; the timer is cancelled, the connections dropped,
 *   and a read under way has its outcome dropped. Final.
 *
 * A failed read (Redis down, a hung server) is not an answer: the last set stays in force,
 * nothing is reported, and only the first failure of a streak is a warning. An entry that
 * does not parse is skipped, with one warning per value.
 *
 * INVARIANT: `onChange` is never called after `close()`.
 */
export class RegistrySource {
  private state: State = 'idle'
  private readonly timer = new Timer(() => this.onTimer())
  private readonly keys: GroupKeys
  private readonly group: string
  private readonly url: string
  private readonly target: RedisTarget
  private readonly intervalMs: number
  private reader: Redis | Cluster | undefined
  private subscriber: Redis | Cluster | undefined
  private reading = false
  /** A read was asked for while one was under way: it runs once that one is done. */
  private again = false
  /** The addresses last reported, sorted; undefined until the first read. */
  private reported: readonly string[] | undefined
  /** Reads failed in a row. */
  private failures = 0
  /** What the connections last reported: a failed command says less ("stream isn't writeable"). */
  private connectionError: Error | undefined
  /** Member → the value last warned about, so that a bad entry is reported once, not at every read. */
  private readonly badEntries = new Map<string, string>()

  constructor(
    private readonly ctx: RegistryContext,
    options: RegistrySourceOptions,
  ) {
    // Validated here as well as in the node's options: a source may be made on its own.
    this.target = parseStorageUrl(options.url, "'discover' url")
    this.url = options.url
    this.group = options.group
    this.keys = groupKeys(options.group, options.prefix)
    this.intervalMs = checkInteger('intervalMs', options.intervalMs ?? DEFAULT_REGISTRY_INTERVAL_MS, 1)
  }

  /** Connects and keeps the set current until `close()`. A second call does nothing. */
  start(): void {
    if (this.state !== 'idle') return
    this.state = 'running'
    const running = (): boolean => this.state === 'running'
    const reader = (this.reader = createClient(this.target, running))
    const subscriber = (this.subscriber = createClient(this.target, running))
    for (const client of [reader, subscriber]) {
      client.on('error', (err: Error) => {
        this.connectionError = err
      })
      // A failed first connect is retried by the client itself; the reads report the outage.
      client.connect().catch(() => {})
    }
    reader.on('ready', () => {
      this.connectionError = undefined
      void this.read()
    })
    subscriber.on('ready', () => this.subscribe())
    subscriber.on('message', (channel: string) => {
      if (channel === this.keys.events) void this.read()
    })
    // Reads before the first connection would only fail: the first one waits for 'ready',
    // and this timer for a Redis that never answers.
    this.ctx.after(this.timer, this.intervalMs)
  }

  close(): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.ctx.cancelTimer(this.timer)
    this.reader?.disconnect()
    this.subscriber?.disconnect()
  }

  private subscribe(): void {
    this.subscriber?.subscribe(this.keys.events).then(
      () => {
        if (this.state !== 'running') return
        this.ctx.log.debug({ group: this.group, channel: this.keys.events }, 'subscribed to the group events')
        // Whatever changed before the subscription took effect is read now.
        void this.read()
      },
      (err: unknown) => {
        if (this.state !== 'running') return
        this.ctx.log.warn(
          { group: this.group, channel: this.keys.events, reason: coerceError(err).message },
          'cannot subscribe to the group events; members are read every interval only',
        )
      },
    )
  }

  private onTimer(): void {
    // A client whose connect failed before any retry began has stopped for good: start it again.
    for (const client of [this.reader, this.subscriber]) {
      if (client?.status === 'end') client.connect().catch(() => {})
    }
    void this.read()
  }

  private async read(): Promise<void> {
    if (this.state !== 'running' || this.reader === undefined) return
    if (this.reading) {
      this.again = true
      return
    }
    this.reading = true
    this.ctx.cancelTimer(this.timer)
    let next = this.intervalMs
    try {
      const fields = await this.reader.hgetall(this.keys.members)
      if ((this.state as State) !== 'running') return
      next = this.answered(fields)
    } catch (err) {
      if ((this.state as State) !== 'running') return
      this.failed(coerceError(err))
    } finally {
      this.reading = false
    }
    if (this.again) {
      this.again = false
      void this.read()
      return
    }
    this.ctx.after(this.timer, next)
  }

  /** Reports the live members if they changed; returns the wait until the next read. */
  private answered(fields: Record<string, string>): number {
    if (this.failures > 0) {
      this.ctx.log.info({ group: this.group, failures: this.failures }, 'the group registry answers again')
      this.failures = 0
    }
    const now = this.ctx.now()
    const live = new Map<string, RegistryAddress>()
    let soonest = Number.POSITIVE_INFINITY
    for (const [member, value] of Object.entries(fields)) {
      const parsed = parseMemberEntry(value)
      if (!parsed.ok) {
        if (this.badEntries.get(member) !== value) {
          this.badEntries.set(member, value)
          this.ctx.log.warn({ group: this.group, member, reason: parsed.reason }, 'skipping a bad registry entry')
        }
        continue
      }
      this.badEntries.delete(member)
      if (!isLive(parsed.entry, now)) continue
      soonest = Math.min(soonest, parsed.entry.leaseUntil)
      live.set(`${parsed.host}:${parsed.port}`, { host: parsed.host, port: parsed.port })
    }
    // A member that stops renewing is let go as its lease runs out, not up to an interval later.
    const next = Math.max(1, Math.min(this.intervalMs, soonest - now + 1))
    const addresses = [...live.keys()].sort()
    if (this.reported !== undefined && sameAddresses(this.reported, addresses)) return next
    if (addresses.length === 0) {
      this.ctx.log.warn({ group: this.group }, `group '${this.group}' has no live member: no distributor to dial`)
    }
    this.reported = addresses
    this.ctx.onChange(addresses.map((address) => live.get(address) as RegistryAddress))
    return next
  }

  private failed(error: Error): void {
    this.failures++
    const cause = this.connectionError ?? error
    // The first failure in a row is worth a warning; the retries after it are not.
    this.ctx.log[this.failures === 1 ? 'warn' : 'debug'](
      { group: this.group, url: redactUrl(this.url), reason: cause.message, retryInMs: this.intervalMs },
      this.reported === undefined
        ? 'cannot read the group registry'
        : 'cannot read the group registry; keeping the last known members',
    )
  }
}

function sameAddresses(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((address, i) => address === b[i])
}
