import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { unpack } from '../../src/protocol/msgpack.js'
import { OpWriter } from '../../src/storage/redis/op-writer.js'

/**
 * Reads the writer's output back as the script does (cmsgpack): an array32 of values in any
 * str form, as raw bytes.
 */
function readValues(bytes: Buffer): Buffer[] {
  expect(bytes[0]).toBe(0xdd)
  const count = bytes.readUInt32BE(1)
  const out: Buffer[] = []
  let pos = 5
  for (let i = 0; i < count; i++) {
    const type = bytes[pos] as number
    let n: number
    let header: number
    if (type >= 0xa0 && type <= 0xbf) [n, header] = [type - 0xa0, 1]
    else if (type === 0xd9) [n, header] = [bytes.readUInt8(pos + 1), 2]
    else if (type === 0xda) [n, header] = [bytes.readUInt16BE(pos + 1), 3]
    else if (type === 0xdb) [n, header] = [bytes.readUInt32BE(pos + 1), 5]
    else throw new Error(`value ${i} is not a str (type 0x${type.toString(16)})`)
    out.push(bytes.subarray(pos + header, pos + header + n))
    pos += header + n
  }
  expect(pos).toBe(bytes.length)
  return out
}

describe('OpWriter', () => {
  it('encodes strings as UTF-8 and binary as it is, short and long, in one msgpack array', () => {
    const writer = new OpWriter()
    const long = 'x'.repeat(70)
    const unicodeShort = 'ünï-€'
    const unicodeLong = 'é'.repeat(100)
    const binary = Buffer.from([0, 0xff, 0x80, 0xc3])
    const bigBinary = Buffer.alloc(5000, 0xab)
    for (const v of ['s', 'V1StGXR8_Z5jdHi6B-myT', '', long, unicodeShort, unicodeLong, binary, bigBinary])
      writer.value(v)
    writer.number(2)
    for (const v of ['status', 'new', 'attempt', '0']) writer.value(v)
    const values = readValues(writer.bytes())
    expect(values.map((v) => v.length)).toEqual([
      1,
      21,
      0,
      70,
      Buffer.byteLength(unicodeShort),
      200,
      4,
      5000,
      1,
      6,
      3,
      7,
      1,
    ])
    expect(values.slice(0, 6).map((v) => v.toString('utf8'))).toEqual([
      's',
      'V1StGXR8_Z5jdHi6B-myT',
      '',
      long,
      unicodeShort,
      unicodeLong,
    ])
    expect(values[6]).toEqual(binary)
    expect(values[7]).toEqual(bigBinary)
    expect(values.slice(8).map((v) => v.toString())).toEqual(['2', 'status', 'new', 'attempt', '0'])
  })

  it('writes numbers as the decimal strings String() gives, integers without making them', () => {
    const writer = new OpWriter()
    const numbers = [0, 7, 10, 99, 100, 1_795_423_461_996, Number.MAX_SAFE_INTEGER, 1.5, -3, 1e21, 0.1 + 0.2]
    for (const n of numbers) writer.number(n)
    expect(readValues(writer.bytes()).map((v) => v.toString())).toEqual(numbers.map(String))
  })

  it('writes every safe integer as String() does, at each power of ten and between', () => {
    const edges = [9, 10, 999_999_999, 1_000_000_000, 1_000_000_001, 2 ** 31 - 1, 2 ** 31, 1_000_000_000_000_000]
    const integers = fc.oneof(
      fc.nat(),
      fc.maxSafeNat(),
      fc.integer({ min: 1e9 - 10, max: 1e10 }),
      fc.constantFrom(...edges),
    )
    fc.assert(
      fc.property(fc.array(integers, { maxLength: 20 }), (numbers) => {
        const writer = new OpWriter()
        for (const n of numbers) writer.number(n)
        expect(readValues(writer.bytes()).map((v) => v.toString())).toEqual(numbers.map(String))
      }),
    )
  })

  it('holds a nested msgpack value as one str the script can store as it is', () => {
    const writer = new OpWriter()
    const big = Buffer.alloc(70_000, 7)
    writer
      .value('f')
      .nested((m) => {
        m.arrayHeader(3)
        m.str('ü-id')
        m.num(2)
        m.bin(big)
      })
      .value('after')
    const values = readValues(writer.bytes())
    expect(values).toHaveLength(3)
    expect(unpack(values[1]!)).toEqual(['ü-id', 2, big])
    expect(values[2]!.toString()).toBe('after')
  })

  it('grows past its first buffer without losing what it wrote, and is valid msgpack', () => {
    const writer = new OpWriter()
    const ids = Array.from({ length: 5000 }, (_, i) => `job-${i}-ü`)
    for (const id of ids) writer.value(id)
    expect(unpack(writer.bytes())).toEqual(ids)
  })

  it('goes back to a mark, dropping what was written after it', () => {
    const writer = new OpWriter()
    writer.value('r').value('kept')
    const mark = writer.mark()
    writer.value('s').value('x'.repeat(40_000))
    writer.rewind(mark)
    writer.value('r').value('after')
    expect(unpack(writer.bytes())).toEqual(['r', 'kept', 'r', 'after'])
  })
})
