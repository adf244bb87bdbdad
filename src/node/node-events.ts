import type { JobsError, SerializedError } from '../errors.js'

export interface NodeEventMap {
  /** Started: store open, jobs loaded, unfinished jobs resumed, distributors being dialled. */
  ready: { name: string; jobs: string[]; resumed: number }
  /** `distributor`: the address dialled; `group` and `name`: who answered there. */
  'link:up': { distributor: string; group: string; name: string }
  'link:down': { distributor: string; reason: JobsError | undefined }
  /** A source listed a new address (or a parked one dials again): a link to it is dialling. */
  'link:added': { distributor: string }
  /** Its address left every source: it takes no more jobs and closes once nothing is owed to it. */
  'link:leaving': { distributor: string }
  /**
   * Closed for good: `gone` (its address left and nothing is owed to it any more) or
   * `duplicate` (it reached a distributor another link serves; not redialled while listed).
   */
  'link:removed': { distributor: string; reason: 'gone' | 'duplicate' }
  'job:accepted': { id: string; name: string }
  'job:start': { id: string; name: string; attempt: number; run: number }
  'job:retry': { id: string; name: string; attempt: number; delayMs: number; error: SerializedError }
  'job:complete': { id: string; name: string; run: number; cancelled: boolean }
  'job:failed': { id: string; name: string; run: number; error: SerializedError }
  'job:cancelled': { id: string; name: string }
  'feedback:acked': { id: string; run: number }
  'store:down': { error: Error }
  'store:up': Record<string, never>
  close: Record<string, never>
}

/**
 * How the parts of a node report what happened, through the node's emitter. Per-job events
 * are guarded with `wants` where they are made, so that nobody listening costs no payload.
 */
export interface NodeEvents {
  /** Someone listens to `event`. */
  wants(event: keyof NodeEventMap): boolean
  /** Emits to every listener; a listener that throws is logged, never breaks the caller. */
  emit<K extends keyof NodeEventMap>(event: K, payload: NodeEventMap[K]): void
}
