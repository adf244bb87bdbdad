/**
 * What a distributor group looks like in Redis, as a library (`jr members` is one user): its
 * registered members, their leases, whom they answer for, and how much each has spooled. It
 * reads only; the distributors write the registry (see storage/redis/group-keys.ts).
 */

import { StoreError, StoreTimeoutError } from '../errors.js'
import { type Clock, systemClock } from '../scheduling/clock.js'
import { createClient, dropClient } from '../storage/redis/client.js'
import { groupKeys, memberKeys } from '../storage/redis/group-keys.js'
import { DEFAULT_KEY_PREFIX } from '../storage/redis/keys.js'
import { isLive, parseMemberEntry } from '../storage/redis/member-entry.js'
import { parseStorageUrl, redactUrl } from '../storage/redis/url.js'

/** The Redis reads a listing needs; an ioredis client (single or cluster) has them. */
export interface GroupReader {
  hgetall(key: string): Promise<Record<string, string>>
  hlen(key: string): Promise<number>
}

/** One registered member, as found. */
export interface MemberInfo {
  name: string
  /** The address nodes dial; undefined when the entry does not parse. */
  advertise: string | undefined
  /** Epoch ms; undefined when the entry does not parse. */
  leaseUntil: number | undefined
  /** Its lease has not run out: it is a member nodes dial. */
  live: boolean
  /** `leaseUntil - now`: ms left while live, minus how long ago it ran out once expired. */
  leaseMs: number | undefined
  /** Gone members whose spool it adopted. */
  answers: readonly string[]
  /** Jobs in its spool. */
  spool: number
  /** Why the entry does not parse, if it does not. */
  invalid: string | undefined
}

/** What `value` (a registry entry) says about member `name` at `now`; pure. */
export function memberInfo(name: string, value: string, spool: number, now: number): MemberInfo {
  const parsed = parseMemberEntry(value)
  if (!parsed.ok) {
    return {
      name,
      advertise: undefined,
      leaseUntil: undefined,
      live: false,
      leaseMs: undefined,
      answers: [],
      spool,
      invalid: parsed.reason,
    }
  }
  const { advertise, leaseUntil, answers } = parsed.entry
  return {
    name,
    advertise,
    leaseUntil,
    live: isLive(parsed.entry, now),
    leaseMs: leaseUntil - now,
    answers,
    spool,
    invalid: undefined,
  }
}

export class GroupAdmin {
  constructor(
    private readonly reader: GroupReader,
    private readonly prefix: string = DEFAULT_KEY_PREFIX,
    private readonly clock: Pick<Clock, 'now'> = systemClock,
  ) {}

  /** Every member registered in `group`, by name, with its spool's size. */
  async listMembers(group: string): Promise<MemberInfo[]> {
    const entries = Object.entries(await this.reader.hgetall(groupKeys(group, this.prefix).members))
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    // One key per member, in as many cluster slots: asked all at once.
    const spools = await Promise.all(
      entries.map(([name]) => this.reader.hlen(memberKeys(group, name, this.prefix).spool)),
    )
    const now = this.clock.now()
    return entries.map(([name, value], i) => memberInfo(name, value, spools[i] ?? 0, now))
  }
}

/**
 * A reader of the Redis at `url` for a command that runs once: it connects once (no retries)
 * and every call fails with StoreTimeoutError after `timeoutMs` without an answer, so that a
 * hung server ends the command instead of holding it.
 */
export async function openGroupReader(url: string, timeoutMs: number): Promise<GroupReader & { close(): void }> {
  const client = createClient(parseStorageUrl(url, 'redis url'), () => false)
  let lastError: Error | undefined
  client.on('error', (err: Error) => {
    lastError = err
  })
  const label = redactUrl(url)
  const bounded = <T>(promise: Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StoreTimeoutError(timeoutMs, 1)), timeoutMs)
    })
    return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
  }
  try {
    await bounded(client.connect())
  } catch (err) {
    dropClient(client)
    if (err instanceof StoreTimeoutError) throw err
    const cause = lastError ?? err
    throw new StoreError(`cannot reach redis at ${label}: ${(cause as Error).message ?? String(cause)}`, { cause })
  }
  return {
    hgetall: (key) => bounded(client.hgetall(key)),
    hlen: (key) => bounded(client.hlen(key)),
    close: () => dropClient(client),
  }
}
