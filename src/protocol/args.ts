import { InvalidArgumentError } from '../errors.js'
import { describe } from '../config.js'
import { pack, unpack } from './msgpack.js'
import { MsgpackWriter } from './msgpack-writer.js'

export type JobArgsObject = Record<string, unknown>

/** What is wrong with a value, and where: path segments from the value up (".a", "[2]"). */
interface Problem {
  what: string
  where: string[]
}

/**
 * Checks that `value` survives msgpack unchanged: plain objects, arrays, strings, numbers,
 * booleans, null, undefined, bigint, Date and binary. Anything else would arrive as
 * something different (a class instance loses its prototype, a function vanishes), so it is
 * refused with the path of the bad value. The path is built only for a bad value, while
 * unwinding: a valid job pays for no strings. `ancestors` is the chain of containers above
 * `value` (cycle detection); it is shallow, so a linear scan beats a Set.
 */
function problemIn(value: unknown, ancestors: object[]): Problem | undefined {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'undefined':
    case 'bigint':
      return undefined
    case 'function':
    case 'symbol':
      return { what: `is ${describe(value)}, which cannot be sent to a node`, where: [] }
  }
  if (value === null || value instanceof Date || value instanceof Uint8Array) return undefined
  const obj = value as object
  if (ancestors.includes(obj)) return { what: 'is a circular reference', where: [] }
  ancestors.push(obj)
  let problem: Problem | undefined
  if (Array.isArray(obj)) {
    for (let i = 0; i < obj.length && problem === undefined; i++) {
      problem = problemIn(obj[i], ancestors)
      problem?.where.push(`[${i}]`)
    }
  } else {
    const proto = Object.getPrototypeOf(obj)
    if (proto !== Object.prototype && proto !== null) {
      const kind = (proto?.constructor?.name as string | undefined) ?? 'unknown'
      problem = { what: `is an instance of ${kind}; only plain objects can be sent to a node`, where: [] }
    }
    for (const key in obj) {
      if (problem !== undefined) break
      if (!Object.hasOwn(obj, key)) continue
      problem = problemIn((obj as JobArgsObject)[key], ancestors)
      problem?.where.push(`.${key}`)
    }
    if (problem === undefined && Object.getOwnPropertySymbols(obj).length > 0) {
      problem = { what: 'has symbol keys, which cannot be sent to a node', where: [] }
    }
  }
  ancestors.pop()
  return problem
}

/** Most jobs of a kind carry no args: they share these bytes (never written to). */
const EMPTY_ARGS = pack({})

/**
 * Received args equal to EMPTY_ARGS become EMPTY_ARGS itself: a node holding a million
 * delayed jobs then keeps no buffer view per job, nor the frame behind it.
 */
export function shareEmptyArgs(bytes: Uint8Array): Uint8Array {
  return isEmptyArgs(bytes) ? EMPTY_ARGS : bytes
}

/**
 * Args that share no memory with the frame they were decoded from (msgpackr decodes binary
 * as a view of the frame): those of a job held for hours would keep the whole frame alive,
 * whatever else it carried. Small copies come from Node's shared pool.
 */
export function ownArgs(bytes: Uint8Array): Uint8Array {
  return bytes === EMPTY_ARGS ? bytes : Buffer.from(bytes)
}

/** Byte by byte: for three bytes, cheaper than a call into Buffer.equals. */
function isEmptyArgs(bytes: Uint8Array): boolean {
  if (bytes.length !== EMPTY_ARGS.length) return false
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== EMPTY_ARGS[i]) return false
  return true
}

/** Validates job args and encodes them once; throws InvalidArgumentError naming the bad value. */
export function encodeArgs(args: unknown, maxBytes: number): Buffer {
  if (typeof args !== 'object' || args === null || Array.isArray(args)) {
    throw new InvalidArgumentError(`'args' must be a plain object, got ${describe(args)}`)
  }
  // Most jobs carry no args: nothing to walk, nothing to pack.
  if (
    Object.getPrototypeOf(args) === Object.prototype &&
    isEmpty(args) &&
    Object.getOwnPropertySymbols(args).length === 0
  ) {
    return EMPTY_ARGS
  }
  const problem = problemIn(args, [])
  if (problem !== undefined) {
    throw new InvalidArgumentError(`args${problem.where.reverse().join('')} ${problem.what}`)
  }
  const bytes = packArgs(args)
  if (bytes.length > maxBytes) {
    throw new InvalidArgumentError(
      `'args' encode to ${bytes.length} bytes, over the limit of ${maxBytes} (maxFrameSize less the frame envelope)`,
    )
  }
  return bytes
}

/** msgpack of args (unchecked: pack throws on what it cannot encode); empty ones share EMPTY_ARGS. */
export function packArgs(args: object): Buffer {
  if (isEmpty(args)) return EMPTY_ARGS
  return flatArgs.pack(args) ?? pack(args)
}

/**
 * Bytes per slab: results are cut from it, as msgpackr cuts its output from its own buffer
 * of the same size. A result held for hours (a delayed job's args) keeps its slab alive,
 * so the slab stays small.
 */
const SLAB = 8 * 1024

/**
 * Flat args, a plain object of at most 15 ASCII-named fields whose values are short ASCII
 * strings, numbers, booleans or null, written by hand: most results are like that
 * ({ sent: true }, { late: 12 }), and msgpackr's generic walk cost ~0.4 µs a call, more
 * than a no-op job. Anything else goes to msgpackr; both decode alike.
 */
class FlatArgsWriter extends MsgpackWriter {
  constructor() {
    super(SLAB, 0)
  }

  pack(obj: object): Buffer | undefined {
    let fields = 0
    for (const key in obj) {
      if (!Object.hasOwn(obj, key) || ++fields > 15) return undefined
    }
    if (this.pos > SLAB / 2) {
      // Earlier results keep the old slab for as long as they live.
      this.buf = Buffer.allocUnsafe(SLAB)
      this.pos = 0
    }
    const start = this.pos
    this.byte(0x80 | fields)
    let written = 0
    for (const key in obj) {
      const value = (obj as JobArgsObject)[key]
      if (!Object.hasOwn(obj, key) || !this.asciiStr(key) || !this.value(value)) {
        this.pos = start
        return undefined
      }
      written++
    }
    // A getter that added or removed fields on the way would leave the header wrong.
    if (written !== fields) {
      this.pos = start
      return undefined
    }
    return this.buf.subarray(start, this.pos)
  }

  private value(v: unknown): boolean {
    switch (typeof v) {
      case 'number':
        this.num(v)
        return true
      case 'boolean':
        this.bool(v)
        return true
      case 'string':
        return this.asciiStr(v)
      default:
        if (v !== null) return false
        this.byte(0xc0)
        return true
    }
  }
}

const flatArgs = new FlatArgsWriter()

function isEmpty(obj: object): boolean {
  for (const key in obj) if (Object.hasOwn(obj, key)) return false
  return true
}

/** True when `bytes` are exactly one msgpack map of plain fields. */
export function isPackedMap(bytes: Uint8Array): boolean {
  try {
    const value = unpack(bytes)
    return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype
  } catch {
    return false
  }
}

export function decodeArgs(bytes: Uint8Array): JobArgsObject {
  if (bytes === EMPTY_ARGS || isEmptyArgs(bytes)) return {}
  const value = unpack(bytes)
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return {}
  return value as JobArgsObject
}
