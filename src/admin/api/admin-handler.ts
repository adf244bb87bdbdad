import type { IncomingMessage, ServerResponse } from 'node:http'
import { InvalidArgumentError, NodeTimeoutError, NodeUnavailableError, coerceError } from '../../errors.js'
import type { AdminRequest, AdminResultMessage, NodeJobKind } from '../../protocol/messages.js'
import { HttpErrorCode, sendError, type RequestHandler } from '../http.js'
import type { AdminChange, AdminContext } from './admin-context.js'
import { EventStream } from './event-stream.js'
import { HttpProblem, checkSameSite, intParam, readJsonBody } from './request.js'
import {
  failureView,
  jobView,
  nodeJobView,
  nodeRecordView,
  nodesView,
  overviewView,
  pendingJobView,
  routesView,
  toJson,
} from './views.js'

/** The actions of the admin API: each is refused unless `authorize` allows it. */
export const ADMIN_ACTIONS = ['cancel', 'retry', 'quiet', 'pause', 'resume'] as const
export type AdminActionName = (typeof ADMIN_ACTIONS)[number]

/**
 * What a request would do, as `authorize` sees it: reading (`what` names the resource), or
 * acting (`name` the action, `target` the job id, node or job name it acts on).
 */
export type AdminAction = { kind: 'read'; what: string } | { kind: 'act'; name: AdminActionName; target: string }

export interface AdminHandlerOptions {
  /**
   * Decides every request: true lets it through, false answers 403. Reading and acting are
   * told apart by `action.kind`. @default reading allowed, acting refused
   */
  authorize?: (req: IncomingMessage, action: AdminAction) => boolean | Promise<boolean>
  /** How often the live stream (`api/events`) sends the overview, in ms. @default 1000 */
  eventIntervalMs?: number
}

/** The admin handler, and what ends its live streams (the distributor's close calls it). */
export interface AdminHandler extends RequestHandler {
  close(): void
}

/** Serves the dashboard's pages; false when `path` is none of them. */
export type PageServer = (req: IncomingMessage, res: ServerResponse, path: string) => boolean

export const DEFAULT_EVENT_INTERVAL_MS = 1000
/** The largest page the API serves at once: a million held jobs never travel together. */
export const MAX_PAGE = 500
const DEFAULT_PAGE = 50

function defaultAuthorize(_req: IncomingMessage, action: AdminAction): boolean {
  return action.kind === 'read'
}

interface Route {
  method: 'GET' | 'POST'
  /** Path segments after `api/`; ':x' matches one segment and names it. */
  pattern: string[]
  run(call: Call): Promise<unknown> | unknown
}

/** One request as a route sees it. */
interface Call {
  req: IncomingMessage
  res: ServerResponse
  params: Record<string, string>
  query: URLSearchParams
}

/**
 * The admin API over `ctx` (docs/admin.md): JSON under `api/`, live events at `api/events`,
 * and the dashboard's pages (`pages`) everywhere else. Paths are relative to wherever the
 * application mounts it. Every request passes `authorize` first; every action is also
 * checked for a cross-site origin; every error is a JSON body naming what is wrong.
 */
