/**
 * Redis keys of a distributor group: its member registry, the channel its members announce
 * changes on, and each member's spool. Distributors with a Redis spool write them; nodes
 * (discovery) and `jr members` read them.
 *
 *   <prefix>group:{<group>}:members   hash member name → JSON MemberEntry (member-entry.ts)
 *   <prefix>group:{<group>}:events    channel: a member PUBLISHes its own name on every change
 *   <prefix>group:{<group>}:cancels   channel: cancels between members (GroupCancels)
 *   <prefix>group:{<group>}:pauses    channel: pauses between members: a job pushed back (ctx.rateLimit), an operator's pause (GroupPauses)
 *   <prefix>group:{<group>}:paused    set: job names an operator paused for the group
 *   <prefix>group:{<group>}:unique    hash unique scope (job name \0 key) → msgpack holder
 *   <prefix>group:{<group>}:unique-ids  hash job id → the scope it holds (a release by id)
 *   <prefix>group:{<group>}:unique-ttl  sorted set: throttled scopes by expiry (epoch ms)
 *   <prefix>group:{<group>}:spool:<name>  hash, one member's spooled jobs (HLEN is its size)
 *   <prefix>group:{<group>}:lease:<name>  string, the token of the process holding the name (expires)
 *   <prefix>group:{<group>}:slots:<scope> hash, a limit's slots: member name → slots it holds
 *   <prefix>group:{<group>}:rate:<scope>  sorted set, a rate's starts: `member:seq` scored by Redis time (ms)
 *   <prefix>group:{<group>}:slots      channel: a member gave slots back (the scopes, one a line)
 *
 * The group is the Redis Cluster hash tag of every key: WHY one slot for the whole group:
 * a unique key or a limit's slots are the group's, and the script that claims a key must
 * also spool the job (one atomic step, one round trip), and the one that grants a slot must
 * see which members' leases still run. A group is one application's distributors: one
 * Redis shard carries it (docs/redis.md, Cluster). Braces are refused in the group, the
 * name and the prefix, as in keys.ts: a brace would move the hash tag.
 */

import { InvalidArgumentError } from '../../errors.js'
import { DEFAULT_KEY_PREFIX } from './keys.js'

export interface GroupKeys {
  /** Hash: member name → JSON entry (advertise, leaseUntil, answers). */
  readonly members: string
  /** Pub/sub channel: a member publishes its own name whenever its entry changes. */
  readonly events: string
  /** Pub/sub channel: cancels between members. */
  readonly cancels: string
  /** Pub/sub channel: pauses of a job name or key between members (GroupPauses). */
  readonly pauses: string
  /** Set: job names an operator paused for the group (read by a member as it joins). */
  readonly paused: string
  /** Hash: unique scope → the job holding it (spool-script.ts). */
  readonly unique: string
  /** Hash: job id → the unique scope it holds. */
  readonly uniqueIds: string
  /** Sorted set: throttled unique scopes, scored by when they expire. */
  readonly uniqueTtl: string
  /** Pub/sub channel: a member gave slots of limits back (GroupLimits). */
  readonly slots: string
  /** What every key of the group starts with (a limit's keys are built from it). */
  readonly base: string
}

export function groupKeys(group: string, prefix: string = DEFAULT_KEY_PREFIX): GroupKeys {
  checkPart('group', group)
  checkPrefix(prefix)
  const base = `${prefix}group:{${group}}:`
  return {
    members: `${base}members`,
    events: `${base}events`,
    cancels: `${base}cancels`,
    pauses: `${base}pauses`,
    paused: `${base}paused`,
    unique: `${base}unique`,
    uniqueIds: `${base}unique-ids`,
    uniqueTtl: `${base}unique-ttl`,
    slots: `${base}slots`,
    base,
  }
}

/**
 * A limit's scope (limits.ts): its job name, and with perKey the key. The name's length
 * comes first so that no name and key run together into another's (`a:b` + key `c` is not
 * `a` + key `b:c`). Built into the keys `slots:<scope>` and `rate:<scope>`.
 */
export function limitScope(name: string, key: string | undefined): string {
  return key === undefined ? `${name.length}:${name}` : `${name.length}:${name}:${key}`
}

export interface MemberKeys {
  /** Hash: job id → spool record. */
  readonly spool: string
  /** String: the token of the process holding the name; expires unless renewed. */
  readonly lease: string
}

/** The keys of member `name` of `group`, in the group's slot. */
export function memberKeys(group: string, name: string, prefix: string = DEFAULT_KEY_PREFIX): MemberKeys {
  checkPart('group', group)
  checkPart('name', name)
  checkPrefix(prefix)
  const base = `${prefix}group:{${group}}:`
  return { spool: `${base}spool:${name}`, lease: `${base}lease:${name}` }
}

function checkPart(field: string, value: unknown): void {
  if (typeof value !== 'string' || value.length === 0 || /[{}]/.test(value)) {
    throw new InvalidArgumentError(
      `'${field}' must be a non-empty string without '{' or '}', got ${JSON.stringify(value) ?? String(value)}`,
    )
  }
}

function checkPrefix(prefix: unknown): void {
  if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
    throw new InvalidArgumentError(`'prefix' must be a string without '{' or '}', got ${JSON.stringify(prefix)}`)
  }
}
