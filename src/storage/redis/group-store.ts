import type { Cluster, Redis } from 'ioredis'
import { StoreError } from '../../errors.js'
import { connectClient, createClient, dropClient, quitClient } from './client.js'
import { type GroupKeys, groupKeys, type MemberKeys, memberKeys } from './group-keys.js'
import { DEFAULT_KEY_PREFIX } from './keys.js'
import { decodeLimitAnswers, encodeLimitOps, LIMIT_GRANT_LUA, type LimitAnswer, type LimitOp } from './limit-scripts.js'
import { encodeMemberEntry, type MemberEntry, parseMemberEntry } from './member-entry.js'
import { type ClaimAnswer, parseClaimAnswers, SPOOL_APPLY_LUA } from './spool-script.js'
import { parseStorageUrl, redactUrl } from './url.js'

/*
 * A distributor group's state in Redis; key layout in group-keys.ts. Every key of the group
 * shares its hash tag, so one script call writes a whole batch of a spool with the unique
 * keys it claims. Adoption spans several calls: it is ordered so that a crash at any step
 * leaves the work findable (see Membership.adopt).
 */

/** Take or renew the name's lease for token ARGV[1]: returns {holder, pttl of another's lease}. */
const ACQUIRE_LUA = `
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {ARGV[1], 0}
end
return {holder, redis.call('PTTL', KEYS[1])}
`

/**
 * KEYS: spool, lease. ARGV: token, ttl ms, then job ids. An adopter removes from a gone
 * member's spool the records it read and spooled under its own name, only while it still
 * holds the gone member's lease (renewed here): once the lease ran out, the name is
 * whoever's took it since (the member started again, or another adopter), and so is its
 * spool. Returns 1 when removed, 0 when the lease is another's or nobody's.
 */
const REMOVE_ADOPTED_LUA = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
if #ARGV > 2 then redis.call('HDEL', KEYS[1], unpack(ARGV, 3)) end
return 1
`

const RELEASE_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`

/**
 * KEYS: members. ARGV: adopter, gone member, adopter's record (JSON, without the gone one).
 * The adopter's record takes the gone member's name and the names it answered for; the
 * gone member's entry goes. One step, so nobody sees the gone member's answers nowhere.
 */
const ABSORB_LUA = `
local adopter = cjson.decode(ARGV[3])
local gone = redis.call('HGET', KEYS[1], ARGV[2])
local seen = {}
for _, n in ipairs(adopter.answers) do seen[n] = true end
local function add(n)
  if not seen[n] and n ~= ARGV[1] then
    seen[n] = true
    adopter.answers[#adopter.answers + 1] = n
  end
end
add(ARGV[2])
if gone then
  local record = cjson.decode(gone)
  if type(record.answers) == 'table' then
    for _, n in ipairs(record.answers) do add(n) end
  end
end
local encoded = cjson.encode(adopter)
redis.call('HSET', KEYS[1], ARGV[1], encoded)
redis.call('HDEL', KEYS[1], ARGV[2])
return encoded
`

interface GroupScripts {
  jrSpoolApply(spool: string, unique: string, ids: string, ttls: string, ops: Buffer, member: string): Promise<unknown>
  jrMemberAcquire(key: string, token: string, ttlMs: string): Promise<[string, number]>
  jrMemberRelease(key: string, token: string): Promise<number>
  jrRemoveAdopted(spool: string, lease: string, token: string, ttlMs: string, ...ids: string[]): Promise<number>
  jrAbsorb(key: string, adopter: string, gone: string, record: string): Promise<string>
  jrLimitGrant(numberOfKeys: number, ...keysAndArgs: (string | Buffer)[]): Promise<(number | string)[]>
}

/**
 * Puts a deadline on a call (the owner's StoreGuard): a server that hangs, its connection
 * up and commands just waiting, must fail calls as one that refuses them does.
 */
