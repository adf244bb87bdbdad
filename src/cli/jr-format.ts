/**
 * What `jr` prints: tables and `label  value` pairs for people, JSON for scripts, and the
 * messages that explain a refusal. Pure: every function returns the text, the caller writes it.
 */

import { inspect } from 'node:util'
import type {
  AdminFailure,
  AdminJob,
  AdminNode,
  AdminNodeJob,
  AdminNodeJobsPage,
  AdminOverview,
  AdminPendingPage,
  AdminRoute,
} from '../admin/admin-client.js'
import type { MemberInfo } from '../admin/group-admin.js'
import { type CancelResult, FINISHED_STATUSES, type PurgeResult, type RetryResult } from '../admin/store-admin.js'
import type { SerializedError } from '../errors.js'
import { decodeArgs } from '../protocol/args.js'
import type { FeedbackRecord, JobRecord, JobStatus } from '../storage/store.js'

/** How to print: for which node (messages name it), and JSON or text. */
export interface View {
  node: string
  json: boolean
}

type Refusal<R> = Extract<R, { ok: false }>

// --- output of each subcommand -------------------------------------------------------------

export function formatJobs(jobs: readonly JobRecord[], view: View, status: JobStatus | undefined): string {
  if (view.json) {
    const rows = jobs.map((j) => ({
      id: j.id,
      name: j.name,
      status: j.status,
      attempt: j.attempt,
      run: j.run,
      dueAt: iso(j.dueAt),
      period: j.period ?? null,
      lastError: j.lastError?.message ?? null,
    }))
    return `${JSON.stringify(rows, null, 2)}\n`
  }
  if (jobs.length === 0) return `no ${status === undefined ? '' : `${status} `}jobs for node '${view.node}'\n`
  return jobTable(jobs)
}

/** What a job listing shows of each job: a stored record, or what a live node tells. */
type ListedJob = Pick<
  AdminNodeJob,
  'id' | 'name' | 'status' | 'attempt' | 'run' | 'dueAt' | 'period' | 'cron' | 'tz' | 'lastError'
>

function jobTable(jobs: readonly ListedJob[]): string {
  return table(
    ['ID', 'NAME', 'STATUS', 'ATTEMPT', 'RUN', 'DUE AT', 'PERIOD', 'LAST ERROR'],
    jobs.map((j) => [
      j.id,
      j.name,
      j.status,
      String(j.attempt),
      String(j.run),
      iso(j.dueAt),
      schedule(j),
      j.lastError === undefined ? '-' : oneLine(j.lastError.message, 60),
    ]),
  )
}

/** A periodic job's period, or its cron expression and zone; '-' for a one-shot job. */
function schedule(job: Pick<ListedJob, 'period' | 'cron' | 'tz'>): string {
  if (job.period !== undefined) return `${job.period}s`
  if (job.cron === undefined) return '-'
  return `cron ${job.cron}${job.tz === undefined ? '' : ` (${job.tz})`}`
}

export function formatJob(job: JobRecord, view: View): string {
  let args: unknown
  let argsError: string | undefined
  try {
    args = decodeArgs(job.args)
  } catch (err) {
    argsError = `cannot decode ${job.args.length} bytes of msgpack: ${(err as Error).message}`
  }
  if (view.json) {
    const out = {
      ...job,
      args: argsError === undefined ? args : { error: argsError, base64: Buffer.from(job.args).toString('base64') },
      dueAt: iso(job.dueAt),
      runDueAt: iso(job.runDueAt),
      createdAt: iso(job.createdAt),
      failedAt: job.failedAt === undefined ? undefined : iso(job.failedAt),
    }
    return `${JSON.stringify(out, jsonSafe, 2)}\n`
  }
  return pairs([
    ['id', job.id],
    ['name', job.name],
    ['status', job.status],
    ['attempt', String(job.attempt)],
    ['run', String(job.run)],
    ['due at', iso(job.dueAt)],
    ['run due at', iso(job.runDueAt)],
    ['period', schedule(job)],
    ['defer', yesNo(job.defer)],
    ['max attempt', job.maxAttempt === undefined ? '- (node setting)' : String(job.maxAttempt)],
    ['retry', job.retry === undefined ? '- (node setting)' : JSON.stringify(job.retry)],
    ['timeout', job.timeout === undefined ? '-' : `${job.timeout}s`],
    ['distributor', job.distributor],
    ['created at', iso(job.createdAt)],
    ['failed at', job.failedAt === undefined ? '-' : iso(job.failedAt)],
    ['last error', job.lastError === undefined ? '-' : describeError(job.lastError)],
    ['progress', progressText(job.progress)],
    ['args', argsError ?? inspect(args, { depth: null, colors: false, breakLength: 80 })],
  ])
}

