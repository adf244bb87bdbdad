import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ErrorCode, FrameTooLargeError, JobsError, ProtocolError } from '../../src/errors.js'
import { createLogger } from '../../src/logger.js'
import { Connection } from '../../src/protocol/connection.js'
import { encodeFrame, FRAME_HEADER_SIZE, FrameDecoder } from '../../src/protocol/frame.js'
import { MessageType, type Message } from '../../src/protocol/messages.js'
import { parseMessage } from '../../src/protocol/parse-message.js'
import { pack, unpack } from '../../src/protocol/msgpack.js'
import {
  anyValue,
  chunked,
  frameish,
  message,
  packOrEmpty,
  params,
  referenceConnection,
} from '../helpers/protocol-arbitraries.js'
import { asReceived, toWire } from '../helpers/wire-form.js'

// Property-based: a Connection, over a socket driven by hand, against a hostile peer (fixed seeds).

// --- a Connection over a socket we drive by hand --------------------------------------

/** Just enough of a net.Socket for Connection: data goes in with emit('data'), writes are kept. */
class ScriptedSocket extends EventEmitter {
  readonly remoteAddress = '192.0.2.1'
  readonly remotePort = 4242
  destroyed = false
  ended = false
  readonly written: Buffer[] = []

  setNoDelay(): this {
    return this
  }

  write(data: Buffer): boolean {
    this.written.push(Buffer.from(data))
    return true
  }

  end(): this {
    this.ended = true
    return this
  }

  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true
      this.emit('close', false)
    }
    return this
  }

  /** Every frame we wrote to the peer, validated as the peer would. */
  writtenMessages(): Message[] {
    const out: Message[] = []
    const decoder = new FrameDecoder({ onFrame: (body) => out.push(parseMessage(unpack(body))) })
    for (const chunk of this.written) decoder.push(chunk)
    expect(decoder.pending).toBe(0)
    return out
  }
}

const silent = createLogger('silent')

interface Harness {
  socket: ScriptedSocket
  connection: Connection
  delivered: Message[]
  closes: (JobsError | undefined)[]
}

function connectionHarness(maxFrameSize: number): Harness {
  const socket = new ScriptedSocket()
  const delivered: Message[] = []
  const closes: (JobsError | undefined)[] = []
  const connection = new Connection(
    socket as unknown as Socket,
    { maxFrameSize, stallTimeoutMs: 1000, log: silent },
    {
      onMessage: (m) => {
        // Nothing reaches the handler once the connection is closing.
        expect(connection.isOpen).toBe(true)
        delivered.push(m)
      },
      onClose: (reason) => closes.push(reason),
    },
  )
  return { socket, connection, delivered, closes }
}

/** Feeds chunks as socket reads; nothing a peer sends may throw out of the 'data' handler. */
function feed(h: Harness, chunks: Buffer[]): void {
  for (const chunk of chunks) h.socket.emit('data', chunk)
}

/** The connection closed because of the peer: one onClose with `code`, and an error frame naming it sent last. */
function expectClosedFor(h: Harness, code: string): JobsError {
  expect(h.connection.isOpen).toBe(false)
  h.socket.destroy() // what the 2 s linger timer (or the peer's FIN) would do
  expect(h.closes).toHaveLength(1)
  const reason = h.closes[0]
  expect(reason).toBeInstanceOf(JobsError)
  expect(reason?.code).toBe(code)
  const sent = h.socket.writtenMessages()
  expect(sent.at(-1)).toEqual({ type: MessageType.ERROR, code, message: reason?.message })
  return reason as JobsError
}

