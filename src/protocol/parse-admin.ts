import type { SerializedError } from '../errors.js'
import { MessageType, type AdminRequest, type AdminResultMessage, type NodeJobView } from './messages.js'
import {
  bool,
  bytes,
  fail,
  list,
  num,
  obj,
  type Obj,
  oneOf,
  optional,
  posInt,
  progressValue,
  str,
} from './wire-values.js'

/** Validation of the admin API's requests to nodes and their answers (protocol 8). */

const NODE_JOB_KINDS = ['running', 'scheduled', 'periodic', 'failed'] as const

export function adminRequest(value: unknown, p: string): AdminRequest {
  const o = obj(value, p)
  switch (o['op']) {
    case 'list': {
      const request: AdminRequest = {
        op: 'list',
        kind: oneOf(o['kind'], `${p}.kind`, NODE_JOB_KINDS),
        limit: posInt(o, 'limit', p),
      }
      const cursor = optional(o, 'cursor', str, p)
      if (cursor !== undefined) request.cursor = cursor
      return request
    }
    case 'job':
      return { op: 'job', id: str(o, 'id', p) }
    case 'retry':
      return { op: 'retry', id: str(o, 'id', p) }
    case 'quiet':
      return { op: 'quiet', quiet: bool(o, 'quiet', p) }
    default:
      return fail(`${p}.op`, "'list', 'job', 'retry' or 'quiet'", o['op'])
  }
}

function serializedError(o: Obj, key: string, p: string): SerializedError {
  const e = obj(o[key], `${p}.${key}`)
  const where = `${p}.${key}`
  const err: SerializedError = { name: str(e, 'name', where), message: str(e, 'message', where) }
  const stack = optional(e, 'stack', str, where)
  if (stack !== undefined) err.stack = stack
  const code = optional(e, 'code', str, where)
  if (code !== undefined) err.code = code
  return err
}

function nodeJobView(value: unknown, p: string): NodeJobView {
  const o = obj(value, p)
  const view: NodeJobView = {
    id: str(o, 'id', p),
    name: str(o, 'name', p),
    status: str(o, 'status', p),
    attempt: posInt(o, 'attempt', p),
    run: posInt(o, 'run', p),
    dueAt: num(o, 'dueAt', p),
  }
  const period = optional(o, 'period', num, p)
  if (period !== undefined) view.period = period
  const cron = optional(o, 'cron', str, p)
  if (cron !== undefined) view.cron = cron
  const tz = optional(o, 'tz', str, p)
  if (tz !== undefined) view.tz = tz
  const lastError = optional(o, 'lastError', serializedError, p)
  if (lastError !== undefined) view.lastError = lastError
  const args = optional(o, 'args', bytes, p)
  if (args !== undefined) view.args = args
  if (o['progress'] !== undefined && o['progress'] !== null)
    view.progress = progressValue(o['progress'], `${p}.progress`)
  return view
}

export function adminResult(o: Obj, p: string): AdminResultMessage {
  const result: AdminResultMessage = { type: MessageType.ADMIN_RESULT, req: posInt(o, 'req', p) }
  if (o['error'] !== undefined && o['error'] !== null) {
    const e = obj(o['error'], `${p}.error`)
    result.error = { code: str(e, 'code', `${p}.error`), message: str(e, 'message', `${p}.error`) }
  }
  if (o['jobs'] !== undefined && o['jobs'] !== null) result.jobs = list(o, 'jobs', p, nodeJobView)
  const next = optional(o, 'next', str, p)
  if (next !== undefined) result.next = next
  if (o['job'] !== undefined && o['job'] !== null) result.job = nodeJobView(o['job'], `${p}.job`)
  const quiet = optional(o, 'quiet', bool, p)
  if (quiet !== undefined) result.quiet = quiet
  return result
}
