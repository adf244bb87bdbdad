import type { NodeSession } from '../../distributor/node-session.js'
import type { Failure } from '../../distributor/recent-failures.js'
import { holderOf, pendingSeconds, type TrackedJob } from '../../distributor/tracked-job.js'
import { decodeArgs } from '../../protocol/args.js'
import type { NodeJobView } from '../../protocol/messages.js'
import type { AdminContext } from './admin-context.js'

/**
 * The JSON the admin API answers with (docs/admin.md): pure functions of the distributor's
 * tables, so that each shape is written once and a unit test needs no server.
 */

/** Totals and per job name: what the dashboard's overview shows (rates are differences of two). */
export function overviewView(ctx: AdminContext, now: number) {
  const { pending, active } = ctx.counts()
  const oldest = ctx.oldestPendingSeconds()
  const paused = ctx.paused()
  const limited = ctx.limited()
  const names = []
  for (const stats of ctx.jobStats()) {
    names.push({
      name: stats.name,
      enqueued: stats.enqueued,
      dispatched: stats.dispatched,
      success: stats.succeeded,
      failed: stats.failed,
      cancelled: stats.cancelled,
      orphans: stats.orphans,
      pending: stats.pending,
      oldestPendingSeconds: oldest.get(stats.name) ?? 0,
      paused: paused.has(stats.name),
      limited: limited.get(stats.name)?.jobs ?? 0,
      limitedKeys: limited.get(stats.name)?.keys ?? 0,
    })
  }
  // A name paused before any job of it came.
  for (const name of paused) {
    if (!names.some((n) => n.name === name)) names.push({ ...EMPTY_NAME, name, paused: true })
  }
  let inFlight = 0
  const nodes = ctx.nodes()
  for (const session of nodes) inFlight += session.inFlight
  return {
    group: ctx.group,
    member: ctx.member,
    now,
    pending,
    active,
    inFlight,
    nodes: nodes.length,
    spoolUp: ctx.spoolUp() ?? null,
    failures: ctx.failures.count,
    names: names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
  }
}

const EMPTY_NAME = {
  enqueued: 0,
  dispatched: 0,
  success: 0,
  failed: 0,
  cancelled: 0,
  orphans: 0,
  pending: 0,
  oldestPendingSeconds: 0,
  limited: 0,
  limitedKeys: 0,
}

/** A node's state as an operator reads it: why it takes no jobs, when it does not. */
export function nodeState(session: NodeSession): string {
  if (session.unresponsive) return 'unresponsive'
  if (session.accepting) return 'accepting'
  return session.notAccepting ?? 'not-accepting'
}

export function nodeView(session: NodeSession) {
  return {
    name: session.name,
    address: session.connection.remote,
    durable: session.durable,
    jobs: [...session.jobs].sort(),
    concurrency: session.concurrency,
    window: session.window,
    inFlight: session.inFlight,
    connectedSince: session.connectedAt,
    accepting: session.accepting,
    state: nodeState(session),
  }
}

export function nodesView(ctx: AdminContext) {
  return { nodes: ctx.nodes().map(nodeView) }
}

/** Every route with jobs waiting: a route is the jobs of one name with the same node preferences. */
export function routesView(ctx: AdminContext, now: number) {
  const routes = []
  for (const route of ctx.routes()) {
    const waiting = route.length + (route.asideRoute?.length ?? 0)
    if (waiting === 0) continue
    const head = route.peek() ?? route.asideRoute?.peek()
    routes.push({
      route: route.key,
      name: route.name,
      node: route.node ?? null,
      notNode: route.notNode ?? null,
      pending: waiting,
      oldestPendingSeconds: head === undefined ? 0 : pendingSeconds(head.pendingSince, now),
    })
  }
  return { routes }
}

export function pendingJobView(job: TrackedJob, now: number) {
  return {
    id: job.id,
    name: job.name,
    dueAt: job.dueAt,
    pendingSeconds: pendingSeconds(job.pendingSince, now),
    args: decodeArgs(job.args),
  }
}

export function jobView(job: TrackedJob) {
  const view: Record<string, unknown> = {
    id: job.id,
    name: job.name,
    state: job.state,
    node: holderOf(job) ?? null,
    run: job.run,
    dueAt: job.dueAt,
    args: decodeArgs(job.args),
  }
  const { period, cron, tz } = job.opts
  if (period !== undefined) view['period'] = period
  if (cron !== undefined) view['cron'] = cron
  if (tz !== undefined) view['tz'] = tz
  // The last value that reached this distributor (kept beside the job, not on it).
  const progress = job.progress
  if (progress !== undefined) view['progress'] = progress
  return view
}

/** What a node said of one of its jobs, merged into the distributor's view of it. */
export function nodeRecordView(record: NodeJobView) {
  const view: Record<string, unknown> = {
    status: record.status,
    attempt: record.attempt,
    run: record.run,
    dueAt: record.dueAt,
  }
  if (record.period !== undefined) view['period'] = record.period
  if (record.cron !== undefined) view['cron'] = record.cron
  if (record.tz !== undefined) view['tz'] = record.tz
  if (record.lastError !== undefined) view['lastError'] = record.lastError
  if (record.progress !== undefined) view['progress'] = record.progress
  return view
}

/** A job a node listed (a page carries no args) or told of alone (with its args). */
export function nodeJobView(record: NodeJobView) {
  const view: Record<string, unknown> = { id: record.id, name: record.name, ...nodeRecordView(record) }
  if (record.args !== undefined) view['args'] = decodeArgs(record.args)
  return view
}

export function failureView(failure: Failure) {
  return {
    id: failure.id,
    name: failure.name,
    node: failure.node,
    at: failure.at,
    run: failure.run,
    error: failure.error ?? null,
    args: failure.args,
  }
}

/**
 * JSON of anything a job's args may hold (they are msgpack): binary as base64, a bigint as
 * its digits. Args are the caller's data, never trusted to be JSON as they are.
 */
export function toJson(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown) {
    // Buffer has a toJSON that runs before this; the holder still has the bytes.
    const original = key === '' ? v : this[key]
    if (original instanceof Uint8Array) return { $binary: Buffer.from(original).toString('base64') }
    if (typeof v === 'bigint') return v.toString()
    return v
  })
}
