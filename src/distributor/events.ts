import type { JobsError } from '../errors.js'
import type { JobArgsObject } from '../protocol/args.js'
import type { ProgressValue } from '../protocol/messages.js'

export interface DistributorEventMap {
  listening: { host: string; port: number }
  'node:connect': { node: string; jobs: string[]; concurrency: number; durable: boolean }
  'node:disconnect': { node: string; reason: JobsError | undefined }
  /** A connection that failed the handshake (bad version, failed auth, timeout). */
  'node:rejected': { remote: string; code: string; message: string }
  'job:enqueue': { id: string; name: string }
  /** `at`: the time (epoch ms) of the dispatch pass that gave it, the one its rate limit counts. */
  'job:dispatch': { id: string; name: string; node: string; at: number }
  'job:accepted': { id: string; name: string; node: string }
  /** No connected node knows the job's name: it waits until one that does connects. */
  'job:unroutable': { id: string; name: string }
  /**
   * A job of a limited name is next in line for its key (`key`: its `limitKey`, '' for
   * none) and the limit holds it back: its key's slots, or the name's, are taken. Once per job.
   */
  'job:limited': { id: string; name: string; key: string }
  /**
   * A job pushed back on its node (ctx.rateLimit): it runs there again after `seconds`, and
   * its name (or `key`, for a name limited per key; else '') dispatches nothing until `until` (epoch ms).
   */
  'job:rate-limited': { id: string; name: string; node: string; key: string; seconds: number; until: number }
  /**
   * A job of another member of the group pushed back (its `job:rate-limited` there): its
   * name (or `key`, for a name limited per key here; else '') dispatches nothing here until `until`.
   */
  'member:paused': { name: string; key: string; seconds: number; until: number }
  /** Job name `name` paused or resumed by an operator: here, or (`fromGroup`) on another member of the group. */
  'name:paused': { name: string; paused: boolean; fromGroup: boolean }
  /** Back to the queue: its node dropped before finishing it, or did not accept it in time. */
  'job:requeue': { id: string; name: string; node: string }
  /** A node left jobs unaccepted past `acceptTimeoutMs`: they were taken back; it gets none until it answers. */
  'node:unresponsive': { node: string; jobs: number }
  'job:success': { id: string; name: string; run: number; node: string; args: JobArgsObject }
  'job:failed': { id: string; name: string; run: number; node: string; args: JobArgsObject }
  'job:cancelled': { id: string; name: string }
  /** A job's progress (ctx.progress), coalesced by its node; `run`: the run that reported it. */
  'job:progress': { id: string; name: string; node: string; run: number; value: ProgressValue }
  /**
   * Feedback for a job this distributor does not hold (it restarted since the enqueue) and
   * no named handler (onFeedback) takes. `name`: the job's name, when the node knows it.
   */
  'feedback:orphan': {
    id: string
    name?: string
    run: number
    kind: 'success' | 'error'
    node: string
    args: JobArgsObject
  }
  /** A feedback closure or named handler threw (or its promise rejected); the distributor goes on. */
  'feedback:error': { id: string; name: string; error: Error }
  /** With a spool: writes to it fail (`error`), jobs wait in memory and their `persisted` with them. */
  'spool:down': { error: Error }
  'spool:up': Record<string, never>
  /** With a spool: a member of the group gone longer than its lease was taken over here. */
  'member:adopted': { member: string; jobs: number }
  close: Record<string, never>
}

export type DistributorEvent = keyof DistributorEventMap & string

/** The distributor's events, as its helpers emit them. */
export interface DistributorEvents {
  /** Emits to every listener; one that throws is logged. */
  emit<K extends DistributorEvent>(event: K, payload: DistributorEventMap[K]): void
  /** Someone listens to `event`: per-job events build their payload only then. */
  wants(event: DistributorEvent): boolean
}