export interface CallGuard {
  run<T>(operation: () => Promise<T>): Promise<T>
}

const UNGUARDED: CallGuard = { run: (operation) => operation() }

/** Spool entries read per call when loading (HSCAN COUNT). */
const SCAN_COUNT = 5000
/** Ids removed per call from an adopted spool (Lua's unpack has a stack limit of about 8,000). */
const REMOVE_COUNT = 1000
/**
 * A distributor group's state in Redis (single server or Cluster): members' spools, their
 * leases and the registry. Speaks in group terms; the distributor's spool and membership
 * (src/distributor/spool/) decide when to call what. Every failure is a StoreError that
 * names the operation and the server.
 */
export class GroupStore {
  readonly group: string
  private readonly client: Redis | Cluster
  private readonly scripts: GroupScripts
  private readonly keys: GroupKeys
  private readonly prefix: string
  private readonly label: string
  private readonly guard: CallGuard
  private open = false
  /** The connection in subscriber mode, made by the first subscribe(). */
  private subscriber: Redis | Cluster | undefined
  /** What each subscribed channel's messages go to. */
  private readonly channels = new Map<string, (message: string) => void>()

  constructor(url: string, group: string, options: { guard?: CallGuard; prefix?: string } = {}) {
    const prefix = options.prefix ?? DEFAULT_KEY_PREFIX
    this.group = group
    this.prefix = prefix
    this.guard = options.guard ?? UNGUARDED
    this.keys = groupKeys(group, prefix)
    this.label = redactUrl(url)
    this.client = createClient(parseStorageUrl(url), () => this.open)
    // Without a listener ioredis prints every failed reconnect; a failing command says why.
    this.client.on('error', () => {})
    this.client.defineCommand('jrSpoolApply', { lua: SPOOL_APPLY_LUA, numberOfKeys: 4 })
    this.client.defineCommand('jrMemberAcquire', { lua: ACQUIRE_LUA, numberOfKeys: 1 })
    this.client.defineCommand('jrMemberRelease', { lua: RELEASE_LUA, numberOfKeys: 1 })
    this.client.defineCommand('jrRemoveAdopted', { lua: REMOVE_ADOPTED_LUA, numberOfKeys: 2 })
    this.client.defineCommand('jrAbsorb', { lua: ABSORB_LUA, numberOfKeys: 1 })
    // The number of keys varies: one per operation of the call.
    this.client.defineCommand('jrLimitGrant', { lua: LIMIT_GRANT_LUA })
    this.scripts = this.client as unknown as GroupScripts
  }

  async connect(): Promise<void> {
    try {
      await this.guard.run(() => connectClient(this.client))
    } catch (err) {
      dropClient(this.client)
      throw new StoreError(
        `cannot reach redis at ${this.label} for distributor group '${this.group}': ${messageOf(err)}`,
        {
          cause: err,
        },
      )
    }
    this.open = true
  }

  member(name: string): MemberKeys {
    return memberKeys(this.group, name, this.prefix)
  }

  /**
   * Applies one batch of spool operations (see SPOOL_APPLY_LUA) to `name`'s spool, with the
   * unique keys they claim and release: resolves the claims that did not simply hold.
   */
  async applySpool(name: string, ops: Buffer): Promise<ClaimAnswer[]> {
    const { unique, uniqueIds, uniqueTtl } = this.keys
    const flat = await this.call('spool write', () =>
      this.scripts.jrSpoolApply(this.member(name).spool, unique, uniqueIds, uniqueTtl, ops, name),
    )
    return parseClaimAnswers(flat)
  }

  /** Reads `name`'s spool a page at a time: `page` gets each page's (id, record) pairs. */
  async readSpool(name: string, page: (entries: [string, Buffer][]) => void): Promise<void> {
    const key = this.member(name).spool
    let cursor = '0'
    do {
      const [next, flat] = await this.call('spool read', () =>
        this.client.hscanBuffer(key, cursor, 'COUNT', SCAN_COUNT),
      )
      cursor = String(next)
      const entries: [string, Buffer][] = []
      for (let i = 0; i + 1 < flat.length; i += 2) entries.push([(flat[i] as Buffer).toString(), flat[i + 1] as Buffer])
      page(entries)
    } while (cursor !== '0')
  }

