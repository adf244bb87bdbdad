import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ErrorCode, FrameTooLargeError, JobsError, ProtocolError } from '../../src/errors.js'
import { createLogger } from '../../src/logger.js'
import { Connection } from '../../src/protocol/connection.js'
import { encodeMessageFrame } from '../../src/protocol/encode.js'
import { encodeFrame, FRAME_HEADER_SIZE, FrameDecoder } from '../../src/protocol/frame.js'
import { MessageType, parseMessage, type Message } from '../../src/protocol/messages.js'
import { pack, unpack } from '../../src/protocol/msgpack.js'
import { asReceived, toWire } from '../helpers/wire-form.js'

/*
 * Property-based tests of everything a peer's bytes go through before they are trusted:
 * FrameDecoder → msgpack unpack → parseMessage, alone and wired together in a Connection.
 * Fixed seeds: a failure replays the same way on every machine.
 */

const SEED = 0x5eed_4a52
const RUNS = 300
const params = (numRuns = RUNS): fc.Parameters<unknown> => ({ seed: SEED, numRuns })

// --- arbitraries ------------------------------------------------------------------------

const text = fc.string({ unit: 'grapheme', maxLength: 24 })
const bin = fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b))
const nat = fc.oneof(fc.nat(), fc.maxSafeNat())
/** Finite numbers; -0 is left out because msgpack (rightly) carries it as the integer 0. */
const finite = fc.oneof(
  fc.integer(),
  fc.maxSafeInteger(),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (Object.is(x, -0) ? 0 : x)),
)

const retry = fc.oneof(
  fc.record({ strategy: fc.constant('linear' as const), multiplier: finite }),
  fc.record({ strategy: fc.constant('fixed' as const), delay: finite }),
  fc.record({ strategy: fc.constant('exponential' as const), base: finite, max: finite, jitter: finite }),
)

const wireJob = fc.record(
  {
    id: text,
    name: text,
    args: bin,
    dueAt: finite,
    run: nat,
    period: finite,
    defer: fc.boolean(),
    maxAttempt: nat,
    retry,
    timeout: finite,
  },
  { requiredKeys: ['id', 'name', 'args', 'dueAt', 'run'] },
)

// A result: a map, as the object or as the bytes a node packed it into.
const resultArgs = fc.dictionary(text, fc.oneof(text, fc.integer(), fc.boolean()), { maxKeys: 3 })
const wireFeedback = fc.record({
  id: text,
  run: nat,
  kind: fc.constantFrom('success' as const, 'error' as const),
  final: fc.boolean(),
  cancelled: fc.boolean(),
  args: fc.oneof(resultArgs, resultArgs.map((o) => pack(o))),
})

/** Any valid message of the protocol, as a sender would build it. */
const message: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ type: fc.constant(MessageType.CHALLENGE), protocolVersion: nat, nonce: bin, auth: fc.boolean() }),
  fc.record(
    {
      type: fc.constant(MessageType.HELLO),
      protocolVersion: nat,
      version: text,
      node: text,
      jobs: fc.array(text, { maxLength: 5 }),
      concurrency: nat,
      window: nat,
      durable: fc.boolean(),
      nonce: bin,
      proof: bin,
    },
    { requiredKeys: ['type', 'protocolVersion', 'version', 'node', 'jobs', 'concurrency', 'window', 'durable', 'nonce'] },
  ),
  fc.record(
    { type: fc.constant(MessageType.WELCOME), distributor: text, heartbeatMs: nat, proof: bin },
    { requiredKeys: ['type', 'distributor', 'heartbeatMs'] },
  ),
  fc.record({ type: fc.constant(MessageType.ERROR), code: text, message: text }),
  fc.record({ type: fc.constant(MessageType.PING) }),
  fc.record({ type: fc.constant(MessageType.DISPATCH), seq: nat, jobs: fc.array(wireJob, { maxLength: 4 }) }),
  fc.record({ type: fc.constant(MessageType.ACCEPTED), seq: nat }),
  fc.record({ type: fc.constant(MessageType.REJECTED), seq: nat, ids: fc.array(text, { maxLength: 5 }), code: text, message: text }),
  fc.record({ type: fc.constant(MessageType.STATE), accepting: fc.boolean() }),
  fc.record({ type: fc.constant(MessageType.FEEDBACK), seq: nat, items: fc.array(wireFeedback, { maxLength: 4 }) }),
  fc.record({ type: fc.constant(MessageType.FEEDBACK_ACK), seq: nat }),
  fc.record({ type: fc.constant(MessageType.CANCEL), id: text }),
  fc.record({
    type: fc.constant(MessageType.CANCEL_RESULT),
    id: text,
    outcome: fc.constantFrom('cancelled' as const, 'finished' as const, 'unknown' as const),
  }),
)

