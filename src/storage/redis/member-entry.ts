/**
 * One member's entry in its group's registry (`groupKeys(group).members`, field = member
 * name), as JSON: `{"advertise":"host:port","leaseUntil":<epoch ms>,"answers":["name",…]}`.
 * A member renews `leaseUntil` every third of its lease; one whose `leaseUntil` is in the
 * past is gone, and its entry stays until a live member adopts it (and lists it in
 * `answers`).
 */

import { parseHostPort } from '../../config.js'
import { InvalidArgumentError } from '../../errors.js'

export interface MemberEntry {
  /** The `host:port` nodes dial for this member. */
  readonly advertise: string
  /** Epoch ms until which the member is live. */
  readonly leaseUntil: number
  /** Gone members of the group whose spool this one adopted. */
  readonly answers: readonly string[]
}

/** An entry, or why it is not one (a hand-edited value, a member of another version). */
export type ParsedEntry = { ok: true; entry: MemberEntry; host: string; port: number } | { ok: false; reason: string }

export function parseMemberEntry(value: string): ParsedEntry {
  let raw: unknown
  try {
    raw = JSON.parse(value)
  } catch {
    return { ok: false, reason: 'not JSON' }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, reason: 'not a JSON object' }
  const { advertise, leaseUntil, answers = [] } = raw as Record<string, unknown>
  if (typeof leaseUntil !== 'number' || !Number.isFinite(leaseUntil)) {
    return { ok: false, reason: `'leaseUntil' is not a number: ${JSON.stringify(leaseUntil)}` }
  }
  if (!Array.isArray(answers) || !answers.every((a): a is string => typeof a === 'string')) {
    return { ok: false, reason: `'answers' is not a list of names: ${JSON.stringify(answers)}` }
  }
  let address: { host: string; port: number }
  try {
    address = parseHostPort('advertise', advertise)
  } catch (err) {
    if (!(err instanceof InvalidArgumentError)) throw err
    return { ok: false, reason: err.message }
  }
  return { ok: true, entry: { advertise: advertise as string, leaseUntil, answers }, ...address }
}

export function encodeMemberEntry(entry: MemberEntry): string {
  return JSON.stringify({ advertise: entry.advertise, leaseUntil: entry.leaseUntil, answers: entry.answers })
}

/** "A member whose leaseUntil is in the past is gone": the very millisecond still counts. */
export function isLive(entry: Pick<MemberEntry, 'leaseUntil'>, now: number): boolean {
  return entry.leaseUntil >= now
}
