/**
 * A client of a live distributor's admin API (`distributor.adminHandler()`), for `jr --url`
 * and for scripts: one method per endpoint, the answers as the API sends them. Every
 * failure is one of two errors: AdminRequestError when the API answered with an error (its
 * status and its own code kept), AdminUnreachableError when nothing answered in time.
 */

import { AdminRequestError, AdminUnreachableError, InvalidArgumentError } from '../errors.js'
import type { SerializedError } from '../errors.js'
import type { NodeJobKind, NodeJobView } from '../protocol/messages.js'

export type { NodeJobKind }

/** @default 10000: a node asked over the protocol answers well within it, or the API says 504. */
export const DEFAULT_ADMIN_TIMEOUT_MS = 10_000

export interface AdminClientOptions {
  /**
   * Where the host application mounts `adminHandler()`: `http://127.0.0.1:3000/jr/`. A
   * missing trailing slash is added (the API's paths are relative to the mount point).
   */
  url: string
  /** Sent as `Authorization: Bearer <token>`, for the application's `authorize` hook. */
  token?: string | undefined
  /** Each request (answer and body) ends with AdminUnreachableError past this. @default 10000 */
  timeoutMs?: number | undefined
}

export interface AdminNode {
  name: string
  address: string
  durable: boolean
  jobs: string[]
  concurrency: number
  window: number
  inFlight: number
  /** Epoch ms. */
  connectedSince: number
  accepting: boolean
  /** `accepting`, or why it takes no jobs: `quiet`, `store-down`, `draining`, `leaving`, `unresponsive`. */
  state: string
}

export interface AdminNameStats {
  name: string
  enqueued: number
  dispatched: number
  success: number
  failed: number
  cancelled: number
  /** Results that came back for jobs this distributor no longer tracked. */
  orphans: number
  pending: number
  oldestPendingSeconds: number
  paused: boolean
  /** Of `pending`: jobs held back by the name's limit (slots taken or rate spent), and how many keys they wait under. */
  limited: number
  limitedKeys: number
}

export interface AdminOverview {
  group: string
  member: string
  now: number
  pending: number
  active: number
  inFlight: number
  nodes: number
  spoolUp: boolean | null
  names: AdminNameStats[]
  failures: number
}

export interface AdminRoute {
  /** The key `pendingJobs` takes. */
  route: string
  name: string
  node: string | null
  notNode: string | null
  pending: number
  oldestPendingSeconds: number
}

export interface AdminPendingJob {
  id: string
  name: string
  dueAt: number
  pendingSeconds: number
  args: unknown
}

export interface AdminPendingPage {
  route: string
  total: number
  jobs: AdminPendingJob[]
  next: number | null
}

export interface AdminJob {
  id: string
  name: string
  state: string
  node: string | null
  run: number
  dueAt: number
  period?: number
  cron?: string
  tz?: string
  args: unknown
  persisted?: boolean
  /** Asked of the node that holds the job, when one does. */
  status?: string
  attempt?: number
  lastError?: SerializedError
  /**
   * The job's last progress value: its node's (held, or kept in the record on Redis storage)
   * when it answers, else the last one that reached the distributor.
   */
  progress?: number | Record<string, unknown>
  /** Why the node holding it could not say (not connected, no answer in time). */
  nodeError?: string
}

export interface AdminFailure {
  id: string
  name: string
  node: string
  /** Epoch ms. */
  at: number
  run: number
  error: SerializedError | null
  args: unknown
}

/** A job as a node reports it (its args only in `api/jobs/ID`'s answer, decoded). */
export type AdminNodeJob = Omit<NodeJobView, 'args'>

export interface AdminNodeJobsPage {
  node: string
  kind: NodeJobKind
  jobs: AdminNodeJob[]
  next: string | null
}

type Query = Record<string, string | number | undefined>

export class AdminClient {
  private readonly base: URL
  private readonly token: string | undefined
  private readonly timeoutMs: number