describe('Connection against a hostile peer', () => {
  it('delivers the valid prefix of an arbitrary stream and closes with a protocol or frame-size error, never throwing', () => {
    fc.assert(
      fc.property(chunked(frameish), fc.integer({ min: 4096, max: 4200 }), ({ bytes, chunks }, maxFrameSize) => {
        const expected = referenceConnection(bytes, maxFrameSize)
        const h = connectionHarness(maxFrameSize)
        feed(h, chunks)
        expect(h.delivered).toEqual(expected.messages)
        if (expected.closeCode === undefined) {
          expect(h.connection.isOpen).toBe(true)
          expect(h.socket.written).toHaveLength(0)
          expect(h.closes).toHaveLength(0)
        } else {
          const reason = expectClosedFor(h, expected.closeCode)
          expect(reason instanceof ProtocolError || reason instanceof FrameTooLargeError).toBe(true)
        }
      }),
      params(),
    )
  })

  it('closes on a garbage frame after valid ones, having delivered every valid one and nothing after', () => {
    const garbage = fc.oneof(
      fc.constant(Buffer.from([0x81])), // a map that never gets its entry
      fc.constant(Buffer.alloc(0)),
      anyValue.filter((v) => typeof v !== 'object' || v === null || Array.isArray(v)).map(packOrEmpty),
      fc
        .string({ maxLength: 20 })
        .filter((t) => !(Object.values(MessageType) as string[]).includes(t))
        .map((type) => pack({ type })),
    )
    fc.assert(
      fc.property(
        fc.array(message, { maxLength: 5 }),
        garbage,
        fc.array(message, { minLength: 1, maxLength: 3 }),
        (before, bad, after) => {
          const bytes = Buffer.concat([
            ...before.map((m) => encodeFrame(pack(toWire(m)))),
            encodeFrame(bad),
            ...after.map((m) => encodeFrame(pack(toWire(m)))),
          ])
          const h = connectionHarness(1 << 20)
          feed(h, [bytes])
          expect(h.delivered).toEqual(before.map(asReceived))
          expectClosedFor(h, ErrorCode.PROTOCOL)
        },
      ),
      params(),
    )
  })

  it("closes on 100,000 nested arrays or maps with a ProtocolError (msgpackr's RangeError wrapped), and the next connection decodes normally", () => {
    const depth = 100_000
    const nestedArrays = Buffer.concat([Buffer.alloc(depth, 0x91), Buffer.from([0xc0])])
    const nestedMaps = Buffer.concat([
      Buffer.from(Array.from({ length: depth }, () => [0x81, 0xa1, 0x61]).flat()),
      Buffer.from([0xc0]),
    ])
    // Also as the value of a field of an otherwise valid message.
    const prefix = pack({ type: 'dispatch', seq: 1, jobs: null }) // 0x83 … 'jobs' 0xc0: swap the nil for the nest
    expect(prefix.at(-1)).toBe(0xc0)
    const nestedInField = Buffer.concat([prefix.subarray(0, -1), nestedArrays])

    for (const body of [nestedArrays, nestedMaps, nestedInField]) {
      expect(() => unpack(body)).toThrow(RangeError)
      const h = connectionHarness(1 << 20)
      feed(h, [encodeFrame(body)])
      const reason = expectClosedFor(h, ErrorCode.PROTOCOL)
      expect(reason).toBeInstanceOf(ProtocolError)
      expect(reason.message).toMatch(/^undecodable frame: .*call stack/)
      expect(h.delivered).toEqual([])

      // msgpackr keeps module-level decode state: it must be clean for everyone else.
      const other = connectionHarness(1 << 20)
      feed(other, [encodeFrame(pack({ type: 'state', accepting: true }))])
      expect(other.delivered).toEqual([{ type: 'state', accepting: true }])
      expect(other.connection.isOpen).toBe(true)
    }
  })

  it('answers a frame over maxFrameSize with ERR_FRAME_TOO_LARGE naming the size, before its body arrives', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 4097, max: 0xffff_ffff }),
        fc.array(message, { maxLength: 3 }),
        (length, before) => {
          const header = Buffer.alloc(FRAME_HEADER_SIZE)
          header.writeUInt32BE(length, 0)
          const h = connectionHarness(4096)
          feed(h, [Buffer.concat([...before.map((m) => encodeFrame(pack(toWire(m)))), header])])
          expect(h.delivered).toEqual(before.map(asReceived))
          // The socket is torn down at once: the stream cannot be resynchronised.
          expect(h.socket.destroyed).toBe(true)
          const reason = expectClosedFor(h, ErrorCode.FRAME_TOO_LARGE)
          expect(reason.message).toContain(String(length))
        },
      ),
      params(100),
    )
  })
})
