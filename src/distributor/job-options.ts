import type { JobRunOptions } from '../protocol/messages.js'

/**
 * A job's enqueue options, resolved: where it may go, and what it carries to its node. Every
 * field is present (one object shape for every job), undefined when not given.
 */
export interface JobOptions extends Resolved<Omit<JobRunOptions, 'defer'>> {
  node: string | undefined
  notNode: string | undefined
  defer: boolean
  /** Stays here: the distributor enforces limits, the node never sees it. */
  limitKey: string | undefined
  /** Stays here: the order of the queue. Undefined for 0, so that such jobs take the plain path. */
  priority: number | undefined
}

/** Every field of T present, undefined when not given. */
type Resolved<T> = { [K in keyof Required<T>]: T[K] | undefined }

/** Most jobs set no option (or only a delay): they all point at this one object. */
export const NO_JOB_OPTIONS: Readonly<JobOptions> = Object.freeze({
  period: undefined,
  cron: undefined,
  tz: undefined,
  node: undefined,
  notNode: undefined,
  defer: false,
  maxAttempt: undefined,
  retry: undefined,
  timeout: undefined,
  limitKey: undefined,
  priority: undefined,
})
