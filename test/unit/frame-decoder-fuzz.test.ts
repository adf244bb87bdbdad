import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { FrameTooLargeError, type JobsError } from '../../src/errors.js'
import { encodeFrame, FRAME_HEADER_SIZE, FrameDecoder } from '../../src/protocol/frame.js'
import type { Message } from '../../src/protocol/messages.js'
import { parseMessage } from '../../src/protocol/parse-message.js'
import { pack, unpack } from '../../src/protocol/msgpack.js'
import { chunked, frameish, message, params, referenceFrames, thrownBy } from '../helpers/protocol-arbitraries.js'
import { asReceived, toWire } from '../helpers/wire-form.js'

// Property-based: FrameDecoder fed arbitrary bytes at arbitrary splits (fixed seeds).

describe('FrameDecoder against arbitrary bytes', () => {
  it('delivers exactly the frames a sequential reader sees, throws only FrameTooLargeError, and buffers no more than one frame', () => {
    fc.assert(
      fc.property(chunked(frameish), fc.integer({ min: 0, max: 300 }), ({ bytes, chunks }, maxFrameSize) => {
        const bodies: Buffer[] = []
        const decoder = new FrameDecoder({ onFrame: (b) => bodies.push(Buffer.from(b)) }, maxFrameSize)
        const internals = decoder as unknown as { chunks: Buffer[]; head: number }
        const expected = referenceFrames(bytes, maxFrameSize)
        let failure: unknown
        let largestChunk = 0
        for (const chunk of chunks) {
          largestChunk = Math.max(largestChunk, chunk.length)
          const err = thrownBy(() => decoder.push(chunk))
          if (err !== undefined) {
            expect(failure).toBeUndefined() // it throws once, then ignores input
            failure = err
          }
          // The documented invariant, and the bound it gives: what is held is at most one
          // frame (its header included) plus the unread tail of the chunk it started in.
          const held = internals.chunks.reduce((n, c) => n + c.length, 0)
          expect(held - (internals.chunks.length === 0 ? 0 : internals.head)).toBe(decoder.pending)
          expect(decoder.pending).toBeLessThanOrEqual(Math.max(maxFrameSize, FRAME_HEADER_SIZE))
          expect(held).toBeLessThanOrEqual(maxFrameSize + FRAME_HEADER_SIZE + largestChunk)
        }
        expect(bodies).toEqual(expected.bodies)
        if (expected.tooLarge === undefined) {
          expect(failure).toBeUndefined()
          expect(decoder.failed).toBe(false)
          expect(decoder.pending).toBe(expected.pending)
        } else {
          expect(failure).toBeInstanceOf(FrameTooLargeError)
          expect((failure as FrameTooLargeError).message).toContain(
            `frame of ${expected.tooLarge} bytes exceeds maxFrameSize ${maxFrameSize}`,
          )
          expect(decoder.failed).toBe(true)
          expect(decoder.pending).toBe(0)
        }
      }),
      params(),
    )
  })

  it('rejects a huge declared length from its 4 header bytes alone, allocating nothing for it', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1025, max: 0xffff_ffff }), fc.nat({ max: 3 }), (length, split) => {
        const header = Buffer.alloc(FRAME_HEADER_SIZE)
        header.writeUInt32BE(length, 0)
        let frames = 0
        const decoder = new FrameDecoder({ onFrame: () => frames++ }, 1024)
        decoder.push(header.subarray(0, split))
        const err = thrownBy(() => decoder.push(header.subarray(split)))
        expect(err).toBeInstanceOf(FrameTooLargeError)
        expect((err as JobsError).code).toBe('ERR_FRAME_TOO_LARGE')
        expect(decoder.pending).toBe(0)
        // Failed for good: a body that follows is neither buffered nor delivered.
        expect(thrownBy(() => decoder.push(Buffer.alloc(2048, 1)))).toBeUndefined()
        expect(decoder.pending).toBe(0)
        expect(frames).toBe(0)
      }),
      params(),
    )
  })

  it('decodes valid frames split at arbitrary points into the messages that were sent', () => {
    const stream = fc.array(message, { minLength: 1, maxLength: 6 }).chain((messages) =>
      chunked(fc.constant(Buffer.concat(messages.map((m) => encodeFrame(pack(toWire(m))))))).map((c) => ({
        messages,
        ...c,
      })),
    )
    fc.assert(
      fc.property(stream, ({ messages, chunks }) => {
        const got: Message[] = []
        const decoder = new FrameDecoder({ onFrame: (body) => got.push(parseMessage(unpack(body))) })
        for (const chunk of chunks) decoder.push(chunk)
        expect(got).toEqual(messages.map(asReceived))
        expect(decoder.pending).toBe(0)
      }),
      params(),
    )
  })
})
