import type { SerializedError } from '../errors.js'
import type { JobArgsObject } from '../protocol/args.js'

/** A run that failed for good (its last attempt failed), as a node reported it. */
export interface Failure {
  id: string
  name: string
  node: string
  run: number
  /** When the failure reached this distributor (epoch ms). */
  at: number
  error: SerializedError | undefined
  /** The args as the job left them (with `error`). */
  args: JobArgsObject
}

/** Failures kept by default: enough for an operator to look at, bounded whatever the failure rate. */
export const RECENT_FAILURES = 100

/**
 * The last failures this distributor received, newest first, for the admin API: which node
 * keeps each failed job (where a retry goes) and the error that ended it. A ring of fixed
 * size: a storm of failures costs nothing more than a few.
 */
export class RecentFailures {
  private readonly ring: (Failure | undefined)[]
  private next = 0
  private total = 0

  constructor(private readonly size = RECENT_FAILURES) {
    this.ring = new Array<Failure | undefined>(size)
  }

  /** Failures received since start, including those the ring let go. */
  get count(): number {
    return this.total
  }

  add(failure: Failure): void {
    this.ring[this.next] = failure
    this.next = (this.next + 1) % this.size
    this.total++
  }

  /** Newest first, at most `limit`. */
  list(limit = this.size): Failure[] {
    const out: Failure[] = []
    for (let i = 1; i <= this.size && out.length < limit; i++) {
      const failure = this.ring[(this.next - i + this.size) % this.size]
      if (failure !== undefined) out.push(failure)
    }
    return out
  }

  /** The newest failure of job `id`, if it is still kept. */
  get(id: string): Failure | undefined {
    for (let i = 1; i <= this.size; i++) {
      const failure = this.ring[(this.next - i + this.size) % this.size]
      if (failure?.id === id) return failure
    }
    return undefined
  }

  /** Job `id` runs again (retried): it is no longer a failure to show. */
  forget(id: string): void {
    for (let i = 0; i < this.size; i++) if (this.ring[i]?.id === id) this.ring[i] = undefined
  }
}
