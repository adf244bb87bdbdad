import { FrameTooLargeError } from '../errors.js'

/** Bytes of the big-endian length prefix in front of every frame body. */
export const FRAME_HEADER_SIZE = 4
export const DEFAULT_MAX_FRAME_SIZE = 16 * 1024 * 1024
/**
 * The largest frame either side accepts before its peer has proven itself (see
 * Connection.authenticated). Every handshake message is small but one: the node's hello
 * lists its job names, and 64 KiB holds about 1,500 names of 40 characters. A stranger
 * may make a distributor buffer at most this much per connection, and the distributor also
 * caps the sum over all such connections (maxHandshakeBytes).
 */
export const HANDSHAKE_MAX_FRAME_SIZE = 64 * 1024

/** Where the decoder delivers each complete frame body. */
export interface FrameSink {
  onFrame(body: Uint8Array): void
}

/** Prefixes a body with its length. */
export function encodeFrame(body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_SIZE + body.length)
  out.writeUInt32BE(body.length, 0)
  out.set(body, FRAME_HEADER_SIZE)
  return out
}

const State = { HEADER: 0, BODY: 1, FAILED: 2 } as const
type State = (typeof State)[keyof typeof State]

/**
 * Incremental frame decoder. It knows no sockets: bytes go in through `push`, whole frame
 * bodies come out through the sink.
 *
 * States: HEADER (waiting for 4 length bytes) → BODY (waiting for `length` bytes) → HEADER …;
 * FAILED after a length over `maxFrameSize`, which is terminal (the stream cannot be
 * resynchronised, so the owner must drop the connection).
 *
 * INVARIANT: `buffered` is the sum of the lengths of `chunks`, and `chunks[0]` starts at
 * offset `head`. A length is checked against the limit BEFORE anything is allocated for it.
 * A body that lies inside one chunk is delivered as a view of it (no copy).
 */
export class FrameDecoder {
  private chunks: Buffer[] = []
  private head = 0
  private buffered = 0
  private state: State = State.HEADER
  private bodyLength = 0

  constructor(
    private readonly sink: FrameSink,
    /** May be raised between frames (after a handshake); a frame under way is checked already. */
    public maxFrameSize: number = DEFAULT_MAX_FRAME_SIZE,
  ) {}

  /** Bytes received but not yet delivered as a frame. */
  get pending(): number {
    return this.buffered
  }

  get failed(): boolean {
    return this.state === State.FAILED
  }

  /** Feeds bytes; throws FrameTooLargeError (and stays failed) on an oversized length. */
  push(chunk: Buffer): void {
    if (this.state === State.FAILED) return
    if (chunk.length === 0) return
    this.chunks.push(chunk)
    this.buffered += chunk.length
    for (;;) {
      if (this.state === State.HEADER) {
        if (this.buffered < FRAME_HEADER_SIZE) return
        const length = this.readLength()
        if (length > this.maxFrameSize) {
          this.state = State.FAILED
          this.chunks = []
          this.buffered = 0
          throw new FrameTooLargeError(length, this.maxFrameSize)
        }
        this.consume(FRAME_HEADER_SIZE)
        this.bodyLength = length
        this.state = State.BODY
      }
      if (this.buffered < this.bodyLength) return
      const body = this.consume(this.bodyLength)
      this.state = State.HEADER
      this.sink.onFrame(body)
      if (this.state !== State.HEADER) return // the sink may have reset or failed us
    }
  }

  /** Drops buffered bytes (the owner closed the stream). */
  reset(): void {
    this.chunks = []
    this.head = 0
    this.buffered = 0
    this.state = State.HEADER
  }

  private readLength(): number {
    const first = this.chunks[0] as Buffer
    if (first.length - this.head >= FRAME_HEADER_SIZE) return first.readUInt32BE(this.head)
    const header = this.peekBytes(FRAME_HEADER_SIZE)
    return header.readUInt32BE(0)
  }

  private peekBytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n)
    let filled = 0
    let offset = this.head
    for (const chunk of this.chunks) {
      const take = Math.min(chunk.length - offset, n - filled)
      chunk.copy(out, filled, offset, offset + take)
      filled += take
      offset = 0
      if (filled === n) break
    }
    return out
  }

  /** Removes `n` buffered bytes and returns them, as a view when they lie in one chunk. */
  private consume(n: number): Buffer {
    this.buffered -= n
    const first = this.chunks[0]
    if (n === 0) return Buffer.alloc(0)
    if (first !== undefined && first.length - this.head >= n) {
      const view = first.subarray(this.head, this.head + n)
      this.head += n
      if (this.head === first.length) {
        this.chunks.shift()
        this.head = 0
      }
      return view
    }
    const out = Buffer.allocUnsafe(n)
    let filled = 0
    let used = 0
    // Walk the chunks by index and drop the spent ones in one splice: shifting per chunk
    // would make a body that arrives in many small pieces cost quadratic time.
    while (filled < n) {
      const chunk = this.chunks[used] as Buffer
      const take = Math.min(chunk.length - this.head, n - filled)
      chunk.copy(out, filled, this.head, this.head + take)
      filled += take
      this.head += take
      if (this.head === chunk.length) {
        used++
        this.head = 0
      }
    }
    this.chunks.splice(0, used)
    return out
  }
}