export function formatRetried(result: Extract<RetryResult, { ok: true }>, view: View): string {
  const { job, patch } = result
  if (view.json) {
    const { status, attempt, dueAt } = patch
    return `${JSON.stringify({ id: job.id, node: view.node, was: job.status, status, attempt, dueAt: iso(dueAt) })}\n`
  }
  return (
    `job '${job.id}' (${job.name}) on node '${view.node}': ${job.status} -> ${patch.status}, attempt ${patch.attempt}, due now.\n` +
    `It runs when node '${view.node}' next starts: restart the node if it is running.\n`
  )
}

export function formatCancelled(result: Extract<CancelResult, { ok: true }>, view: View): string {
  const { job, action } = result
  if (view.json) return `${JSON.stringify({ id: job.id, node: view.node, was: job.status, action })}\n`
  return (
    `job '${job.id}' (${job.name}) on node '${view.node}': ${job.status} -> ${action} in storage.\n` +
    `A running node that holds it is not told: cancel it through the distributor (handle.cancel()) for that.\n`
  )
}

export function formatPurged(status: JobStatus, result: Extract<PurgeResult, { ok: true }>, view: View): string {
  const { removed } = result
  if (view.json) return `${JSON.stringify({ node: view.node, status, removed })}\n`
  return `removed ${removed} ${status} job${removed === 1 ? '' : 's'} from node '${view.node}'\n`
}

export function formatFeedback(items: readonly FeedbackRecord[], view: View): string {
  if (view.json) {
    const rows = items.map((f) => ({
      jobId: f.jobId,
      run: f.run,
      kind: f.kind,
      final: f.final,
      cancelled: f.cancelled,
      distributor: f.distributor,
    }))
    return `${JSON.stringify(rows, null, 2)}\n`
  }
  if (items.length === 0) return `no unacknowledged feedback for node '${view.node}'\n`
  return table(
    ['JOB ID', 'RUN', 'KIND', 'FINAL', 'CANCELLED', 'DISTRIBUTOR'],
    items.map((f) => [f.jobId, String(f.run), f.kind, yesNo(f.final), yesNo(f.cancelled), f.distributor]),
  )
}

export function formatMembers(members: readonly MemberInfo[], group: string, json: boolean): string {
  if (json) {
    const rows = members.map((m) => ({
      name: m.name,
      advertise: m.advertise ?? null,
      live: m.live,
      leaseUntil: m.leaseUntil === undefined ? null : iso(m.leaseUntil),
      msLeft: m.live ? (m.leaseMs ?? null) : null,
      expiredMsAgo: !m.live && m.leaseMs !== undefined ? -m.leaseMs : null,
      answers: m.answers,
      spool: m.spool,
      invalid: m.invalid ?? null,
    }))
    return `${JSON.stringify(rows, null, 2)}\n`
  }
  if (members.length === 0) return `no members registered in group '${group}'\n`
  return table(
    ['NAME', 'ADVERTISE', 'LEASE', 'ANSWERS FOR', 'SPOOL'],
    members.map((m) => [
      m.name,
      m.advertise ?? '-',
      leaseState(m),
      m.answers.length === 0 ? '-' : m.answers.join(','),
      String(m.spool),
    ]),
  )
}

function leaseState(m: MemberInfo): string {
  if (m.invalid !== undefined) return `bad entry: ${oneLine(m.invalid, 60)}`
  const ms = m.leaseMs ?? 0
  return m.live ? `live, ${ms} ms left` : `expired ${-ms} ms ago`
}

// --- a live distributor (the admin API's answers) ------------------------------------------

/** What --json prints: the API's answer as it came. */
export function formatApiJson(body: unknown): string {
  return `${JSON.stringify(body, null, 2)}\n`
}

