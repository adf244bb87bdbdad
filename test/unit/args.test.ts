import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InvalidArgumentError } from '../../src/errors.js'
import { decodeArgs, encodeArgs, ownArgs, packArgs, shareEmptyArgs } from '../../src/protocol/args.js'
import { pack, unpack } from '../../src/protocol/msgpack.js'

const LIMIT = 1024 * 1024

function refusal(args: unknown): string {
  try {
    encodeArgs(args, LIMIT)
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError)
    return (err as Error).message
  }
  throw new Error('encodeArgs accepted it')
}

describe('encodeArgs', () => {
  it('round-trips what msgpack carries unchanged', () => {
    const args = {
      s: 'x',
      n: 1.5,
      b: true,
      z: null,
      list: [1, 'two', { three: 3 }],
      when: new Date(0),
      bin: Buffer.from([1, 2]),
    }
    expect(decodeArgs(encodeArgs(args, LIMIT))).toEqual(args)
  })

  it('names the path of a bad value deep inside objects and arrays', () => {
    expect(refusal({ a: { b: [1, 2, { c: () => 1 }] } })).toBe(
      'args.a.b[2].c is a function, which cannot be sent to a node',
    )
    expect(refusal({ list: [Symbol('s')] })).toMatch(/^args\.list\[0\] is /)
    expect(refusal({ a: { m: new Map() } })).toBe(
      'args.a.m is an instance of Map; only plain objects can be sent to a node',
    )
    expect(refusal({ a: { [Symbol('k')]: 1 } })).toBe('args.a has symbol keys, which cannot be sent to a node')
  })

  it('refuses a cycle, naming where it closes, but accepts the same object reached twice', () => {
    const inner: Record<string, unknown> = { n: 1 }
    const cyclic: Record<string, unknown> = { list: [inner] }
    inner['back'] = cyclic
    expect(refusal(cyclic)).toBe('args.list[0].back is a circular reference')
    const shared = { n: 1 }
    expect(decodeArgs(encodeArgs({ a: shared, b: [shared, shared] }, LIMIT))).toEqual({
      a: { n: 1 },
      b: [{ n: 1 }, { n: 1 }],
    })
  })

  it('checks again after a refusal: nothing of a failed call is left over', () => {
    const node: Record<string, unknown> = {}
    node['self'] = node
    expect(refusal(node)).toBe('args.self is a circular reference')
    const again = { self: { ok: true } }
    expect(decodeArgs(encodeArgs(again, LIMIT))).toEqual(again)
  })

  it('decodes empty args to a new object each time (callers mutate it)', () => {
    const empty = encodeArgs({}, LIMIT)
    const a = decodeArgs(Buffer.from(empty))
    const b = decodeArgs(empty)
    expect(a).toEqual({})
    expect(b).toEqual({})
    expect(a).not.toBe(b)
  })

  it('encodes empty args (also with a null prototype) to an empty map', () => {
    expect(decodeArgs(encodeArgs({}, LIMIT))).toEqual({})
    expect(decodeArgs(encodeArgs(Object.create(null), LIMIT))).toEqual({})
  })

  it('refuses args that are not a plain object, and args over the limit, saying so', () => {
    expect(refusal([1])).toBe("'args' must be a plain object, got an array")
    expect(() => encodeArgs({ big: 'x'.repeat(100) }, 50)).toThrow(/over the limit of 50/)
  })
})

describe('shareEmptyArgs', () => {
  it('hands out one shared buffer for received empty args, and leaves anything else alone', () => {
    const empty = encodeArgs({}, LIMIT)
    const received = Buffer.from(empty)
    expect(received).not.toBe(empty)
    expect(shareEmptyArgs(received)).toBe(empty)
    for (const other of [
      Buffer.from([empty[0] as number]),
      Buffer.from([0x80]),
      encodeArgs({ a: 1 }, LIMIT),
      Buffer.alloc(0),
    ]) {
      expect(shareEmptyArgs(other)).toBe(other)
    }
  })
})

describe('ownArgs', () => {
  it('copies args out of the frame they were decoded from, and keeps the shared empty map', () => {
    const frame = pack({ jobs: [{ args: packArgs({ greeting: 'hello' }) }] })
    const decoded = (unpack(frame) as { jobs: { args: Uint8Array }[] }).jobs[0]!.args
    // The premise: msgpackr hands out binary as a view of the frame.
    expect(decoded.buffer).toBe(frame.buffer)
    const own = ownArgs(decoded)
    expect(own).toEqual(decoded)
    expect(own.buffer).not.toBe(decoded.buffer)
    // The copy stays when the frame's memory is reused for the next frame.
    frame.fill(0)
    expect(decodeArgs(own)).toEqual({ greeting: 'hello' })
    const empty = encodeArgs({}, LIMIT)
    expect(ownArgs(empty)).toBe(empty)
  })
})

describe('packArgs', () => {
  const flatValue = fc.oneof(
    fc.string({ maxLength: 70 }),
    fc.double(),
    fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
    fc.boolean(),
    fc.constant(null),
  )

  it('packs any flat object to bytes that decode as what msgpackr makes of it', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 70 }), flatValue, { maxKeys: 20 }), (args) => {
        expect(unpack(packArgs(args))).toEqual(unpack(pack(args)))
      }),
    )
  })

  it('leaves nested values, arrays and binaries to msgpackr, decoding the same', () => {
    const samples = [
      { a: { b: 1 } },
      { list: [1, 'two'] },
      { bytes: Buffer.from([1, 2]) },
      { when: undefined },
      { big: 2n ** 60n },
    ]
    for (const args of samples) expect(unpack(packArgs(args))).toEqual(unpack(pack(args)))
  })

  it('writes a negative integer in the smallest field that holds it, as msgpackr does', () => {
    // { n: value } is a map header and a 1-character key (3 bytes), then the value.
    const widths: [number, number][] = [
      [-1, 1],
      [-32, 1],
      [-33, 2],
      [-128, 2],
      [-129, 3],
      [-32_768, 3],
      [-32_769, 5],
      [-(2 ** 31), 5],
      [-(2 ** 31) - 1, 9],
    ]
    for (const [n, width] of widths) {
      const bytes = packArgs({ n })
      expect(bytes.length - 3, `width of ${n}`).toBe(width)
      expect(bytes.subarray(3)).toEqual(pack(n))
      expect(unpack(bytes)).toEqual({ n })
    }
  })

  it('keeps each result intact while many are packed after it', () => {
    const packed = Array.from({ length: 5_000 }, (_, i) => ({
      args: { i, name: `job-${i}`, ok: i % 2 === 0 },
      bytes: packArgs({ i, name: `job-${i}`, ok: i % 2 === 0 }),
    }))
    for (const { args, bytes } of packed) expect(unpack(bytes)).toEqual(args)
  })
})