export function createAdminHandler(
  ctx: AdminContext,
  options: AdminHandlerOptions = {},
  pages: PageServer = () => false,
): AdminHandler {
  const { authorize, eventIntervalMs } = resolveAdminOptions(options)
  const stream = new EventStream(
    {
      after: (timer, ms) => ctx.after(timer, ms),
      cancelTimer: (timer) => ctx.cancelTimer(timer),
      overview: () => toJson(overviewView(ctx, Date.now())),
      nodes: () => toJson(nodesView(ctx)),
    },
    eventIntervalMs,
  )
  const unwatch = ctx.watch((change: AdminChange) => {
    if (change.type === 'nodes') stream.nodesChanged()
    else stream.broadcast('failure', toJson(failureView(change.failure)))
  })
  const routes = adminRoutes(ctx, stream)

  let closed = false
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (closed) throw new HttpProblem(503, HttpErrorCode.CLOSED, 'the distributor is closed')
    const url = new URL(req.url ?? '/', 'http://admin.invalid')
    const path = url.pathname.replace(/^\/+/, '')
    if (!path.startsWith('api/') && path !== 'api') {
      if (!(await authorized(req, { kind: 'read', what: 'dashboard' }))) return refuse(res, 'read the dashboard')
      if (redirectToSlash(req, res, path)) return
      if (!pages(req, res, path)) throw new HttpProblem(404, HttpErrorCode.NOT_FOUND, `no page at '/${clip(path)}'`)
      return
    }
    const segments = path.split('/').slice(1).map(decodeSegment)
    const { route, params, allowed } = match(routes, req.method ?? 'GET', segments)
    if (route === undefined) {
      if (allowed.length > 0) {
        throw new HttpProblem(
          405,
          HttpErrorCode.METHOD_NOT_ALLOWED,
          `${clip(req.method ?? '')} is not allowed on '/${clip(path)}' (use ${allowed.join(' or ')})`,
          { Allow: allowed.join(', ') },
        )
      }
      throw new HttpProblem(404, HttpErrorCode.NOT_FOUND, `no admin API at '/${clip(path)}'`)
    }
    const action = actionOf(route, params, segments)
    if (action.kind === 'act') checkSameSite(req)
    if (!(await authorized(req, action))) {
      return refuse(res, action.kind === 'read' ? `read ${action.what}` : `${action.name} ${action.target}`)
    }
    const body = await route.run({ req, res, params, query: url.searchParams })
    // The live stream answers by itself.
    if (body !== undefined) sendJson(res, 200, body)
  }

  const authorized = async (req: IncomingMessage, action: AdminAction): Promise<boolean> =>
    (await authorize(req, action)) === true

  const handler = ((req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => answerError(res, err))
  }) as AdminHandler
  handler.close = () => {
    closed = true
    unwatch()
    stream.close()
  }
  return handler
}

function resolveAdminOptions(options: AdminHandlerOptions): Required<AdminHandlerOptions> {
  if (typeof options !== 'object' || options === null) throw new InvalidArgumentError(`'options' must be an object`)
  for (const key of Object.keys(options)) {
    if (key !== 'authorize' && key !== 'eventIntervalMs') {
      throw new InvalidArgumentError(`unknown admin handler option '${key}' (expected 'authorize', 'eventIntervalMs')`)
    }
  }
  const { authorize = defaultAuthorize, eventIntervalMs = DEFAULT_EVENT_INTERVAL_MS } = options
  if (typeof authorize !== 'function') throw new InvalidArgumentError(`'authorize' must be a function`)
  if (!Number.isInteger(eventIntervalMs) || eventIntervalMs < 100 || eventIntervalMs > 60_000) {
    throw new InvalidArgumentError(`'eventIntervalMs' must be an integer in 100..60000, got ${String(eventIntervalMs)}`)
  }
  return { authorize, eventIntervalMs }
}

function adminRoutes(ctx: AdminContext, stream: EventStream): Route[] {
  const get = (pattern: string, run: Route['run']): Route => ({ method: 'GET', pattern: pattern.split('/'), run })
  const post = (pattern: string, run: Route['run']): Route => ({ method: 'POST', pattern: pattern.split('/'), run })
  return [
    get('overview', () => overviewView(ctx, Date.now())),
    get('nodes', () => nodesView(ctx)),
    get('pending', ({ query }) => pending(ctx, query)),
    get('failures', ({ query }) => ({
      failures: ctx.failures.list(intParam(query, 'limit', DEFAULT_PAGE, 1, MAX_PAGE)).map(failureView),
    })),
    get('events', ({ res }) => void stream.open(res)),
    get('jobs/:id', ({ params, query }) => job(ctx, params['id'] as string, query.get('node'))),
    get('nodes/:node/jobs', ({ params, query }) => nodeJobs(ctx, params['node'] as string, query)),
    post('jobs/:id/cancel', async ({ req, params }) => {
      await readJsonBody(req, [])
      const id = params['id'] as string
      return { id, cancelled: await ctx.cancel(id) }
    }),
    post('jobs/:id/retry', async ({ req, params }) => {
      const body = await readJsonBody(req, ['node'])
      return retry(ctx, params['id'] as string, optionalString(body, 'node'))
    }),
    post('nodes/:node/quiet', async ({ req, params }) => {
      const body = await readJsonBody(req, ['quiet'])
      const quiet = body['quiet'] ?? true
      if (typeof quiet !== 'boolean') throw badRequest(`'quiet' must be a boolean`)
      const node = params['node'] as string
      const result = await askNode(ctx, node, { op: 'quiet', quiet })
      return { node, quiet: result.quiet ?? quiet }
    }),
    post('names/:name/pause', async ({ req, params }) => setPaused(ctx, req, params['name'] as string, true)),
    post('names/:name/resume', async ({ req, params }) => setPaused(ctx, req, params['name'] as string, false)),
  ]
}

