import { describe } from '../config.js'
import { InvalidArgumentError, coerceError } from '../errors.js'
import type { ProgressValue } from './messages.js'
import { pack } from './msgpack.js'

/**
 * The most a progress value may take as msgpack. Progress is a hint of how far a job got,
 * sent up to ten times a second per job and kept with it: a result belongs in its args.
 */
export const MAX_PROGRESS_BYTES = 16 * 1024

/** A map a peer may send and a closure may receive: no Date, Map or class instance. */
export function isPlainMap(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/**
 * What `ctx.progress(value)` accepts: a finite number, or a plain object whose msgpack takes
 * at most MAX_PROGRESS_BYTES. Throws InvalidArgumentError naming the value otherwise, at the
 * call, so that the step that reported it learns of it.
 */
export function checkProgress(value: unknown): ProgressValue {
  if (typeof value === 'number') {
    if (Number.isFinite(value)) return value
    throw new InvalidArgumentError(`'progress' must be a finite number or a plain object, got ${value}`)
  }
  if (!isPlainMap(value)) {
    throw new InvalidArgumentError(`'progress' must be a finite number or a plain object, got ${describe(value)}`)
  }
  let size: number
  try {
    size = pack(value).length
  } catch (err) {
    throw new InvalidArgumentError(`'progress' cannot be sent: ${coerceError(err).message}`, { cause: err })
  }
  if (size > MAX_PROGRESS_BYTES) {
    throw new InvalidArgumentError(`'progress' takes ${size} bytes as msgpack, more than ${MAX_PROGRESS_BYTES}`)
  }
  return value
}
