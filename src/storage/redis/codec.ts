/*
 * A job record and a feedback as Redis holds them (field layout: keys.ts), written into a
 * batch and read back from the replies of HGETALL and the list script.
 */
import { StoreError, type SerializedError } from '../../errors.js'
import type { ProgressValue } from '../../protocol/messages.js'
import { pack, unpack } from '../../protocol/msgpack.js'
import { isPlainMap } from '../../protocol/progress-value.js'
import type { MsgpackWriter } from '../../protocol/msgpack-writer.js'
import type { RetryPolicy } from '../../scheduling/retry.js'
import { FeedbackKind, type FeedbackRecord, type JobPatch, type JobRecord, JobStatus, isUnfinished } from '../store.js'
import type { OpWriter } from './op-writer.js'

/**
 * What a status change does to the node's id sets (APPLY_LUA, batch.ts): '' none, 'add' to
 * unfinished, 'rem' from it, 'fail' from it and into the failed index.
 */
export function unfinishedOp(patch: Pick<JobPatch, 'status'>): string {
  if (patch.status === undefined) return ''
  if (patch.status === JobStatus.FAILED) return 'fail'
  return isUnfinished(patch.status) ? 'add' : 'rem'
}

/**
 * A job's fields in the order APPLY_LUA's save op reads them (batch.ts), then its
 * optional fields as name/value pairs: the names of the fixed ones need not travel.
 */
export function writeJob(w: OpWriter, job: JobRecord): void {
  w.value(job.name)
    .value(job.args)
    .value(job.status)
    .number(job.attempt)
    .number(job.run)
    .number(job.dueAt)
    .number(job.runDueAt)
    .value(job.defer ? '1' : '0')
    .value(job.distributor)
    .number(job.createdAt)
  const { period, cron, tz, maxAttempt, retry, timeout, failedAt, lastError, progress } = job
  w.number(count(period, cron, tz, maxAttempt, retry, timeout, failedAt, lastError, progress))
  if (period !== undefined) w.value('period').number(period)
  if (cron !== undefined) w.value('cron').value(cron)
  if (tz !== undefined) w.value('tz').value(tz)
  if (maxAttempt !== undefined) w.value('maxAttempt').number(maxAttempt)
  if (retry !== undefined) w.value('retry').value(JSON.stringify(retry))
  if (timeout !== undefined) w.value('timeout').number(timeout)
  if (failedAt !== undefined) w.value('failedAt').number(failedAt)
  if (lastError !== undefined) w.value('lastError').value(JSON.stringify(lastError))
  if (progress !== undefined) writeProgress(w, typeof progress === 'number' ? progress : pack(progress))
}

/**
 * A patch with its progress value ready to be written: a map encoded (msgpack, as the value
 * went over the wire: what a reader decodes is what the distributor got), a number as it
 * is (written as msgpack straight into the batch, without a buffer of its own). Encoded
 * when the write is made, so that a value that cannot be encoded fails that call, and a
 * patch held back in a batch (batch.ts) cannot fail the batch when it is sent.
 */
export type EncodedPatch = Omit<JobPatch, 'progress'> & { progress?: number | Uint8Array }

/** `patch` with its progress value encoded; throws what msgpack throws, or on a number that is not finite. */
export function encodePatch(patch: JobPatch): EncodedPatch {
  const { progress } = patch
  if (progress === undefined) return patch as EncodedPatch
  if (typeof progress === 'number') {
    if (!Number.isFinite(progress)) throw new TypeError(`progress ${progress} is not a finite number`)
    return patch as EncodedPatch
  }
  return { ...patch, progress: pack(progress) }
}

/** A progress value as the job hash holds it: msgpack, in a str of the batch. */
function writeProgress(w: OpWriter, progress: number | Uint8Array): void {
  w.value('progress')
  if (typeof progress === 'number') w.nested((m) => m.num(progress))
  else w.value(progress)
}

/** A patch as n name/value pairs; a field set to undefined is left alone, as in MemoryStore. */
export function writePatch(w: OpWriter, patch: EncodedPatch): void {
  const { status, attempt, run, dueAt, runDueAt, failedAt, lastError, distributor, progress } = patch
  w.number(count(status, attempt, run, dueAt, runDueAt, failedAt, lastError, distributor, progress))
  if (status !== undefined) w.value('status').value(status)
  if (attempt !== undefined) w.value('attempt').number(attempt)
  if (run !== undefined) w.value('run').number(run)
  if (dueAt !== undefined) w.value('dueAt').number(dueAt)
  if (runDueAt !== undefined) w.value('runDueAt').number(runDueAt)
  if (failedAt !== undefined) w.value('failedAt').number(failedAt)
  if (lastError !== undefined) w.value('lastError').value(JSON.stringify(lastError))
  if (distributor !== undefined) w.value('distributor').value(distributor)
  if (progress !== undefined) writeProgress(w, progress)
}

