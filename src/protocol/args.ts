import { InvalidArgumentError } from '../errors.js'
import { describe } from '../config.js'
import { pack, unpack } from './msgpack.js'

export type JobArgsObject = Record<string, unknown>

/**
 * Checks that `value` survives msgpack unchanged: plain objects, arrays, strings, numbers,
 * booleans, null, undefined, bigint, Date and binary. Anything else would arrive as
 * something different (a class instance loses its prototype, a function vanishes), so it is
 * refused with the path of the bad value.
 */
function checkValue(value: unknown, path: string, ancestors: Set<object>): void {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'undefined':
    case 'bigint':
      return
    case 'function':
    case 'symbol':
      throw new InvalidArgumentError(`${path} is ${describe(value)}, which cannot be sent to a node`)
  }
  if (value === null || value instanceof Date || value instanceof Uint8Array) return
  const obj = value as object
  if (ancestors.has(obj)) throw new InvalidArgumentError(`${path} is a circular reference`)
  ancestors.add(obj)
  if (Array.isArray(obj)) {
    for (let i = 0; i < obj.length; i++) checkValue(obj[i], `${path}[${i}]`, ancestors)
  } else {
    const proto = Object.getPrototypeOf(obj)
    if (proto !== Object.prototype && proto !== null) {
      const kind = (proto?.constructor?.name as string | undefined) ?? 'unknown'
      throw new InvalidArgumentError(`${path} is an instance of ${kind}; only plain objects can be sent to a node`)
    }
    for (const key of Object.keys(obj)) checkValue((obj as JobArgsObject)[key], `${path}.${key}`, ancestors)
    if (Object.getOwnPropertySymbols(obj).length > 0) {
      throw new InvalidArgumentError(`${path} has symbol keys, which cannot be sent to a node`)
    }
  }
  ancestors.delete(obj)
}

/** Validates job args and encodes them once; throws InvalidArgumentError naming the bad value. */
export function encodeArgs(args: unknown, maxBytes: number): Buffer {
  if (typeof args !== 'object' || args === null || Array.isArray(args)) {
    throw new InvalidArgumentError(`'args' must be a plain object, got ${describe(args)}`)
  }
  checkValue(args, 'args', new Set())
  const bytes = pack(args)
  if (bytes.length > maxBytes) {
    throw new InvalidArgumentError(`'args' encode to ${bytes.length} bytes, over the limit of ${maxBytes} (maxFrameSize less the frame envelope)`)
  }
  return bytes
}

export function decodeArgs(bytes: Uint8Array): JobArgsObject {
  const value = unpack(bytes)
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return {}
  return value as JobArgsObject
}