function match(
  routes: readonly Route[],
  method: string,
  segments: string[],
): { route?: Route; params: Record<string, string>; allowed: string[] } {
  const allowed: string[] = []
  for (const route of routes) {
    const params = matchPattern(route.pattern, segments)
    if (params === undefined) continue
    if (route.method === method) return { route, params, allowed }
    allowed.push(route.method)
  }
  return { params: {}, allowed }
}

function matchPattern(pattern: readonly string[], segments: readonly string[]): Record<string, string> | undefined {
  if (pattern.length !== segments.length) return undefined
  const params: Record<string, string> = {}
  for (let i = 0; i < pattern.length; i++) {
    const part = pattern[i] as string
    const segment = segments[i] as string
    if (part.startsWith(':')) {
      if (segment === '') return undefined
      params[part.slice(1)] = segment
    } else if (part !== segment) return undefined
  }
  return params
}

/** The action a matched route performs, for `authorize`. */
function actionOf(route: Route, params: Record<string, string>, segments: string[]): AdminAction {
  if (route.method === 'GET') return { kind: 'read', what: segments[0] ?? '' }
  const name = route.pattern[route.pattern.length - 1] as AdminActionName
  const target = params['id'] ?? params['node'] ?? params['name'] ?? ''
  return { kind: 'act', name, target }
}

async function pending(ctx: AdminContext, query: URLSearchParams): Promise<unknown> {
  const now = Date.now()
  const key = query.get('route')
  if (key === null) return routesView(ctx, now)
  const offset = intParam(query, 'offset', 0, 0, Number.MAX_SAFE_INTEGER)
  const limit = intParam(query, 'limit', DEFAULT_PAGE, 1, MAX_PAGE)
  for (const route of ctx.routes()) {
    if (route.key !== key) continue
    const { jobs, total } = route.page(offset, limit)
    const next = offset + jobs.length < total ? offset + jobs.length : null
    return { route: key, total, jobs: jobs.map((job) => pendingJobView(job, now)), next }
  }
  throw new HttpProblem(404, HttpErrorCode.NOT_FOUND, `no route '${clip(key)}' has jobs waiting`)
}

async function job(ctx: AdminContext, id: string, node: string | null): Promise<unknown> {
  const tracked = ctx.job(id)
  if (tracked !== undefined) {
    const view = jobView(tracked)
    const holder = view['node']
    // What only the node knows (attempt, last error, its status): asked, when it is connected.
    const session = typeof holder === 'string' && tracked.state === 'accepted' ? ctx.session(holder) : undefined
    if (session !== undefined) {
      try {
        const answer = await ctx.ask(session, { op: 'job', id })
        if (answer.job !== undefined) Object.assign(view, nodeRecordView(answer.job))
      } catch (err) {
        view['nodeError'] = coerceError(err).message
      }
    }
    return { job: view }
  }
  const failure = ctx.failures.get(id)
  const asked = node ?? failure?.node
  if (asked !== null && asked !== undefined && ctx.session(asked) !== undefined) {
    const answer = await askNode(ctx, asked, { op: 'job', id }, false)
    if (answer.job !== undefined) return { job: { ...nodeJobView(answer.job), state: 'held-by-node', node: asked } }
  }
  if (failure !== undefined) {
    const view = failureView(failure)
    return {
      job: {
        id,
        name: view.name,
        state: 'failed',
        node: view.node,
        run: view.run,
        lastError: view.error,
        args: view.args,
      },
    }
  }
  throw new HttpProblem(
    404,
    HttpErrorCode.NOT_FOUND,
    `no job '${clip(id)}' is known here${node === null ? '' : ` or on node '${clip(node)}'`}`,
  )
}

const NODE_JOB_KINDS: readonly NodeJobKind[] = ['running', 'scheduled', 'periodic', 'failed']