export function formatOverview(o: AdminOverview): string {
  const head = pairs([
    ['distributor', o.group === '' ? o.member : `${o.member} (group ${o.group})`],
    ['pending', String(o.pending)],
    ['active', String(o.active)],
    ['in flight', String(o.inFlight)],
    ['nodes', String(o.nodes)],
    ['spool', o.spoolUp === null ? '- (none)' : o.spoolUp ? 'up' : 'down'],
    ['recent failures', String(o.failures)],
  ])
  if (o.names.length === 0) return head
  const names = table(
    ['NAME', 'PENDING', 'OLDEST', 'ENQUEUED', 'DISPATCHED', 'SUCCESS', 'FAILED', 'CANCELLED', 'ORPHANS', 'PAUSED'],
    o.names.map((n) => [
      n.name,
      String(n.pending),
      n.pending === 0 ? '-' : duration(n.oldestPendingSeconds),
      String(n.enqueued),
      String(n.dispatched),
      String(n.success),
      String(n.failed),
      String(n.cancelled),
      String(n.orphans),
      yesNo(n.paused),
    ]),
  )
  return `${head}\n${names}`
}

export function formatNodes({ nodes }: { nodes: readonly AdminNode[] }): string {
  if (nodes.length === 0) return 'no nodes connected\n'
  return table(
    ['NAME', 'ADDRESS', 'STATE', 'IN FLIGHT', 'CONCURRENCY', 'WINDOW', 'DURABLE', 'CONNECTED SINCE', 'JOBS'],
    nodes.map((n) => [
      n.name,
      n.address,
      n.state,
      String(n.inFlight),
      String(n.concurrency),
      String(n.window),
      yesNo(n.durable),
      iso(n.connectedSince),
      n.jobs.join(','),
    ]),
  )
}

export function formatRoutes({ routes }: { routes: readonly AdminRoute[] }): string {
  if (routes.length === 0) return 'no pending jobs\n'
  // The route's key is the distributor's own: a person names a route by these columns.
  return table(
    ['NAME', 'NODE', 'NOT NODE', 'PENDING', 'OLDEST'],
    routes.map((r) => [r.name, r.node ?? '-', r.notNode ?? '-', String(r.pending), duration(r.oldestPendingSeconds)]),
  )
}

export function formatPendingPage(page: AdminPendingPage): string {
  if (page.jobs.length === 0) {
    return page.total === 0
      ? 'no pending jobs on this route\n'
      : `no pending jobs past that offset (${page.total} in all)\n`
  }
  const rows = table(
    ['ID', 'NAME', 'DUE AT', 'WAITING', 'ARGS'],
    page.jobs.map((j) => [
      j.id,
      j.name,
      iso(j.dueAt),
      duration(j.pendingSeconds),
      oneLine(JSON.stringify(j.args) ?? '-', 60),
    ]),
  )
  const more = page.next === null ? '' : `; next page: --offset ${page.next}`
  return `${rows}${page.jobs.length} of ${page.total} pending${more}\n`
}

export function formatLiveJob(job: AdminJob): string {
  return pairs([
    ['id', job.id],
    ['name', job.name],
    ['state', job.state],
    ['node', job.node ?? '-'],
    ['run', String(job.run)],
    ['due at', iso(job.dueAt)],
    ['period', schedule(job)],
    ['persisted', job.persisted === undefined ? '-' : yesNo(job.persisted)],
    ['status', job.status ?? '-'],
    ['attempt', job.attempt === undefined ? '-' : String(job.attempt)],
    ...(job.nodeError === undefined ? [] : [['node error', job.nodeError] as [string, string]]),
    ['last error', job.lastError === undefined ? '-' : describeError(job.lastError)],
    ['progress', progressText(job.progress)],
    ['args', inspect(job.args, { depth: null, colors: false, breakLength: 80 })],
  ])
}

export function formatNodeJobs(page: AdminNodeJobsPage): string {
  if (page.jobs.length === 0) return `no ${page.kind} jobs on node '${page.node}'\n`
  const more = page.next === null ? '' : `; next page: --cursor ${page.next}`
  return `${jobTable(page.jobs)}${page.jobs.length} ${page.kind} on node '${page.node}'${more}\n`
}

export function formatFailures({ failures }: { failures: readonly AdminFailure[] }): string {
  if (failures.length === 0) return 'no recent failures\n'
  return table(
    ['AT', 'ID', 'NAME', 'NODE', 'RUN', 'ERROR'],
    failures.map((f) => [
      iso(f.at),
      f.id,
      f.name,
      f.node,
      String(f.run),
      f.error === null ? '-' : oneLine(errorHead(f.error), 80),
    ]),
  )
}

export function formatLiveCancelled({ id }: { id: string }): string {
  return `job '${id}' cancelled\n`
}

export function formatLiveRetried({ id, node }: { id: string; node: string }): string {
  return `job '${id}' runs again now on node '${node}'\n`
}