/** Any msgpack-able value a hostile peer could encode, odd containers included. */
const anyValue = fc.anything({
  withMap: true,
  withSet: true,
  withDate: true,
  withTypedArray: true,
  withSparseArray: true,
  withNullPrototype: true,
  withBoxedValues: true,
  withObjectString: true,
  maxDepth: 4,
})

/** Cut points for a byte string: the chunks a socket might deliver it in (empty ones included). */
function chunked<T extends Uint8Array>(bytes: fc.Arbitrary<T>): fc.Arbitrary<{ bytes: T; chunks: Buffer[] }> {
  return bytes.chain((b) =>
    fc.array(fc.nat({ max: b.length }), { maxLength: 24 }).map((cuts) => {
      const points = [...cuts].sort((x, y) => x - y)
      const chunks: Buffer[] = []
      let from = 0
      for (const p of points) {
        chunks.push(Buffer.from(b.subarray(from, p)))
        from = p
      }
      chunks.push(Buffer.from(b.subarray(from)))
      return { bytes: b, chunks }
    }),
  )
}

/**
 * A stream that looks like frames often enough to get past the first header: a mix of
 * well-formed frames (with garbage or msgpack bodies), random bytes, and headers that
 * declare huge lengths.
 */
const frameish = fc
  .array(
    fc.oneof(
      fc.uint8Array({ maxLength: 80 }).map((b) => encodeFrame(b)),
      anyValue.map((v) => encodeFrame(packOrEmpty(v))),
      message.map((m) => encodeFrame(pack(toWire(m)))),
      fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b)),
      fc.integer({ min: 0, max: 0xffff_ffff }).map((n) => {
        const header = Buffer.alloc(FRAME_HEADER_SIZE)
        header.writeUInt32BE(n, 0)
        return header
      }),
    ),
    { maxLength: 8 },
  )
  .map((parts) => Buffer.concat(parts))

function packOrEmpty(value: unknown): Buffer {
  try {
    return pack(value)
  } catch {
    return Buffer.alloc(0) // a value msgpackr will not encode: an empty body is garbage too
  }
}

// --- reference model --------------------------------------------------------------------

/** What a correct decoder must make of `bytes`, read sequentially. */
function referenceFrames(bytes: Uint8Array, maxFrameSize: number): { bodies: Buffer[]; tooLarge: number | undefined; pending: number } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
  const bodies: Buffer[] = []
  let pos = 0
  while (buf.length - pos >= FRAME_HEADER_SIZE) {
    const length = buf.readUInt32BE(pos)
    if (length > maxFrameSize) return { bodies, tooLarge: length, pending: 0 }
    if (buf.length - pos - FRAME_HEADER_SIZE < length) return { bodies, tooLarge: undefined, pending: buf.length - pos - FRAME_HEADER_SIZE }
    bodies.push(buf.subarray(pos + FRAME_HEADER_SIZE, pos + FRAME_HEADER_SIZE + length))
    pos += FRAME_HEADER_SIZE + length
  }
  return { bodies, tooLarge: undefined, pending: buf.length - pos }
}

/** What a Connection must deliver for `bytes`: the valid messages up to the first bad frame, and the close code. */
function referenceConnection(bytes: Uint8Array, maxFrameSize: number): { messages: Message[]; closeCode: string | undefined } {
  const { bodies, tooLarge } = referenceFrames(bytes, maxFrameSize)
  const messages: Message[] = []
  for (const body of bodies) {
    try {
      messages.push(parseMessage(unpack(body)))
    } catch {
      return { messages, closeCode: ErrorCode.PROTOCOL }
    }
  }
  return { messages, closeCode: tooLarge === undefined ? undefined : ErrorCode.FRAME_TOO_LARGE }
}

/** Runs `fn` and returns what it threw (undefined when it returned). */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn()
    return undefined
  } catch (err) {
    return err
  }
}

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

