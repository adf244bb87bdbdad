import { retryPatch } from '../admin/store-admin.js'
import { InvalidArgumentError, coerceError } from '../errors.js'
import type { AdminRequest, AdminResultMessage, NodeJobKind, NodeJobView } from '../protocol/messages.js'
import { MessageType } from '../protocol/messages.js'
import { isScheduled } from '../scheduling/cron.js'
import { type JobPage, type JobRecord, JobStatus, type Store, failedJobsPage } from '../storage/store.js'
import { type LiveJob, type LiveJobs, liveJobOf } from './live-jobs.js'

/** What answering an operator needs of its node. */
export interface NodeAdminContext {
  store(): Store
  now(): number
  /** Puts a job on its timer, or in the ready queue when it is due. */
  schedule(job: LiveJob): void
  /** Takes no new jobs (true) or takes them again; resolves the node's quiet state after it. */
  quiet(quiet: boolean): boolean
}

/** The codes of an ADMIN_RESULT's error (the admin API turns them into HTTP statuses). */
export const AdminResultCode = {
  NOT_FOUND: 'ERR_NOT_FOUND',
  CONFLICT: 'ERR_CONFLICT',
  FAILED: 'ERR_ADMIN_FAILED',
} as const

/** The answer's fields beyond `type` and `req`. */
export type AdminAnswer = Omit<AdminResultMessage, 'type' | 'req'>

/** An answer, and what is done once it is sent. */
interface Handled {
  answer: AdminAnswer
  afterSent?: () => void
}

/**
 * Answers the requests an operator sends through a distributor's admin API: a page of this
 * node's jobs, one job, a retry of a failed job now, quiet. Only the node knows the jobs it
 * holds (their timers, attempts, last errors) and the failed ones it keeps, so the
 * distributor asks instead of keeping copies.
 *
 * Pages of held jobs are offsets into the node's table in its own order, one pass per page:
 * a listing of a million held jobs costs a walk of them, never a copy or a sort, and never
 * travels at once. Pages of failed jobs are the store's (Store.listFailedPage), with its
 * cursor.
 */
export class NodeAdmin {
  constructor(
    private readonly ctx: NodeAdminContext,
    private readonly live: LiveJobs<LiveJob>,
  ) {}

  /**
   * Sends the ADMIN_RESULT for `request` through `send`, then carries out what must follow
   * the answer; never rejects (a failure is the answer's error).
   */
  async answer(
    req: number,
    request: AdminRequest,
    asker: string,
    send: (result: AdminResultMessage) => void,
  ): Promise<void> {
    let handled: Handled
    try {
      handled = await this.handle(request, asker)
    } catch (err) {
      handled = { answer: { error: { code: AdminResultCode.FAILED, message: coerceError(err).message } } }
    }
    send({ type: MessageType.ADMIN_RESULT, req, ...handled.answer })
    handled.afterSent?.()
  }

  private async handle(request: AdminRequest, asker: string): Promise<Handled> {
    switch (request.op) {
      case 'list':
        return { answer: await this.list(request.kind, request.cursor, request.limit) }
      case 'job':
        return { answer: await this.job(request.id) }
      case 'retry':
        return this.retry(request.id, asker)
      case 'quiet':
        return { answer: { quiet: this.ctx.quiet(request.quiet) } }
      default: {
        const never: never = request
        throw new Error(`unhandled admin request ${String(never)}`)
      }
    }
  }

  private async list(kind: NodeJobKind, cursor: string | undefined, limit: number): Promise<AdminAnswer> {
    if (kind === 'failed') return this.failedPage(cursor, limit)
    const offset = cursor === undefined ? 0 : Number(cursor)
    if (!Number.isInteger(offset) || offset < 0) return badCursor()
    const jobs: NodeJobView[] = []
    let index = 0
    let next: string | undefined
    const wanted = HELD_KINDS[kind]
    this.live.each((job) => {
      if (!wanted(job)) return true
      if (index++ < offset) return true
      if (jobs.length === limit) {
        next = String(offset + limit)
        return false
      }
      jobs.push(view(job, false))
      return true
    })
    return next === undefined ? { jobs } : { jobs, next }
  }

