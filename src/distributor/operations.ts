import type { AdminChange, AdminContext } from '../admin/api/admin-context.js'
import { createAdminHandler, type AdminHandler, type AdminHandlerOptions } from '../admin/api/admin-handler.js'
import { serveDashboard } from '../admin/dashboard/dashboard.js'
import type { RequestHandler } from '../admin/http.js'
import type { DistributorMetricsSource } from '../admin/metrics/distributor-metrics.js'
import { InvalidArgumentError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { AdminResultMessage, NodeJobView } from '../protocol/messages.js'
import type { Timer } from '../scheduling/timer-heap.js'
import type { NodeSession } from './node-session.js'
import { NodeRequests } from './node-requests.js'
import type { AnyRoute } from './pending-queue.js'
import { type Failure, RecentFailures } from './recent-failures.js'
import type { TrackedJob } from './tracked-job.js'

/** How long the admin API waits for a node's answer. */
const ADMIN_REQUEST_TIMEOUT_MS = 5000
const NODES_CHANGED: AdminChange = { type: 'nodes' }

/** What operating a distributor needs of it: its tables as they are, and its own actions. */
export interface OperationsContext {
  readonly log: Logger
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
  /** What the metrics read: the admin overview reads the same. */
  metricsSource(): DistributorMetricsSource
  counts(): { pending: number; active: number }
  nodes(): readonly NodeSession[]
  session(node: string): NodeSession | undefined
  routes(): Iterable<AnyRoute>
  job(id: string): TrackedJob | undefined
  cancel(id: string): Promise<boolean>
  /** Something changed that may let jobs move: a dispatch pass is due. */
  scheduleDispatch(): void
  /** `session`'s node runs failed job `job` again: the distributor holds it again. */
  retried(session: NodeSession, job: NodeJobView): void
  /** An operator paused (or resumed) job name `name` here: with a spool, so it is for the group. */
  pausedHere(name: string, paused: boolean): void
}

/**
 * What an operator sees and steers of a distributor (docs/admin.md): the admin handlers and
 * their live streams, the recent failures, paused job names, and the requests only a node
 * can answer. The distributor tells it what happens (node changes, failures, answers) and
 * reads `paused` in its dispatch pass.
 */
export class Operations {
  /** The last runs that failed for good: where a retry goes, and what the dashboard shows. */
  readonly failures = new RecentFailures()
  /** Job names an operator paused: their jobs wait at the distributor. */
  readonly paused = new Set<string>()
  private readonly requests: NodeRequests
  /** The admin handlers' live streams, told of node changes and failures. */
  private readonly watchers = new Set<(change: AdminChange) => void>()
  private readonly handlers = new Set<AdminHandler>()

  constructor(private readonly ctx: OperationsContext) {
    this.requests = new NodeRequests(
      { after: ctx.after, cancelTimer: ctx.cancelTimer, retried: ctx.retried },
      ADMIN_REQUEST_TIMEOUT_MS,
    )
  }

  /** A new admin handler (see Distributor.adminHandler); its live streams end at close(). */
  handler(options: AdminHandlerOptions): RequestHandler {
    const handler = createAdminHandler(this.adminContext(), options, serveDashboard)
    this.handlers.add(handler)
    return handler
  }

  /**
   * Pauses (true) or resumes dispatch of job name `name`: by an operator here (told to the
   * group), or, `fromGroup`, on another member of the group.
   */
  pause(name: string, paused: boolean, fromGroup = false): void {
    if (typeof name !== 'string' || name.length === 0)
      throw new InvalidArgumentError(`'name' must be a non-empty string`)
    if (paused) this.paused.add(name)
    else if (this.paused.delete(name)) this.ctx.scheduleDispatch()
    this.ctx.log.info({ job: name, fromGroup }, paused ? 'job name paused' : 'job name resumed')
    if (!fromGroup) this.ctx.pausedHere(name, paused)
  }

  /** A node reported a run that failed for good. */
  failed(failure: Failure): void {
    this.failures.add(failure)
    this.tell({ type: 'failure', failure })
  }

  /** A node connected, went away, or changed whether it takes jobs. */
  nodesChanged(): void {
    this.tell(NODES_CHANGED)
  }

  onResult(session: NodeSession, message: AdminResultMessage): void {
    this.requests.onResult(session, message)
  }

  /** `session`'s link dropped: what it was asked will not be answered. */
  linkLost(session: NodeSession): void {
    this.requests.drop(session)
    this.tell(NODES_CHANGED)
  }

  close(): void {
    for (const handler of this.handlers) handler.close()
  }

  private tell(change: AdminChange): void {
    for (const watcher of this.watchers) watcher(change)
  }

  private adminContext(): AdminContext {
    const { ctx } = this
    const source = ctx.metricsSource()
    return {
      ...source,
      get member() {
        return source.member
      },
      counts: ctx.counts,
      nodes: ctx.nodes,
      session: ctx.session,
      routes: ctx.routes,
      job: ctx.job,
      failures: this.failures,
      paused: () => this.paused,
      setPaused: (name, paused) => this.pause(name, paused),
      ask: (session, request) => this.requests.ask(session, request),
      cancel: ctx.cancel,
      watch: (listener) => {
        this.watchers.add(listener)
        return () => void this.watchers.delete(listener)
      },
      after: ctx.after,
      cancelTimer: ctx.cancelTimer,
    }
  }
}
