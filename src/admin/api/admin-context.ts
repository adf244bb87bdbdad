import type { NodeSession } from '../../distributor/node-session.js'
import type { AnyRoute } from '../../distributor/pending-queue.js'
import type { Failure, RecentFailures } from '../../distributor/recent-failures.js'
import type { TrackedJob } from '../../distributor/tracked-job.js'
import type { AdminRequest, AdminResultMessage } from '../../protocol/messages.js'
import type { Timer } from '../../scheduling/timer-heap.js'
import type { DistributorMetricsSource } from '../metrics/distributor-metrics.js'

/** What the admin API is told as it happens, for its live stream. */
export type AdminChange = { type: 'nodes' } | { type: 'failure'; failure: Failure }

/**
 * What the admin API reads and does through a distributor: the tables as they are (read
 * when a request comes, like the metrics), and the distributor's own actions. The admin
 * code never holds the distributor itself.
 */
export interface AdminContext extends DistributorMetricsSource {
  /** Jobs waiting for a node (counted against maxPending); jobs enqueued and unfinished. */
  counts(): { pending: number; active: number }
  nodes(): readonly NodeSession[]
  session(node: string): NodeSession | undefined
  routes(): Iterable<AnyRoute>
  job(id: string): TrackedJob | undefined
  readonly failures: RecentFailures
  paused(): ReadonlySet<string>
  setPaused(name: string, paused: boolean): void
  /** Asks `session`'s node; rejects with NodeUnavailableError or NodeTimeoutError. */
  ask(session: NodeSession, request: AdminRequest): Promise<AdminResultMessage>
  cancel(id: string): Promise<boolean>
  /** Calls `listener` on every change; returns what stops it. */
  watch(listener: (change: AdminChange) => void): () => void
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
}
