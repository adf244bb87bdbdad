import { pack, unpack } from '../../protocol/msgpack.js'
import type { RetryPolicy } from '../../scheduling/retry.js'
import { type JobOptions, NO_JOB_OPTIONS } from '../job-options.js'
import type { TrackedJob } from '../tracked-job.js'

/** A job as read back from a spool: what a distributor needs to dispatch it again. */
export interface SpooledJob {
  id: string
  name: string
  args: Buffer
  dueAt: number
  run: number
  opts: Readonly<JobOptions>
}

const OPTION_KEYS = [
  'period',
  'cron',
  'tz',
  'node',
  'notNode',
  'defer',
  'maxAttempt',
  'retry',
  'timeout',
  'limitKey',
  'priority',
] as const

/**
 * A spool record: the msgpack tuple [name, args, dueAt, run, options?], where options
 * holds only the options the job set. The id is the hash field.
 */
export function encodeSpooled(job: TrackedJob): Buffer {
  const o = job.opts
  if (o === NO_JOB_OPTIONS) return pack([job.name, job.args, job.dueAt, job.run])
  const set: Record<string, unknown> = {}
  for (const key of OPTION_KEYS) {
    const value = o[key]
    if (value !== undefined && value !== false) set[key] = value
  }
  return pack([job.name, job.args, job.dueAt, job.run, set])
}

/** Reads a spool record back; undefined for one that is not a record this version wrote. */
export function decodeSpooled(id: string, bytes: Uint8Array): SpooledJob | undefined {
  let value: unknown
  try {
    value = unpack(bytes)
  } catch {
    return undefined
  }
  if (!Array.isArray(value) || value.length < 4) return undefined
  const [name, args, dueAt, run, options] = value as unknown[]
  if (typeof name !== 'string' || !(args instanceof Uint8Array) || typeof dueAt !== 'number' || typeof run !== 'number')
    return undefined
  return { id, name, args: Buffer.from(args), dueAt, run, opts: optionsOf(options) }
}

function optionsOf(value: unknown): Readonly<JobOptions> {
  if (value === null || typeof value !== 'object') return NO_JOB_OPTIONS
  const o = value as Record<string, unknown>
  const num = (key: string): number | undefined => (typeof o[key] === 'number' ? (o[key] as number) : undefined)
  const str = (key: string): string | undefined => (typeof o[key] === 'string' ? (o[key] as string) : undefined)
  return {
    period: num('period'),
    cron: str('cron'),
    tz: str('tz'),
    node: str('node'),
    notNode: str('notNode'),
    defer: o['defer'] === true,
    maxAttempt: num('maxAttempt'),
    retry: typeof o['retry'] === 'object' && o['retry'] !== null ? (o['retry'] as RetryPolicy) : undefined,
    timeout: num('timeout'),
    limitKey: str('limitKey'),
    priority: num('priority'),
  }
}