function count(...values: unknown[]): number {
  let n = 0
  for (const v of values) if (v !== undefined) n++
  return n
}

const STATUSES = new Set<string>(Object.values(JobStatus))

/** Throws a StoreError naming the key rather than hand a half-read record to the node. */
export function decodeJob(key: string, fields: Record<string, Buffer>): JobRecord {
  const corrupt = (field: string, why: string): StoreError =>
    new StoreError(`job record ${key} is corrupt: field '${field}' ${why}`)
  const str = (field: string): string => {
    const v = fields[field]
    if (v === undefined) throw corrupt(field, 'is missing')
    return v.toString()
  }
  const number = (field: string): number => {
    const n = Number(str(field))
    if (Number.isNaN(n)) throw corrupt(field, 'is not a number')
    return n
  }
  const json = <T>(field: string): T => {
    try {
      return JSON.parse(str(field)) as T
    } catch {
      throw corrupt(field, 'is not JSON')
    }
  }
  const args = fields['args']
  if (args === undefined) throw corrupt('args', 'is missing')
  const status = str('status')
  if (!STATUSES.has(status)) throw corrupt('status', `has unknown value '${status}'`)
  const job: JobRecord = {
    id: str('id'),
    name: str('name'),
    args,
    status: status as JobStatus,
    attempt: number('attempt'),
    run: number('run'),
    dueAt: number('dueAt'),
    runDueAt: number('runDueAt'),
    defer: str('defer') === '1',
    distributor: str('distributor'),
    createdAt: number('createdAt'),
  }
  if (fields['period'] !== undefined) job.period = number('period')
  if (fields['cron'] !== undefined) job.cron = str('cron')
  if (fields['tz'] !== undefined) job.tz = str('tz')
  if (fields['maxAttempt'] !== undefined) job.maxAttempt = number('maxAttempt')
  if (fields['retry'] !== undefined) job.retry = json<RetryPolicy>('retry')
  if (fields['timeout'] !== undefined) job.timeout = number('timeout')
  if (fields['failedAt'] !== undefined) job.failedAt = number('failedAt')
  if (fields['lastError'] !== undefined) job.lastError = json<SerializedError>('lastError')
  const progress = fields['progress']
  if (progress !== undefined) job.progress = decodeProgress(progress, corrupt)
  return job
}

function decodeProgress(bytes: Buffer, corrupt: (field: string, why: string) => StoreError): ProgressValue {
  let value: unknown
  try {
    value = unpack(bytes)
  } catch {
    throw corrupt('progress', 'is not msgpack')
  }
  if ((typeof value === 'number' && Number.isFinite(value)) || isPlainMap(value)) return value as ProgressValue
  throw corrupt('progress', 'is not a number or a map')
}

/**
 * A feedback record as stored: a msgpack tuple [jobId, run, distributor, kind, final,
 * cancelled, args, name]. A tuple rather than a map: it is written for every finished run, and
 * packing a map walks and writes every key name each time. A record stored before the name
 * was kept has 7 items: its name is unknown.
 */
export function writeFeedback(w: MsgpackWriter, f: FeedbackRecord): void {
  const named = f.name !== undefined
  w.arrayHeader(named ? 8 : 7)
  w.str(f.jobId)
  w.num(f.run)
  w.str(f.distributor)
  w.str(f.kind)
  w.bool(f.final)
  w.bool(f.cancelled)
  w.bin(f.args)
  if (named) w.str(f.name as string)
}

export function decodeFeedback(key: string, field: string, bytes: Buffer): FeedbackRecord {
  let value: unknown
  try {
    value = unpack(bytes)
  } catch (err) {
    throw new StoreError(`feedback ${field} in ${key} is not msgpack`, { cause: err })
  }
  const [jobId, run, distributor, kind, final, cancelled, args, name] = Array.isArray(value) ? value : []
  if (
    !Array.isArray(value) ||
    (value.length !== 7 && value.length !== 8) ||
    (name !== undefined && typeof name !== 'string') ||
    typeof jobId !== 'string' ||
    typeof run !== 'number' ||
    typeof distributor !== 'string' ||
    (kind !== FeedbackKind.SUCCESS && kind !== FeedbackKind.ERROR) ||
    typeof final !== 'boolean' ||
    typeof cancelled !== 'boolean' ||
    !(args instanceof Uint8Array)
  ) {
    throw new StoreError(`feedback ${field} in ${key} is not a feedback record`)
  }
  const record: FeedbackRecord = { jobId, run, distributor, kind, final, cancelled, args }
  if (name !== undefined) record.name = name
  return record
}