  /**
   * A page of the failed jobs the store keeps, read a page at a time (they pile up unless
   * removed); the cursor is the store's own.
   */
  private async failedPage(cursor: string | undefined, limit: number): Promise<AdminAnswer> {
    let page: JobPage
    try {
      page = await failedJobsPage(this.ctx.store(), cursor, limit)
    } catch (err) {
      if (err instanceof InvalidArgumentError) return badCursor()
      throw err
    }
    const jobs = page.jobs.map((job) => view(job, false))
    return page.next === undefined ? { jobs } : { jobs, next: page.next }
  }

  private async job(id: string): Promise<AdminAnswer> {
    const job = this.live.get(id) ?? (await this.ctx.store().getJob(id))
    if (job === undefined) return notFound(id)
    return { job: view(job, true) }
  }

  /**
   * A failed job kept in this node's store starts a new run at once, filed under the
   * distributor that asked (`asker`): that one holds the job again as it reads the answer
   * (NodeRequests), so the result goes where it is expected, not to another member, or to a
   * distributor that would take it for a re-sent copy of the failure it delivered. A new run,
   * not the same one again: its result is a new feedback (job, run). A cancelled job is not
   * retried: the application ended it (and a schedule would start again).
   */
  private async retry(id: string, asker: string): Promise<Handled> {
    const held = this.live.get(id)
    if (held !== undefined) {
      return {
        answer: { error: { code: AdminResultCode.CONFLICT, message: `job ${id} is ${held.status}, not failed` } },
      }
    }
    const store = this.ctx.store()
    const record = await store.getJob(id)
    if (record === undefined) {
      if (store.durable) return { answer: notFound(id) }
      const message = `no job ${id} on this node: on memory storage it keeps no finished job to retry`
      return { answer: { error: { code: AdminResultCode.NOT_FOUND, message } } }
    }
    if (record.status !== JobStatus.FAILED) {
      return {
        answer: { error: { code: AdminResultCode.CONFLICT, message: `job ${id} is ${record.status}, not failed` } },
      }
    }
    const now = this.ctx.now()
    const patch = { ...retryPatch(now), run: record.run + 1, runDueAt: now, distributor: asker }
    await store.updateJob(id, patch)
    // A retry of the same job may have raced this one through the awaits above.
    if (this.live.has(id)) return { answer: { job: view(this.live.get(id) as LiveJob, true) } }
    const job = liveJobOf(Object.assign(record, patch), store)
    this.live.add(job)
    // Scheduled once the answer is sent: the distributor holds the job again when it reads
    // the answer, and the run's result, on the same link, comes after it.
    return { answer: { job: view(job, true) }, afterSent: () => this.ctx.schedule(job) }
  }
}

/**
 * Which held jobs each listing shows: running (or due and waiting for a free slot), or
 * waiting for their time: periodic ones, or the rest (delayed, and retries in their backoff).
 */
const HELD_KINDS: Record<Exclude<NodeJobKind, 'failed'>, (job: LiveJob) => boolean> = {
  running: (job) => job.phase === 'running' || job.phase === 'queued',
  scheduled: (job) => job.phase === 'scheduled' && !isScheduled(job),
  periodic: (job) => job.phase === 'scheduled' && isScheduled(job),
}

function badCursor(): AdminAnswer {
  return { error: { code: AdminResultCode.CONFLICT, message: `'cursor' must be a cursor from a page before` } }
}

function notFound(id: string): AdminAnswer {
  return { error: { code: AdminResultCode.NOT_FOUND, message: `no job ${id} on this node` } }
}

/** `job`: held (its last progress value is known while held), or read from the store. */
function view(job: JobRecord & Pick<LiveJob, 'progress'>, withArgs: boolean): NodeJobView {
  const out: NodeJobView = {
    id: job.id,
    name: job.name,
    status: job.status,
    attempt: job.attempt,
    run: job.run,
    dueAt: job.dueAt,
  }
  if (job.period !== undefined) out.period = job.period
  if (job.cron !== undefined) out.cron = job.cron
  if (job.tz !== undefined) out.tz = job.tz
  if (job.lastError !== undefined) out.lastError = job.lastError
  if (withArgs) out.args = job.args
  if (job.progress !== undefined) out.progress = job.progress
  return out
}