  spoolSize(name: string): Promise<number> {
    return this.call('spool size', () => this.client.hlen(this.member(name).spool))
  }

  /**
   * Removes `ids` from gone member `name`'s spool while `token` holds its lease (renewing it
   * for `ttlMs`), in calls of REMOVE_COUNT ids. Resolves false, leaving the rest in place,
   * as soon as the lease is not `token`'s (see REMOVE_ADOPTED_LUA).
   */
  async removeAdopted(name: string, token: string, ttlMs: number, ids: readonly string[]): Promise<boolean> {
    const { spool, lease } = this.member(name)
    const ttl = String(Math.ceil(ttlMs))
    // One call at least: with no ids, it still says whether the lease is held.
    for (let at = 0; at === 0 || at < ids.length; at += REMOVE_COUNT) {
      const chunk = ids.slice(at, at + REMOVE_COUNT)
      const held = await this.call('spool remove', () =>
        this.scripts.jrRemoveAdopted(spool, lease, token, ttl, ...chunk),
      )
      if (held !== 1) return false
    }
    return true
  }

  /** Takes or renews `name`'s lease for `token`; resolves the holder after the call and, when another holds it, that lease's ms left. */
  async acquire(name: string, token: string, ttlMs: number): Promise<{ holder: string; pttl: number }> {
    const [holder, pttl] = await this.call('lease', () =>
      this.scripts.jrMemberAcquire(this.member(name).lease, token, String(Math.ceil(ttlMs))),
    )
    return { holder, pttl: Number(pttl) }
  }

  release(name: string, token: string): Promise<void> {
    return this.call('lease release', () => this.scripts.jrMemberRelease(this.member(name).lease, token)).then(
      () => undefined,
    )
  }

  async members(): Promise<Map<string, MemberEntry>> {
    const raw = await this.call('registry read', () => this.client.hgetall(this.keys.members))
    const out = new Map<string, MemberEntry>()
    for (const [name, json] of Object.entries(raw)) {
      const record = parseMember(json)
      if (record !== undefined) out.set(name, record)
    }
    return out
  }

  async readMember(name: string): Promise<MemberEntry | undefined> {
    const json = await this.call('registry read', () => this.client.hget(this.keys.members, name))
    return json === null ? undefined : parseMember(json)
  }

  /** Writes `name`'s registry entry and tells the nodes watching the group. */
  async register(name: string, record: MemberEntry, announce: boolean): Promise<void> {
    await this.call('registry write', () => this.client.hset(this.keys.members, name, encodeMemberEntry(record)))
    if (announce) await this.announce(name)
  }

  /** `adopter` took `gone` over: resolves the adopter's record after the change. */
  async absorb(adopter: string, gone: string, record: MemberEntry): Promise<MemberEntry> {
    const json = await this.call('registry absorb', () =>
      this.scripts.jrAbsorb(this.keys.members, adopter, gone, encodeMemberEntry(record)),
    )
    await this.announce(adopter)
    return parseMember(json) ?? record
  }

  /** Sends a cancel message to every member (see GroupCancels). */
  publishCancel(message: string): Promise<void> {
    return this.call('cancel publish', () => this.client.publish(this.keys.cancels, message)).then(() => undefined)
  }

  /** Hears the cancel messages of the group (this member's own included), on a connection of its own. */
  subscribeCancels(onMessage: (message: string) => void): Promise<void> {
    return this.listen('cancel subscribe', this.keys.cancels, onMessage)
  }