// ---------------------------------------------------------------------------------------

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
          expect((failure as FrameTooLargeError).message).toContain(`frame of ${expected.tooLarge} bytes exceeds maxFrameSize ${maxFrameSize}`)
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
      chunked(fc.constant(Buffer.concat(messages.map((m) => encodeFrame(pack(toWire(m))))))).map((c) => ({ messages, ...c })),
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
      0, 1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, 1_700_000_000_123, Number.MAX_SAFE_INTEGER, 1.5,
      -1, -32, -33, -128, -129, -32_768, -32_769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 40), -0.5,
    ]
    const args = lengths.map((n) => Buffer.alloc(n, 7))
    const jobs = strings.map((id, i) => ({ id, name: strings[(i * 7) % strings.length] as string, args: args[i % args.length] as Buffer, dueAt: numbers[i % numbers.length] as number, run: i }))
    const seqs = numbers.filter((n) => Number.isInteger(n) && n >= 0)
    const results = lengths.map((n) => pack({ s: 'r'.repeat(n) }))
    const many = Array.from({ length: 70_000 }, (_, i) => ({ id: `id-${i}`, run: i, kind: 'success' as const, final: true, cancelled: false, args: pack({}) }))
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
      { type: MessageType.FEEDBACK, seq: 65_536, items: numbers.map((run, i) => ({ id: strings[i] as string, run: Math.max(0, Math.floor(run)), kind: i % 2 ? 'error' : 'success', final: i % 3 === 0, cancelled: i % 5 === 0, args: results[i % results.length] as Buffer })) },
    ]
    for (const m of samples) expect(decode(encodeMessageFrame(m, 1 << 30))).toEqual(unpack(pack(toWire(m))))
  })

  it('refuses a message over the frame limit, naming its size', () => {
    const m: Message = {
      type: MessageType.DISPATCH,
      seq: 1,
      jobs: Array.from({ length: 100 }, (_, i) => ({ id: `id-${i}`, name: 'noop', args: Buffer.alloc(0), dueAt: 0, run: 1 })),
    }
    const size = encodeMessageFrame(m, 1 << 30).length - FRAME_HEADER_SIZE
    expect(() => encodeMessageFrame(m, size - 1)).toThrow(FrameTooLargeError)
    expect(() => encodeMessageFrame(m, size - 1)).toThrow(String(size))
    expect(encodeMessageFrame(m, size).length).toBe(size + FRAME_HEADER_SIZE)
  })
})

