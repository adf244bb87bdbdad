import fc from 'fast-check'
import { ErrorCode } from '../../src/errors.js'
import { encodeFrame, FRAME_HEADER_SIZE } from '../../src/protocol/frame.js'
import { MessageType, type Message } from '../../src/protocol/messages.js'
import { parseMessage } from '../../src/protocol/parse-message.js'
import { pack, unpack } from '../../src/protocol/msgpack.js'
import { toWire } from './wire-form.js'

/*
 * Arbitraries and reference models for the property-based tests of everything a peer's
 * bytes go through before they are trusted: FrameDecoder → msgpack unpack → parseMessage,
 * alone and wired together in a Connection. Fixed seeds: a failure replays the same way on
 * every machine.
 */

export const SEED = 0x5eed_4a52
export const RUNS = 300
export const params = (numRuns = RUNS): fc.Parameters<unknown> => ({ seed: SEED, numRuns })

// --- arbitraries ------------------------------------------------------------------------

export const text = fc.string({ unit: 'grapheme', maxLength: 24 })
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
  name: fc.option(text, { nil: undefined }),
  run: nat,
  kind: fc.constantFrom('success' as const, 'error' as const),
  final: fc.boolean(),
  cancelled: fc.boolean(),
  args: fc.oneof(
    resultArgs,
    resultArgs.map((o) => pack(o)),
  ),
})

// A progress value: a finite number or a small map.
const wireProgress = fc.record({
  id: text,
  name: text,
  run: nat,
  value: fc.oneof(finite, resultArgs),
})

/** Any valid message of the protocol, as a sender would build it. */
export const message: fc.Arbitrary<Message> = fc.oneof(
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
    {
      requiredKeys: ['type', 'protocolVersion', 'version', 'node', 'jobs', 'concurrency', 'window', 'durable', 'nonce'],
    },
  ),
  fc.record(
    {
      type: fc.constant(MessageType.WELCOME),
      group: text,
      name: text,
      answersFor: fc.array(text, { maxLength: 3 }),
      heartbeatMs: nat,
      proof: bin,
    },
    { requiredKeys: ['type', 'group', 'name', 'heartbeatMs'] },
  ),
  fc.record({ type: fc.constant(MessageType.ERROR), code: text, message: text }),
  fc.record({ type: fc.constant(MessageType.PING) }),
  fc.record({ type: fc.constant(MessageType.DISPATCH), seq: nat, jobs: fc.array(wireJob, { maxLength: 4 }) }),
  fc.record({ type: fc.constant(MessageType.ACCEPTED), seq: nat }),
  fc.record({
    type: fc.constant(MessageType.REJECTED),
    seq: nat,
    ids: fc.array(text, { maxLength: 5 }),
    code: text,
    message: text,
  }),
  fc.record({ type: fc.constant(MessageType.STATE), accepting: fc.boolean() }),
  fc.record({ type: fc.constant(MessageType.FEEDBACK), seq: nat, items: fc.array(wireFeedback, { maxLength: 4 }) }),
  fc.record({ type: fc.constant(MessageType.FEEDBACK_ACK), seq: nat }),
  fc.record({ type: fc.constant(MessageType.CANCEL), id: text }),
  fc.record({
    type: fc.constant(MessageType.CANCEL_RESULT),
    id: text,
    outcome: fc.constantFrom('cancelled' as const, 'finished' as const, 'unknown' as const),
  }),
  fc.record({ type: fc.constant(MessageType.WAITING), ids: fc.array(text, { maxLength: 5 }) }),
  fc.record({
    type: fc.constant(MessageType.RATE_LIMITED),
    id: text,
    seconds: fc.double({ min: 0.001, max: 86_400, noNaN: true }),
  }),
  fc.record({ type: fc.constant(MessageType.ANSWERS), names: fc.array(text, { maxLength: 5 }) }),
  fc.record({ type: fc.constant(MessageType.PROGRESS), items: fc.array(wireProgress, { maxLength: 4 }) }),
  fc.record({
    type: fc.constant(MessageType.ADMIN),
    req: fc.nat(),
    request: fc.oneof(
      fc.record({ op: fc.constant('job' as const), id: text }),
      fc.record({ op: fc.constant('retry' as const), id: text }),
      fc.record({ op: fc.constant('quiet' as const), quiet: fc.boolean() }),
      fc.record(
        {
          op: fc.constant('list' as const),
          kind: fc.constantFrom('running' as const, 'scheduled' as const, 'periodic' as const, 'failed' as const),
          cursor: text,
          limit: fc.nat(),
        },
        { requiredKeys: ['op', 'kind', 'limit'] },
      ),
    ),
  }),
)

/** Any msgpack-able value a hostile peer could encode, odd containers included. */
export const anyValue = fc.anything({
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
export function chunked<T extends Uint8Array>(bytes: fc.Arbitrary<T>): fc.Arbitrary<{ bytes: T; chunks: Buffer[] }> {
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
export const frameish = fc
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

export function packOrEmpty(value: unknown): Buffer {
  try {
    return pack(value)
  } catch {
    return Buffer.alloc(0) // a value msgpackr will not encode: an empty body is garbage too
  }
}

// --- reference model --------------------------------------------------------------------

/** What a correct decoder must make of `bytes`, read sequentially. */
export function referenceFrames(
  bytes: Uint8Array,
  maxFrameSize: number,
): { bodies: Buffer[]; tooLarge: number | undefined; pending: number } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
  const bodies: Buffer[] = []
  let pos = 0
  while (buf.length - pos >= FRAME_HEADER_SIZE) {
    const length = buf.readUInt32BE(pos)
    if (length > maxFrameSize) return { bodies, tooLarge: length, pending: 0 }
    if (buf.length - pos - FRAME_HEADER_SIZE < length)
      return { bodies, tooLarge: undefined, pending: buf.length - pos - FRAME_HEADER_SIZE }
    bodies.push(buf.subarray(pos + FRAME_HEADER_SIZE, pos + FRAME_HEADER_SIZE + length))
    pos += FRAME_HEADER_SIZE + length
  }
  return { bodies, tooLarge: undefined, pending: buf.length - pos }
}

/** What a Connection must deliver for `bytes`: the valid messages up to the first bad frame, and the close code. */
export function referenceConnection(
  bytes: Uint8Array,
  maxFrameSize: number,
): { messages: Message[]; closeCode: string | undefined } {
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
export function thrownBy(fn: () => unknown): unknown {
  try {
    fn()
    return undefined
  } catch (err) {
    return err
  }
}
