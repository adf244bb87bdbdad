import { describe } from '../../config.js'
import { InvalidArgumentError } from '../../errors.js'

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379'
const DEFAULT_REDIS_PORT = 6379

interface RedisAddress {
  host: string
  port: number
}

/** What a storage URL names; `parseStorageUrl` builds it. */
export type RedisTarget =
  | ({ kind: 'single'; db: number } & RedisAddress & RedisAuth)
  | ({ kind: 'cluster'; nodes: RedisAddress[] } & RedisAuth)

interface RedisAuth {
  tls: boolean
  username?: string
  password?: string
}

const SCHEMES: Record<string, { kind: RedisTarget['kind']; tls: boolean }> = {
  'redis:': { kind: 'single', tls: false },
  'rediss:': { kind: 'single', tls: true },
  'redis-cluster:': { kind: 'cluster', tls: false },
  'rediss-cluster:': { kind: 'cluster', tls: true },
}

/**
 * Parses `redis://[user:password@]host[:port][/db]` (`rediss://` for TLS) and
 * `redis-cluster://[user:password@]host:port,host:port` (`rediss-cluster://` for TLS).
 * Hand-written because WHATWG URL cannot hold a comma-separated host list. `what` names the
 * URL in error messages (the option it came from).
 */
export function parseStorageUrl(url: string, what = 'storage url'): RedisTarget {
  const shown = typeof url === 'string' ? JSON.stringify(redactUrl(url)) : String(url)
  const bad = (why: string): InvalidArgumentError => new InvalidArgumentError(`${what} ${shown} ${why}`)
  if (typeof url !== 'string') throw bad('must be a string')
  const sep = url.indexOf('://')
  const scheme = sep === -1 ? undefined : SCHEMES[url.slice(0, sep + 1).toLowerCase()]
  if (scheme === undefined) {
    throw bad('must start with redis://, rediss://, redis-cluster:// or rediss-cluster://')
  }
  const rest = url.slice(sep + 3)
  if (/[?#]/.test(rest)) throw bad('must not have a query or fragment')
  const slash = rest.indexOf('/')
  const authority = slash === -1 ? rest : rest.slice(0, slash)
  const path = slash === -1 ? '' : rest.slice(slash + 1)

  const auth: RedisAuth = { tls: scheme.tls }
  const at = authority.lastIndexOf('@')
  if (at !== -1) {
    const userinfo = authority.slice(0, at)
    const colon = userinfo.indexOf(':')
    const user = decodeURIComponent(colon === -1 ? userinfo : userinfo.slice(0, colon))
    if (user !== '') auth.username = user
    if (colon !== -1) auth.password = decodeURIComponent(userinfo.slice(colon + 1))
  }
  const hostList = authority.slice(at + 1)
  const nodes = hostList === '' ? [] : hostList.split(',').map((h) => parseAddress(h, bad))
  if (nodes.length === 0) throw bad('names no host')

  if (scheme.kind === 'cluster') {
    if (path !== '' && path !== '0') throw bad('cannot select a database: Redis Cluster has only db 0')
    return { kind: 'cluster', nodes, ...auth }
  }
  const [node] = nodes
  if (node === undefined || nodes.length > 1) {
    throw bad('names several hosts: use redis-cluster:// for Redis Cluster')
  }
  if (path !== '' && !/^\d{1,5}$/.test(path)) throw bad(`has database '${path}', not an integer`)
  return { kind: 'single', ...node, db: path === '' ? 0 : Number(path), ...auth }
}

function parseAddress(text: string, bad: (why: string) => InvalidArgumentError): RedisAddress {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d+))?$/.exec(text)
  if (m === null) throw bad(`has a bad host '${text}'`)
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!
  const port = m[2] === undefined ? DEFAULT_REDIS_PORT : Number(m[2])
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw bad(`has port ${m[2]}, not in 1..65535`)
  }
  return { host, port }
}

/** The URL with its password replaced, fit for messages and logs. */
export function redactUrl(url: string): string {
  const sep = url.indexOf('://')
  if (sep === -1) return url
  const rest = url.slice(sep + 3)
  const slash = rest.indexOf('/')
  const authority = slash === -1 ? rest : rest.slice(0, slash)
  const at = authority.lastIndexOf('@')
  if (at === -1) return url
  const userinfo = authority.slice(0, at)
  const colon = userinfo.indexOf(':')
  if (colon === -1) return url
  return `${url.slice(0, sep + 3)}${userinfo.slice(0, colon)}:***${rest.slice(at)}`
}

/**
 * An option that must be a Redis URL (a storage option's 'memory' is the caller's to handle,
 * `orMemory` only names it in the message): the whole URL is checked here, once, not when
 * the store first connects. Throws naming `field`.
 */
export function checkStorageUrl(field: string, value: unknown, orMemory = true): string {
  if (typeof value !== 'string' || !/^rediss?(-cluster)?:\/\//i.test(value)) {
    throw new InvalidArgumentError(
      `'${field}' must be ${orMemory ? "'memory', " : ''}'redis://…', 'rediss://…', 'redis-cluster://…' or 'rediss-cluster://…', got ${describe(value)}`,
    )
  }
  parseStorageUrl(value, `'${field}' url`)
  return value
}
