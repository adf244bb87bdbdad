import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { FrameTooLargeError } from '../../src/errors.js'
import { encodeMessageFrame } from '../../src/protocol/encode.js'
import { FRAME_HEADER_SIZE } from '../../src/protocol/frame.js'
import { MessageType, type Message } from '../../src/protocol/messages.js'
import { parseMessage } from '../../src/protocol/parse-message.js'
import { pack, unpack } from '../../src/protocol/msgpack.js'
import { message, params } from '../helpers/protocol-arbitraries.js'
import { toWire } from '../helpers/wire-form.js'

// Property-based: the hand-written frame encoder against msgpackr's encoding of the wire form (fixed seeds).

describe('encodeMessageFrame against the reference wire form', () => {
  const decode = (frame: Buffer): unknown => unpack(frame.subarray(FRAME_HEADER_SIZE))

  it('writes, for any message, a frame whose body decodes to what msgpackr makes of toWire()', () => {
    fc.assert(
      fc.property(message, (m) => {
        const frame = encodeMessageFrame(m, 1 << 30)
        expect(frame.readUInt32BE(0)).toBe(frame.length - FRAME_HEADER_SIZE)
        expect(decode(frame)).toEqual(unpack(pack(toWire(m))))
        expect(parseMessage(decode(frame))).toEqual(parseMessage(unpack(pack(toWire(m)))))
      }),
      params(),
    )
  })

  it('chooses every header size right: strings, binary, numbers and lists at their edges', () => {
    const lengths = [0, 1, 31, 32, 63, 64, 65, 255, 256, 65_535, 65_536]
    // The last: as many UTF-8 bytes in its first n + 1 units as it has units.
    const strings = lengths.flatMap((n) => ['a'.repeat(n), 'é'.repeat(n), `${'a'.repeat(n)}€`, `${'a'.repeat(n)}é€`])
    const numbers = [
      0,
      1,
      127,
      128,
      255,
      256,
      65_535,
      65_536,
      2 ** 32 - 1,
      2 ** 32,
      1_700_000_000_123,
      Number.MAX_SAFE_INTEGER,
      1.5,
      -1,
      -32,
      -33,
      -128,
      -129,
      -32_768,
      -32_769,
      -(2 ** 31),
      -(2 ** 31) - 1,
      -(2 ** 40),
      -0.5,
    ]
    const args = lengths.map((n) => Buffer.alloc(n, 7))
    const jobs = strings.map((id, i) => ({
      id,
      name: strings[(i * 7) % strings.length] as string,
      args: args[i % args.length] as Buffer,
      dueAt: numbers[i % numbers.length] as number,
      run: i,
    }))
    const seqs = numbers.filter((n) => Number.isInteger(n) && n >= 0)
    const results = lengths.map((n) => pack({ s: 'r'.repeat(n) }))
    const many = Array.from({ length: 70_000 }, (_, i) => ({
      id: `id-${i}`,
      run: i,
      kind: 'success' as const,
      final: true,
      cancelled: false,
      args: pack({}),
    }))
    const samples: Message[] = [
      { type: MessageType.DISPATCH, seq: 1, jobs },
      { type: MessageType.DISPATCH, seq: 2, jobs: jobs.slice(0, 15) },
      { type: MessageType.DISPATCH, seq: 3, jobs: jobs.slice(0, 16) },
      // The frame number at every integer header size, in both hand-written list frames.
      ...seqs.map((seq): Message => ({ type: MessageType.DISPATCH, seq, jobs: jobs.slice(0, 2) })),
      ...seqs.map((seq): Message => ({ type: MessageType.FEEDBACK, seq, items: [] })),
      ...seqs.map((seq): Message => ({ type: MessageType.ACCEPTED, seq })),
      ...seqs.map((seq): Message => ({ type: MessageType.FEEDBACK_ACK, seq })),
      { type: MessageType.FEEDBACK, seq: 4, items: many },
      {
        type: MessageType.FEEDBACK,
        seq: 65_536,
        items: numbers.map((run, i) => ({
          id: strings[i] as string,
          run: Math.max(0, Math.floor(run)),
          kind: i % 2 ? 'error' : 'success',
          final: i % 3 === 0,
          cancelled: i % 5 === 0,
          args: results[i % results.length] as Buffer,
        })),
      },
    ]
    for (const m of samples) expect(decode(encodeMessageFrame(m, 1 << 30))).toEqual(unpack(pack(toWire(m))))
  })

  it('refuses a message over the frame limit, naming its size', () => {
    const m: Message = {
      type: MessageType.DISPATCH,
      seq: 1,
      jobs: Array.from({ length: 100 }, (_, i) => ({
        id: `id-${i}`,
        name: 'noop',
        args: Buffer.alloc(0),
        dueAt: 0,
        run: 1,
      })),
    }
    const size = encodeMessageFrame(m, 1 << 30).length - FRAME_HEADER_SIZE
    expect(() => encodeMessageFrame(m, size - 1)).toThrow(FrameTooLargeError)
    expect(() => encodeMessageFrame(m, size - 1)).toThrow(String(size))
    expect(encodeMessageFrame(m, size).length).toBe(size + FRAME_HEADER_SIZE)
  })
})
