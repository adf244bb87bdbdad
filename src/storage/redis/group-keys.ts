/**
 * Redis keys of a distributor group: its member registry, the channel its members announce
 * changes on, and each member's spool. Distributors with a Redis spool write them; nodes
 * (discovery) and `jr members` read them.
 *
 *   <prefix>group:{<group>}:members   hash member name → JSON MemberEntry (member-entry.ts)
 *   <prefix>group:{<group>}:events    channel: a member PUBLISHes its own name on every change
 *   <prefix>group:{<group>}:cancels   channel: cancels between members (GroupCancels)
 *   <prefix>dist:{<group>/<name>}:spool  hash, one member's spooled jobs (HLEN is its size)
 *   <prefix>dist:{<group>/<name>}:lease  string, the token of the process holding the name (expires)
 *
 * The group is the Redis Cluster hash tag of the registry and its channel; a member's
 * spool is tagged with its identity (`group/name`), so that one member's spool lives in one
 * slot. Braces are refused in the group, the name and the prefix, as in keys.ts: a brace
 * would move the hash tag.
 */

import { InvalidArgumentError } from '../../errors.js'
import { identityKey } from '../../protocol/identity.js'
import { DEFAULT_KEY_PREFIX } from './keys.js'

export interface GroupKeys {
  /** Hash: member name → JSON entry (advertise, leaseUntil, answers). */
  readonly members: string
  /** Pub/sub channel: a member publishes its own name whenever its entry changes. */
  readonly events: string
  /** Pub/sub channel: cancels between members. */
  readonly cancels: string
}

export function groupKeys(group: string, prefix: string = DEFAULT_KEY_PREFIX): GroupKeys {
  checkPart('group', group)
  checkPrefix(prefix)
  const base = `${prefix}group:{${group}}:`
  return { members: `${base}members`, events: `${base}events`, cancels: `${base}cancels` }
}

export interface MemberKeys {
  /** Hash: job id → spool record. */
  readonly spool: string
  /** String: the token of the process holding the name; expires unless renewed. */
  readonly lease: string
}

/** The keys of member `name` of `group`: one slot, so that one script call writes a batch of its spool. */
export function memberKeys(group: string, name: string, prefix: string = DEFAULT_KEY_PREFIX): MemberKeys {
  checkPart('group', group)
  checkPart('name', name)
  checkPrefix(prefix)
  const base = `${prefix}dist:{${identityKey(group, name)}}:`
  return { spool: `${base}spool`, lease: `${base}lease` }
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