export function formatQuiet({ node, quiet }: { node: string; quiet: boolean }): string {
  return quiet
    ? `node '${node}' is quiet: it takes no new jobs and finishes those it holds (undo: jr quiet ${node} --off)\n`
    : `node '${node}' takes new jobs again\n`
}

export function formatPaused({ name, paused }: { name: string; paused: boolean }): string {
  return paused
    ? `jobs named '${name}' stay pending at this distributor (undo: jr resume ${name})\n`
    : `jobs named '${name}' are dispatched again\n`
}

// --- refusals (one line each, without the `jr: ` prefix) -----------------------------------

export function notFound(id: string, node: string): string {
  return `no job '${id}' for node '${node}'`
}

export function retryRefused(id: string, refusal: Refusal<RetryResult>, node: string): string {
  if (refusal.reason === 'not found') return notFound(id, node)
  const why =
    refusal.reason === 'complete'
      ? 'it succeeded; enqueue it again to run it again'
      : 'it is unfinished already and the node runs or retries it itself'
  return `job '${id}' on node '${node}' is ${refusal.job.status}: not retried, ${why}`
}

export function cancelRefused(id: string, refusal: Refusal<CancelResult>, node: string): string {
  if (refusal.reason === 'not found') return notFound(id, node)
  return `job '${id}' on node '${node}' is ${refusal.job.status}, finished already: not cancelled`
}

export function liveCancelRefused(id: string, url: string): string {
  return `job '${id}' not cancelled: it had finished, or the distributor at ${url} does not know it`
}

export function noRoute(name: string, prefs: { node?: string; notNode?: string }, url: string): string {
  const node = prefs.node === undefined ? '' : `, node '${prefs.node}'`
  const notNode = prefs.notNode === undefined ? '' : `, notNode '${prefs.notNode}'`
  return `no jobs named '${name}'${node}${notNode} are pending at the distributor at ${url}`
}

export function purgeRefused(status: JobStatus): string {
  return (
    `'${status}' is an unfinished status: the node would resume those jobs; give --force to remove them anyway ` +
    `(finished statuses: ${FINISHED_STATUSES.join(', ')})`
  )
}

// --- layout --------------------------------------------------------------------------------

/** A job's last progress value on one line: a number as it is, a map as compact JSON. */
function progressText(value: unknown): string {
  if (value === undefined) return '-'
  return typeof value === 'number' ? String(value) : oneLine(JSON.stringify(value, jsonSafe), 200)
}

function yesNo(value: boolean): string {
  return value ? 'yes' : 'no'
}

/** ISO time, or the raw number when it is no valid date (a corrupt or hand-edited record). */
function iso(ms: number): string {
  const date = new Date(ms)
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString()
}

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim()
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat
}

/** Seconds as people read a wait: `42s`, `3m 05s`, `2h 10m`, `3d 4h`. */
function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds))
  const two = (n: number): string => String(n).padStart(2, '0')
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${two(s % 60)}s`
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${two(Math.floor((s % 3600) / 60))}m`
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`
}

function errorHead(error: SerializedError): string {
  return `${error.name}: ${error.message}${error.code === undefined ? '' : ` (${error.code})`}`
}

function describeError(error: SerializedError): string {
  const head = errorHead(error)
  // The stack repeats the head in its first line.
  const frames = error.stack?.split('\n').filter((line) => /^\s+at /.test(line)) ?? []
  return [head, ...frames.map((f) => f.trim())].join('\n')
}

/** Columns padded to their widest cell, two spaces apart; the last one is not padded. */
function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd()
  return `${[headers, ...rows].map(line).join('\n')}\n`
}

/** `label  value` lines; a multi-line value is indented under its first line. */
function pairs(rows: [string, string][]): string {
  const width = Math.max(...rows.map(([label]) => label.length))
  const indent = ' '.repeat(width + 2)
  return rows
    .map(([label, value]) => `${label.padEnd(width)}  ${value.split('\n').join(`\n${indent}`)}`)
    .join('\n')
    .concat('\n')
}

/** JSON for decoded args: bigint as a decimal string, bytes as base64. */
function jsonSafe(this: unknown, key: string, value: unknown): unknown {
  const raw = (this as Record<string, unknown>)[key]
  if (raw instanceof Uint8Array) return { base64: Buffer.from(raw).toString('base64') }
  if (typeof value === 'bigint') return value.toString()
  return value
}