  /** Tells the other members that a job pushed back (see GroupPauses). */
  publishPause(message: string): Promise<void> {
    return this.call('pause publish', () => this.client.publish(this.keys.pauses, message)).then(() => undefined)
  }

  /** Job names an operator paused for the group. */
  pausedNames(): Promise<string[]> {
    return this.call('paused read', () => this.client.smembers(this.keys.paused))
  }

  /** Pauses (or resumes) job name `name` for the group, then publishes `message` (see GroupPauses). */
  async setPaused(name: string, paused: boolean, message: string): Promise<void> {
    const key = this.keys.paused
    await this.call('paused write', () => (paused ? this.client.sadd(key, name) : this.client.srem(key, name)))
    await this.publishPause(message)
  }

  /** Hears the pauses of the group (this member's own included). */
  subscribePauses(onMessage: (message: string) => void): Promise<void> {
    return this.listen('pause subscribe', this.keys.pauses, onMessage)
  }

  /**
   * One call of `holder`'s limit operations (limit-scripts.ts): slots and starts asked for or
   * given back; resolves one answer per operation, in order. `holder` is the lease token of
   * the member's process: what it holds counts while its member's lease holds that token.
   */
  async grantLimits(holder: string, ops: readonly LimitOp[]): Promise<LimitAnswer[]> {
    const { keys, packed } = encodeLimitOps(this.keys.base, ops)
    const leasePrefix = `${this.keys.base}lease:`
    const flat = await this.call('limit grant', () =>
      this.scripts.jrLimitGrant(keys.length, ...keys, holder, leasePrefix, packed),
    )
    return decodeLimitAnswers(flat)
  }

  /** Tells the other members that `member` gave slots of `scopes` back, or began or stopped waiting for some. */
  publishSlots(member: string, scopes: readonly string[]): Promise<void> {
    const message = `${member}\n${scopes.join('\n')}`
    return this.call('slots publish', () => this.client.publish(this.keys.slots, message)).then(() => undefined)
  }

  /** Hears the scopes of the slots messages of other members than `member` (see publishSlots). */
  subscribeSlots(member: string, onScope: (scope: string) => void): Promise<void> {
    return this.listen('slots subscribe', this.keys.slots, (message) => {
      const [from, ...scopes] = message.split('\n')
      if (from !== member) for (const scope of scopes) onScope(scope)
    })
  }

  /**
   * Subscribes to `channel` on the connection in subscriber mode (one for every channel,
   * made and connected by the first call). `onMessage` is set before the SUBSCRIBE goes, so
   * that a message arriving with its reply is heard; a call made again after a failure
   * replaces it rather than adding a second.
   */
  private async listen(what: string, channel: string, onMessage: (message: string) => void): Promise<void> {
    let subscriber = this.subscriber
    if (subscriber === undefined) {
      // Both kinds of client duplicate themselves; their signatures differ only in options not given here.
      subscriber = this.subscriber = (this.client as Redis).duplicate()
      subscriber.on('error', () => {})
      subscriber.on('message', (from: string, message: string) => this.channels.get(from)?.(message))
    }
    this.channels.set(channel, onMessage)
    const connection = subscriber
    await this.call(what, async () => {
      if (connection.status === 'wait') await connectClient(connection)
      await connection.subscribe(channel)
    })
  }

  announce(name: string): Promise<void> {
    return this.call('registry announce', () => this.client.publish(this.keys.events, name)).then(() => undefined)
  }

  async close(): Promise<void> {
    this.open = false
    await quitClient(this.client)
    if (this.subscriber !== undefined) dropClient(this.subscriber)
  }

  private async call<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await this.guard.run(run)
    } catch (err) {
      throw new StoreError(`distributor group '${this.group}': ${what} failed at ${this.label}: ${messageOf(err)}`, {
        cause: err,
      })
    }
  }
}

function parseMember(json: string): MemberEntry | undefined {
  const parsed = parseMemberEntry(json)
  return parsed.ok ? parsed.entry : undefined
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