describe('msgpack and message validation against arbitrary input', () => {
  it('unpack of arbitrary bytes returns or throws an Error, and parseMessage of the result returns or throws ProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
        let value: unknown
        const unpackErr = thrownBy(() => (value = unpack(bytes)))
        if (unpackErr !== undefined) {
          expect(unpackErr).toBeInstanceOf(Error)
          return
        }
        const err = thrownBy(() => parseMessage(value))
        if (err !== undefined) expect(err).toBeInstanceOf(ProtocolError)
      }),
      params(1000),
    )
  })

  it('parseMessage of arbitrary values (odd containers, null prototypes, boxed values) only ever throws ProtocolError', () => {
    fc.assert(
      fc.property(anyValue, (value) => {
        const err = thrownBy(() => parseMessage(value))
        if (err !== undefined) expect(err).toBeInstanceOf(ProtocolError)
        // and what a peer can actually send: the value after a msgpack round trip
        const body = packOrEmpty(value)
        let decoded: unknown
        if (thrownBy(() => (decoded = unpack(body))) !== undefined) return
        const err2 = thrownBy(() => parseMessage(decoded))
        if (err2 !== undefined) expect(err2).toBeInstanceOf(ProtocolError)
      }),
      params(),
    )
  })

  it('a valid message with one required field of the wrong type is refused, naming the field', () => {
    /** A coarse JSON-ish kind: a replacement of another kind can never pass the field's check. */
    const kind = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : v instanceof Uint8Array ? 'bin' : typeof v)
    const wrong = [
      'text',
      -1.5,
      7,
      true,
      null,
      [],
      ['x'],
      {},
      { type: 'ping' },
      Buffer.from([1, 2]),
    ]
    const mutated = message
      .filter((m) => Object.keys(m).some((k) => k !== 'type' && k !== 'proof'))
      .chain((m) => {
        const keys = Object.keys(m).filter((k) => k !== 'type' && k !== 'proof')
        return fc.tuple(fc.constant(m), fc.constantFrom(...keys), fc.constantFrom(...wrong))
      })
      .filter(([m, key, replacement]) => kind((m as unknown as Record<string, unknown>)[key]) !== kind(replacement))
    fc.assert(
      fc.property(mutated, ([m, key, replacement]) => {
        const bad = { ...toWire(m), [key]: replacement }
        const err = thrownBy(() => parseMessage(unpack(pack(bad))))
        expect(err).toBeInstanceOf(ProtocolError)
        expect((err as ProtocolError).message).toContain(`'${m.type}.${key}`)
      }),
      params(),
    )
  })

  it('an unknown message type is refused with its name (cut to 64 characters), and a non-string type is named as such', () => {
    const known = new Set<string>(Object.values(MessageType))
    fc.assert(
      fc.property(
        fc.oneof(text, fc.string({ minLength: 65, maxLength: 500 })).filter((t) => !known.has(t)),
        fc.dictionary(text, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
        (type, extra) => {
          const err = thrownBy(() => parseMessage(unpack(pack({ ...extra, type }))))
          expect(err).toBeInstanceOf(ProtocolError)
          expect((err as ProtocolError).message).toBe(`unknown message type '${type.slice(0, 64)}'`)
        },
      ),
      params(),
    )
    fc.assert(
      fc.property(anyValue.filter((t) => typeof t !== 'string'), (type) => {
        const err = thrownBy(() => parseMessage({ type }))
        expect(err).toBeInstanceOf(ProtocolError)
        expect((err as ProtocolError).message).toBe(`'message.type' must be a string`)
      }),
      params(),
    )
  })

  it('huge declared lengths inside msgpack (str32, bin32, array32, map32, ext32) fail fast without allocating them', () => {
    const tags = [0xdb, 0xc6, 0xdd, 0xdf, 0xc9]
    fc.assert(
      fc.property(fc.constantFrom(...tags), fc.integer({ min: 1 << 20, max: 0xffff_ffff }), fc.uint8Array({ maxLength: 64 }), (tag, length, tail) => {
        const head = Buffer.alloc(5)
        head[0] = tag
        head.writeUInt32BE(length, 1)
        const body = Buffer.concat([head, tail])
        const before = process.memoryUsage().arrayBuffers
        const err = thrownBy(() => unpack(body))
        expect(err).toBeInstanceOf(Error)
        // A 1 MiB+ allocation would show; the odd few KiB of bookkeeping does not.
        expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1 << 20)
      }),
      params(100),
    )
  })
})

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
      fc.string({ maxLength: 20 }).filter((t) => !(Object.values(MessageType) as string[]).includes(t)).map((type) => pack({ type })),
    )
    fc.assert(
      fc.property(fc.array(message, { maxLength: 5 }), garbage, fc.array(message, { minLength: 1, maxLength: 3 }), (before, bad, after) => {
        const bytes = Buffer.concat([...before.map((m) => encodeFrame(pack(toWire(m)))), encodeFrame(bad), ...after.map((m) => encodeFrame(pack(toWire(m))))])
        const h = connectionHarness(1 << 20)
        feed(h, [bytes])
        expect(h.delivered).toEqual(before.map(asReceived))
        expectClosedFor(h, ErrorCode.PROTOCOL)
      }),
      params(),
    )
  })

  it('closes on 100,000 nested arrays or maps with a ProtocolError (msgpackr\'s RangeError wrapped), and the next connection decodes normally', () => {
    const depth = 100_000
    const nestedArrays = Buffer.concat([Buffer.alloc(depth, 0x91), Buffer.from([0xc0])])
    const nestedMaps = Buffer.concat([Buffer.from(Array.from({ length: depth }, () => [0x81, 0xa1, 0x61]).flat()), Buffer.from([0xc0])])
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
      fc.property(fc.integer({ min: 4097, max: 0xffff_ffff }), fc.array(message, { maxLength: 3 }), (length, before) => {
        const header = Buffer.alloc(FRAME_HEADER_SIZE)
        header.writeUInt32BE(length, 0)
        const h = connectionHarness(4096)
        feed(h, [Buffer.concat([...before.map((m) => encodeFrame(pack(toWire(m)))), header])])
        expect(h.delivered).toEqual(before.map(asReceived))
        // The socket is torn down at once: the stream cannot be resynchronised.
        expect(h.socket.destroyed).toBe(true)
        const reason = expectClosedFor(h, ErrorCode.FRAME_TOO_LARGE)
        expect(reason.message).toContain(String(length))
      }),
      params(100),
    )
  })
})
