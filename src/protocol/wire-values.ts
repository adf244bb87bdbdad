import { ProtocolError } from '../errors.js'
import type { JobArgsObject } from './args.js'
import type { ProgressValue } from './messages.js'
import { isPlainMap } from './progress-value.js'

/**
 * The readers every message validation is made of: each checks one value (or one field of
 * a map, named by its path), so that a log line says exactly what a peer got wrong.
 */

/** A decoded msgpack map, its fields still unchecked. */
export type Obj = Record<string, unknown>

export function fail(path: string, expected: string, got: unknown): never {
  const shown = got === null ? 'null' : Array.isArray(got) ? 'array' : typeof got
  throw new ProtocolError(`'${path}' must be ${expected}, got ${shown}`)
}

export function obj(value: unknown, path: string): Obj {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    fail(path, 'a map', value)
  }
  return value as Obj
}

// Value checkers name the field by `path`; the Obj readers below are them applied to a key.

export function strV(v: unknown, path: string): string {
  if (typeof v !== 'string') fail(path, 'a string', v)
  return v
}

export function numV(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(path, 'a finite number', v)
  return v
}

export function posIntV(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) fail(path, 'a non-negative integer', v)
  return v
}

export function bytesV(v: unknown, path: string): Uint8Array {
  if (!(v instanceof Uint8Array)) fail(path, 'binary', v)
  return v
}

export function str(o: Obj, key: string, path: string): string {
  return strV(o[key], `${path}.${key}`)
}

export function num(o: Obj, key: string, path: string): number {
  return numV(o[key], `${path}.${key}`)
}

export function posInt(o: Obj, key: string, path: string): number {
  return posIntV(o[key], `${path}.${key}`)
}

export function bool(o: Obj, key: string, path: string): boolean {
  const v = o[key]
  if (typeof v !== 'boolean') fail(`${path}.${key}`, 'a boolean', v)
  return v
}

export function bytes(o: Obj, key: string, path: string): Uint8Array {
  return bytesV(o[key], `${path}.${key}`)
}

/** An array of `min` to `max` items: the wire form of the per-job records. */
export function tuple(value: unknown, path: string, min: number, max: number): unknown[] {
  if (!Array.isArray(value)) fail(path, `an array of ${min === max ? min : `${min} to ${max}`} items`, value)
  if (value.length < min || value.length > max) {
    throw new ProtocolError(`'${path}' must have ${min === max ? min : `${min} to ${max}`} items, got ${value.length}`)
  }
  return value
}

export function arr(o: Obj, key: string, path: string): unknown[] {
  const v = o[key]
  if (!Array.isArray(v)) fail(`${path}.${key}`, 'an array', v)
  return v
}

export function strings(o: Obj, key: string, path: string): string[] {
  const list = arr(o, key, path)
  for (let i = 0; i < list.length; i++) {
    if (typeof list[i] !== 'string') fail(`${path}.${key}[${i}]`, 'a string', list[i])
  }
  return list as string[]
}

export function optional<T>(
  o: Obj,
  key: string,
  read: (o: Obj, key: string, path: string) => T,
  path: string,
): T | undefined {
  return o[key] === undefined || o[key] === null ? undefined : read(o, key, path)
}

export function list<T>(o: Obj, key: string, path: string, read: (v: unknown, path: string) => T): T[] {
  const items = arr(o, key, path)
  const out = new Array<T>(items.length)
  for (let i = 0; i < items.length; i++) out[i] = read(items[i], `${path}.${key}[${i}]`)
  return out
}

export function oneOf<T extends string>(value: unknown, path: string, allowed: readonly T[]): T {
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T
  return fail(path, allowed.map((a) => `'${a}'`).join(' or '), value)
}

/** Reads field `key` of a map. */
export type Reader<T> = (o: Obj, key: string, path: string) => T

/** Args reach feedback closures: a map, never a Date, Set or other value msgpackr can make. */
export function plainMap(value: unknown, path: string): JobArgsObject {
  const o = obj(value, path)
  if (!isPlainMap(o)) fail(path, 'a map', value)
  return o
}

/** A progress value reaches closures too: a finite number or a plain map (size is the node's to bound). */
export function progressValue(value: unknown, path: string): ProgressValue {
  return typeof value === 'number' ? numV(value, path) : plainMap(value, path)
}