async function nodeJobs(ctx: AdminContext, node: string, query: URLSearchParams): Promise<unknown> {
  const kind = query.get('kind') ?? 'scheduled'
  if (!(NODE_JOB_KINDS as readonly string[]).includes(kind)) {
    throw badRequest(`'kind' must be one of ${NODE_JOB_KINDS.join(', ')}, got '${clip(kind)}'`)
  }
  const limit = intParam(query, 'limit', DEFAULT_PAGE, 1, MAX_PAGE)
  const cursor = query.get('cursor')
  const request: AdminRequest = { op: 'list', kind: kind as NodeJobKind, limit }
  if (cursor !== null) request.cursor = cursor
  const answer = await askNode(ctx, node, request)
  return { node, kind, jobs: (answer.jobs ?? []).map(nodeJobView), next: answer.next ?? null }
}

async function retry(ctx: AdminContext, id: string, node: string | undefined): Promise<unknown> {
  const target = node ?? ctx.failures.get(id)?.node
  if (target === undefined) {
    throw new HttpProblem(
      404,
      HttpErrorCode.NOT_FOUND,
      `no recent failure of job '${clip(id)}' is known here: name the node that keeps it ({ "node": "..." })`,
    )
  }
  // The distributor holds the job again as the answer is read (NodeRequests).
  await askNode(ctx, target, { op: 'retry', id })
  return { id, node: target, retried: true }
}

async function setPaused(ctx: AdminContext, req: IncomingMessage, name: string, paused: boolean): Promise<unknown> {
  await readJsonBody(req, [])
  ctx.setPaused(name, paused)
  return { name, paused }
}

/**
 * Asks `node`; a refusal in the answer becomes its HTTP status (`strict`), or is given back
 * for the caller to read.
 */
async function askNode(
  ctx: AdminContext,
  node: string,
  request: AdminRequest,
  strict = true,
): Promise<AdminResultMessage> {
  const session = ctx.session(node)
  if (session === undefined) {
    throw new HttpProblem(
      502,
      HttpErrorCode.NODE_UNAVAILABLE,
      `node '${clip(node)}' is not connected to this distributor`,
    )
  }
  const answer = await ctx.ask(session, request)
  if (answer.error !== undefined && strict) {
    const status =
      answer.error.code === HttpErrorCode.NOT_FOUND ? 404 : answer.error.code === HttpErrorCode.CONFLICT ? 409 : 502
    const code =
      status === 404
        ? HttpErrorCode.NOT_FOUND
        : status === 409
          ? HttpErrorCode.CONFLICT
          : HttpErrorCode.NODE_UNAVAILABLE
    throw new HttpProblem(status, code, `node '${node}': ${answer.error.message}`)
  }
  return answer
}

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const value = body[key]
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value === '') throw badRequest(`'${key}' must be a non-empty string`)
  return value
}

/**
 * A dashboard mounted at `/jr` must be read at `/jr/`: its pages name their assets and the
 * API relative to it. Express gives the path as requested in `originalUrl`.
 */
function redirectToSlash(req: IncomingMessage, res: ServerResponse, path: string): boolean {
  const original = (req as IncomingMessage & { originalUrl?: string }).originalUrl
  if (path !== '' || typeof original !== 'string') return false
  const [pathname, search] = original.split('?', 2)
  if (pathname === undefined || pathname.endsWith('/')) return false
  res.writeHead(308, { Location: `${pathname}/${search === undefined ? '' : `?${search}`}` })
  res.end()
  return true
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    throw badRequest(`the path segment '${clip(segment)}' is not valid percent-encoding`)
  }
}

function badRequest(message: string): HttpProblem {
  return new HttpProblem(400, HttpErrorCode.BAD_REQUEST, message)
}

function refuse(res: ServerResponse, what: string): void {
  sendError(
    res,
    403,
    HttpErrorCode.FORBIDDEN,
    `not allowed to ${clip(what)}${what.startsWith('read') ? '' : ' (acting is refused unless adminHandler({ authorize }) allows it)'}`,
  )
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = toJson(body)
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  })
  res.end(text)
}

function answerError(res: ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  if (err instanceof HttpProblem) return sendError(res, err.status, err.code, err.message, err.headers)
  if (err instanceof NodeUnavailableError) return sendError(res, 502, HttpErrorCode.NODE_UNAVAILABLE, err.message)
  if (err instanceof NodeTimeoutError) return sendError(res, 504, HttpErrorCode.NODE_TIMEOUT, err.message)
  sendError(res, 500, HttpErrorCode.INTERNAL, coerceError(err).message)
}

/** Echoed input, cut short: an error message never carries a megabyte of someone's URL. */
function clip(text: string): string {
  return text.length > 120 ? `${text.slice(0, 120)}…` : text
}