  /** Throws InvalidArgumentError for a URL that is not http(s), or that carries credentials. */
  constructor(options: AdminClientOptions) {
    this.base = parseBaseUrl(options.url)
    if (options.token !== undefined && !/^[\x21-\x7e]+$/.test(options.token)) {
      // A header cannot carry it; fetch would fail with a message that does not say why.
      throw new InvalidArgumentError('the admin token must be printable ASCII without spaces')
    }
    this.token = options.token
    const timeoutMs = options.timeoutMs ?? DEFAULT_ADMIN_TIMEOUT_MS
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
      throw new InvalidArgumentError(`'timeoutMs' must be a positive integer (got ${timeoutMs})`)
    }
    this.timeoutMs = timeoutMs
  }

  /** The mount point requests go under, with its trailing slash. */
  get url(): string {
    return this.base.href
  }

  overview(): Promise<AdminOverview> {
    return this.request('GET', 'api/overview')
  }

  nodes(): Promise<{ nodes: AdminNode[] }> {
    return this.request('GET', 'api/nodes')
  }

  /** The pending jobs counted by route. */
  pending(): Promise<{ routes: AdminRoute[] }> {
    return this.request('GET', 'api/pending')
  }

  /**
   * The route of the jobs named `name` enqueued with these node preferences, when jobs wait
   * on it. A route's key is the distributor's own, not meant to be typed: a person names a
   * route by what it routes.
   */
  async findRoute(name: string, prefs: { node?: string; notNode?: string } = {}): Promise<AdminRoute | undefined> {
    const { routes } = await this.pending()
    const node = prefs.node ?? null
    const notNode = prefs.notNode ?? null
    return routes.find((r) => r.name === name && r.node === node && r.notNode === notNode)
  }

  /** One page of a route's pending jobs; `next` is the offset of the following page. */
  pendingJobs(route: string, page: { offset?: number; limit?: number } = {}): Promise<AdminPendingPage> {
    return this.request('GET', 'api/pending', { route, offset: page.offset, limit: page.limit })
  }

  /** A job this distributor holds or recently saw fail; else looked for on `node` when given. */
  job(id: string, node?: string): Promise<{ job: AdminJob }> {
    return this.request('GET', `api/jobs/${segment(id)}`, { node })
  }

  /** The recent final failures, newest first. */
  failures(limit?: number): Promise<{ failures: AdminFailure[] }> {
    return this.request('GET', 'api/failures', { limit })
  }

  /** One page of the jobs a node holds, asked of the node. */
  nodeJobs(
    node: string,
    kind: NodeJobKind,
    page: { cursor?: string; limit?: number } = {},
  ): Promise<AdminNodeJobsPage> {
    return this.request('GET', `api/nodes/${segment(node)}/jobs`, { kind, cursor: page.cursor, limit: page.limit })
  }

  cancel(id: string): Promise<{ id: string; cancelled: boolean }> {
    return this.request('POST', `api/jobs/${segment(id)}/cancel`, {}, {})
  }

  /** Runs a failed job again now, on the node that keeps it (or on `node`). */
  retry(id: string, node?: string): Promise<{ id: string; node: string; retried: true }> {
    return this.request('POST', `api/jobs/${segment(id)}/retry`, {}, node === undefined ? {} : { node })
  }

  /** `quiet: false` undoes it. */
  quiet(node: string, quiet = true): Promise<{ node: string; quiet: boolean }> {
    return this.request('POST', `api/nodes/${segment(node)}/quiet`, {}, { quiet })
  }

  pause(name: string): Promise<{ name: string; paused: boolean }> {
    return this.request('POST', `api/names/${segment(name)}/pause`, {}, {})
  }

  resume(name: string): Promise<{ name: string; paused: boolean }> {
    return this.request('POST', `api/names/${segment(name)}/resume`, {}, {})
  }

  private async request<T>(method: 'GET' | 'POST', path: string, query: Query = {}, body?: object): Promise<T> {
    const url = new URL(path, this.base)
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined) url.searchParams.set(key, String(value))
    }
    const what = `${method} ${url.href}`
    const headers: Record<string, string> = { Accept: 'application/json' }
    if (this.token !== undefined) headers['Authorization'] = `Bearer ${this.token}`
    if (body !== undefined) headers['Content-Type'] = 'application/json'
    let status: number
    let type: string
    let text: string
    let location: string | null
    try {
      // The signal also bounds reading the body: a server that sends headers and stalls
      // must not hold the command.
      const res = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
        // A redirect is reported, not followed: it would drop the token (another origin) or
        // turn a POST into a GET.
        redirect: 'manual',
      })
      status = res.status
      type = res.headers.get('content-type') ?? 'no content type'
      location = res.headers.get('location')
      text = await res.text()
    } catch (err) {
      throw unreachable(err, this.base.href, what, this.timeoutMs)
    }
    const json = parseJson(text, type)
    if (status >= 200 && status < 300 && json !== undefined) return json as T
    const error = errorBody(json)
    if (error !== undefined) throw new AdminRequestError(what, status, error.code, error.message)
    const detail =
      location === null
        ? `${type} rather than the admin API's JSON: is ${this.base.href} where adminHandler() is mounted?`
        : `a redirect to ${new URL(location, url).href}: use that URL`
    throw new AdminRequestError(what, status, undefined, detail)
  }
}

function parseBaseUrl(raw: string): URL {
  const like = 'like http://127.0.0.1:3000/jr/'
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new InvalidArgumentError(`admin URL '${raw}' is not a URL (${like})`)
  }
  // 'localhost:3000' parses, with 'localhost:' as its scheme.
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidArgumentError(`admin URL '${raw}' must start with http:// or https:// (${like})`)
  }
  if (url.username !== '' || url.password !== '') {
    throw new InvalidArgumentError(`admin URL '${url.host}' must not carry credentials: give a token instead`)
  }
  url.search = ''
  url.hash = ''
  // Relative paths resolve under the mount point only when it ends in a slash.
  if (!url.pathname.endsWith('/')) url.pathname += '/'
  return url
}

/** An id or name as one path segment: a '/' or '?' in it must not change the endpoint. */
function segment(value: string): string {
  return encodeURIComponent(value)
}

function parseJson(text: string, type: string): unknown {
  if (!/^application\/json\b/i.test(type)) return undefined
  try {
    return JSON.parse(text) as unknown
  } catch {
    return undefined
  }
}

function errorBody(json: unknown): { code: string; message: string } | undefined {
  const error = (json as { error?: { code?: unknown; message?: unknown } } | null)?.error
  if (typeof error?.code !== 'string' || typeof error.message !== 'string') return undefined
  return { code: error.code, message: error.message }
}

/** What fetch threw, as the reason nothing answered: its cause names it (ECONNREFUSED, ENOTFOUND). */
function unreachable(err: unknown, base: string, what: string, timeoutMs: number): AdminUnreachableError {
  if (err instanceof DOMException && err.name === 'TimeoutError') {
    return new AdminUnreachableError(`the admin API at ${base} answered nothing within ${timeoutMs} ms (${what})`, {
      cause: err,
    })
  }
  const cause = (err as { cause?: { message?: unknown; code?: unknown } } | null)?.cause
  let reason = typeof cause?.message === 'string' && cause.message !== '' ? cause.message : String(err)
  // Fetch refuses the ports browsers block (1, 25, 6000, ...) with just these words.
  if (reason === 'bad port') reason = 'fetch refuses that port (a port browsers block)'
  return new AdminUnreachableError(`cannot reach the admin API at ${base}: ${reason}`, { cause: err })
}
