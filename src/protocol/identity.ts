import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { parseHostPort } from '../config.js'
import { InvalidArgumentError } from '../errors.js'

/**
 * Who a distributor is, as nodes see it: a member `name` of an application's `group`. A
 * node files a job and its feedback under the identity of the distributor that sent it,
 * never under the address it dialled, so that a distributor that comes back at another
 * address (a new pod) still receives what is owed to it.
 */
export interface Identity {
  readonly group: string
  readonly name: string
}

export const DEFAULT_GROUP = 'default'

/**
 * Letters, digits and `. _ - : @ [ ]`: enough for pod names, host names and `host:port`
 * (IPv6 in brackets), while `/` (which joins group and name) and the braces of a Redis hash
 * tag (group and name make a spool's key) cannot occur.
 */
const IDENTITY_PART = /^[A-Za-z0-9._:@[\]-]+$/
const MAX_GROUP_LENGTH = 100
const MAX_NAME_LENGTH = 200

function checkPart(field: string, value: unknown, max: number): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max || !IDENTITY_PART.test(value)) {
    throw new InvalidArgumentError(
      `'${field}' must be 1..${max} characters of letters, digits and . _ - : @ [ ], got ${JSON.stringify(value) ?? String(value)}`,
    )
  }
  return value
}

export function checkGroup(field: string, value: unknown): string {
  return checkPart(field, value, MAX_GROUP_LENGTH)
}

export function checkMemberName(field: string, value: unknown): string {
  return checkPart(field, value, MAX_NAME_LENGTH)
}

/** A member name of its own for this process: the host name and a random suffix. */
export function generatedName(): string {
  const host =
    hostname()
      .replace(/[^A-Za-z0-9.-]/g, '-')
      .slice(0, 150) || 'distributor'
  return `${host}-${randomBytes(5).toString('hex')}`
}

/** The one string a node files by: `group/name` (neither part holds a `/`). */
export function identityKey(group: string, name: string): string {
  return `${group}/${name}`
}

/**
 * The `host:port` nodes should dial for a distributor listening at `host:port`: a wildcard
 * address is no address to dial, so the machine's host name stands in for it.
 */
export function defaultAdvertise(host: string, port: number): string {
  const dialable = host === '0.0.0.0' || host === '::' || host === '' ? hostname() : host
  return dialable.includes(':') ? `[${dialable}]:${port}` : `${dialable}:${port}`
}

/** `host:port` or `[v6]:port`, as a node dials it; throws naming `field` otherwise. */
export function checkAdvertise(field: string, value: unknown): string {
  parseHostPort(field, value)
  return value as string
}
