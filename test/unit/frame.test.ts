import { describe, expect, it } from 'vitest'
import { ErrorCode, FrameTooLargeError } from '../../src/errors.js'
import { DEFAULT_MAX_FRAME_SIZE, encodeFrame, FRAME_HEADER_SIZE, FrameDecoder } from '../../src/protocol/frame.js'
import { seededRandom } from '../helpers/prng.js'

/** Collects what the decoder delivers. */
function collector(maxFrameSize?: number): { decoder: FrameDecoder; frames: Uint8Array[] } {
  const frames: Uint8Array[] = []
  const decoder = new FrameDecoder({ onFrame: (body) => frames.push(body) }, maxFrameSize)
  return { decoder, frames }
}

/** A body whose every byte depends on its index and a tag, so a shifted or mixed-up body shows. */
function body(size: number, tag: number): Buffer {
  const out = Buffer.allocUnsafe(size)
  for (let i = 0; i < size; i++) out[i] = (i * 31 + tag * 7 + (i >>> 8)) & 0xff
  return out
}

interface Stream {
  bodies: Buffer[]
  bytes: Buffer
  /** Stream offset at which each frame ends (header + body). */
  frameEnds: number[]
}

function makeStream(sizes: number[]): Stream {
  const bodies = sizes.map((size, tag) => body(size, tag))
  const frameEnds: number[] = []
  let end = 0
  for (const b of bodies) frameEnds.push((end += FRAME_HEADER_SIZE + b.length))
  return { bodies, bytes: Buffer.concat(bodies.map((b) => encodeFrame(b))), frameEnds }
}

// Covers 0-length bodies (alone and back to back), sizes around the 4-byte header, and
// bodies over 64 KiB (which cross any chunk boundary a socket would produce).
const STREAM = makeStream([
  0, 1, 0, 0, 3, 4, 5, 17, 255, 256, 1000, 4096, 65_535, 65_536, 65_537, 0, 100_000, 2, 70_000, 0, 9,
])
// Byte by byte, the decoder's cost grows with the square of the chunks in one body (see the
// report on consume()), so this stream keeps a single body over 64 KiB to stay fast.
const SMALL_STREAM = makeStream([0, 1, 0, 0, 3, 4, 5, 17, 255, 256, 1000, 4096, 0, 66_000, 2, 0, 9])

/**
 * What the decoder must hold after `fed` bytes of a stream: frames that ended are delivered;
 * of the current frame, the header is consumed once all 4 bytes are there.
 */
function expectedState(stream: Stream, fed: number): { delivered: number; pending: number } {
  const ends = stream.frameEnds
  let delivered = 0
  while (delivered < ends.length && (ends[delivered] as number) <= fed) delivered++
  const start = delivered === 0 ? 0 : (ends[delivered - 1] as number)
  const inFrame = fed - start
  return { delivered, pending: inFrame >= FRAME_HEADER_SIZE ? inFrame - FRAME_HEADER_SIZE : inFrame }
}

function expectBodies(stream: Stream, frames: Uint8Array[]): void {
  expect(frames.length).toBe(stream.bodies.length)
  for (let i = 0; i < stream.bodies.length; i++) {
    // Compare as Buffers: a mismatch in a 100 KB body then reports the index, not a huge diff.
    const f = frames[i] as Uint8Array
    const got = Buffer.from(f.buffer, f.byteOffset, f.length)
    expect(got.length, `frame ${i} length`).toBe((stream.bodies[i] as Buffer).length)
    expect(got.equals(stream.bodies[i] as Buffer), `frame ${i} content`).toBe(true)
  }
}

describe('encodeFrame', () => {
  it('prefixes the body with its big-endian length', () => {
    const frame = encodeFrame(Buffer.from('hello'))
    expect([...frame.subarray(0, 4)]).toEqual([0, 0, 0, 5])
    expect(frame.subarray(4).toString()).toBe('hello')
    expect([...encodeFrame(new Uint8Array(0))]).toEqual([0, 0, 0, 0])
    expect(encodeFrame(body(70_000, 1)).readUInt32BE(0)).toBe(70_000)
  })
})

describe('FrameDecoder', () => {
  it('decodes the whole stream pushed in one chunk, in order', () => {
    const { decoder, frames } = collector()
    decoder.push(STREAM.bytes)
    expectBodies(STREAM, frames)
    expect(decoder.pending).toBe(0)
    expect(decoder.failed).toBe(false)
  })

  it('decodes the stream fed byte by byte, with its state asserted after every byte', () => {
    const { decoder, frames } = collector()
    const stream = SMALL_STREAM
    for (let i = 0; i < stream.bytes.length; i++) {
      decoder.push(stream.bytes.subarray(i, i + 1))
      const want = expectedState(stream, i + 1)
      // Cheap checks on every byte; a mismatch fails with the offset in the message.
      if (frames.length !== want.delivered || decoder.pending !== want.pending) {
        expect({ offset: i + 1, delivered: frames.length, pending: decoder.pending }).toEqual({
          offset: i + 1,
          ...want,
        })
      }
    }
    expectBodies(stream, frames)
    expect(decoder.pending).toBe(0)
  })

  it.each([1, 2, 3, 42, 20240601])('decodes the stream cut at random split points (seed %i)', (seed) => {
    const random = seededRandom(seed)
    const { decoder, frames } = collector()
    let fed = 0
    while (fed < STREAM.bytes.length) {
      // Mostly small cuts (headers split across chunks), sometimes large ones (whole frames).
      const r = random()
      const size =
        r < 0.5
          ? 1 + Math.floor(random() * 8)
          : r < 0.9
            ? 1 + Math.floor(random() * 5000)
            : 1 + Math.floor(random() * 150_000)
      const end = Math.min(STREAM.bytes.length, fed + size)
      decoder.push(STREAM.bytes.subarray(fed, end))
      fed = end
      const want = expectedState(STREAM, fed)
      expect({ fed, delivered: frames.length, pending: decoder.pending }).toEqual({ fed, ...want })
    }
    expectBodies(STREAM, frames)
  })

  it('ignores empty chunks', () => {
    const { decoder, frames } = collector()
    decoder.push(Buffer.alloc(0))
    expect(decoder.pending).toBe(0)
    const frame = encodeFrame(Buffer.from('abc'))
    decoder.push(frame.subarray(0, 2))
    decoder.push(Buffer.alloc(0))
    decoder.push(frame.subarray(2))
    expect(frames.map((f) => Buffer.from(f).toString())).toEqual(['abc'])
  })

  it('delivers a body that lies inside one chunk as a view of that chunk (no copy)', () => {
    const { decoder, frames } = collector()
    const chunk = Buffer.concat([encodeFrame(body(100, 1)), encodeFrame(body(70_000, 2)), encodeFrame(body(10, 3))])
    decoder.push(chunk)
    expect(frames.length).toBe(3)
    let offset = 0
    for (const [i, size] of [100, 70_000, 10].entries()) {
      const f = frames[i] as Uint8Array
      expect(f.buffer, `frame ${i} shares the chunk's memory`).toBe(chunk.buffer)
      expect(f.byteOffset).toBe(chunk.byteOffset + offset + FRAME_HEADER_SIZE)
      expect(f.length).toBe(size)
      offset += FRAME_HEADER_SIZE + size
    }
    // Proof that it is a view, not an equal copy: writing through the chunk shows in the body.
    chunk[FRAME_HEADER_SIZE] = 0xab
    expect((frames[0] as Uint8Array)[0]).toBe(0xab)
  })

  it('delivers a body that starts in a later chunk after a split header as a view of that chunk', () => {
    const { decoder, frames } = collector()
    const frame = encodeFrame(body(5000, 4))
    decoder.push(frame.subarray(0, 2))
    const rest = Buffer.from(frame.subarray(2)) // its own ArrayBuffer
    decoder.push(rest)
    expect(frames.length).toBe(1)
    expect((frames[0] as Uint8Array).buffer).toBe(rest.buffer)
    expect(Buffer.from(frames[0] as Uint8Array).equals(body(5000, 4))).toBe(true)
  })

  it('reassembles a header split across chunks at every possible point', () => {
    const frame = encodeFrame(body(300, 9))
    for (let cut = 1; cut < FRAME_HEADER_SIZE; cut++) {
      const { decoder, frames } = collector()
      decoder.push(frame.subarray(0, cut))
      expect(decoder.pending).toBe(cut)
      expect(frames.length).toBe(0)
      decoder.push(frame.subarray(cut, FRAME_HEADER_SIZE + 1))
      // Header consumed: only the one body byte is left buffered.
      expect(decoder.pending).toBe(1)
      decoder.push(frame.subarray(FRAME_HEADER_SIZE + 1))
      expect(frames.length).toBe(1)
      expect(Buffer.from(frames[0] as Uint8Array).equals(body(300, 9))).toBe(true)
      expect(decoder.pending).toBe(0)
    }
  })

  it('reads a header split into four single-byte chunks, each in its own ArrayBuffer', () => {
    const { decoder, frames } = collector()
    const frame = encodeFrame(body(0x01_02_03, 5)) // every header byte differs
    for (let i = 0; i < FRAME_HEADER_SIZE; i++) decoder.push(Buffer.from([frame[i] as number]))
    expect(decoder.pending).toBe(0)
    decoder.push(frame.subarray(FRAME_HEADER_SIZE))
    expect(frames.length).toBe(1)
    expect((frames[0] as Uint8Array).length).toBe(0x01_02_03)
  })

  it('reports buffered bytes in pending, including the start of the next frame', () => {
    const { decoder, frames } = collector()
    const a = encodeFrame(body(10, 1))
    const b = encodeFrame(body(20, 2))
    decoder.push(a.subarray(0, 3))
    expect(decoder.pending).toBe(3)
    decoder.push(a.subarray(3, 9)) // header done, 5 body bytes
    expect(decoder.pending).toBe(5)
    decoder.push(Buffer.concat([a.subarray(9), b.subarray(0, 2)]))
    expect(frames.length).toBe(1)
    expect(decoder.pending).toBe(2)
    decoder.push(b.subarray(2, 10))
    expect(decoder.pending).toBe(6)
    decoder.push(b.subarray(10))
    expect(frames.length).toBe(2)
    expect(decoder.pending).toBe(0)
  })

  it('uses 16 MiB as the default limit', () => {
    const { decoder } = collector()
    expect(decoder.maxFrameSize).toBe(DEFAULT_MAX_FRAME_SIZE)
    expect(DEFAULT_MAX_FRAME_SIZE).toBe(16 * 1024 * 1024)
  })

  it('accepts a body of exactly maxFrameSize', () => {
    const { decoder, frames } = collector(1024)
    decoder.push(encodeFrame(body(1024, 1)))
    expect(frames.length).toBe(1)
    expect(decoder.failed).toBe(false)
  })

  it('throws FrameTooLargeError as soon as the 4 header bytes arrive, before any body byte, and stays failed', () => {
    const { decoder, frames } = collector(1024)
    const header = Buffer.alloc(4)
    header.writeUInt32BE(1025, 0)
    let thrown: unknown
    try {
      decoder.push(header)
    } catch (err) {
      thrown = err
    }
    expect(thrown).toBeInstanceOf(FrameTooLargeError)
    expect((thrown as FrameTooLargeError).code).toBe(ErrorCode.FRAME_TOO_LARGE)
    expect((thrown as FrameTooLargeError).code).toBe('ERR_FRAME_TOO_LARGE')
    expect((thrown as Error).message).toContain('1025')
    expect(decoder.failed).toBe(true)
    expect(decoder.pending).toBe(0)

    // Terminal: nothing more is delivered, not even well-formed frames, and nothing is buffered.
    decoder.push(Buffer.alloc(1025))
    decoder.push(encodeFrame(Buffer.from('valid')))
    expect(frames).toEqual([])
    expect(decoder.pending).toBe(0)
    expect(decoder.failed).toBe(true)
  })

  it('throws on an oversized length whose header is split across chunks, at the chunk completing it', () => {
    const { decoder } = collector(2048)
    const header = Buffer.alloc(4)
    header.writeUInt32BE(0xffff_ffff, 0)
    decoder.push(header.subarray(0, 1))
    decoder.push(header.subarray(1, 3))
    expect(decoder.failed).toBe(false)
    expect(decoder.pending).toBe(3)
    expect(() => decoder.push(header.subarray(3))).toThrow(expect.objectContaining({ code: 'ERR_FRAME_TOO_LARGE' }))
    expect(decoder.failed).toBe(true)
  })

  it('delivers the frames before an oversized one, then fails', () => {
    const { decoder, frames } = collector(1024)
    const big = Buffer.alloc(4)
    big.writeUInt32BE(5000, 0)
    const chunk = Buffer.concat([encodeFrame(Buffer.from('one')), encodeFrame(Buffer.from('two')), big])
    expect(() => decoder.push(chunk)).toThrow(FrameTooLargeError)
    expect(frames.map((f) => Buffer.from(f).toString())).toEqual(['one', 'two'])
    expect(decoder.failed).toBe(true)
  })

  it('stops delivering when the sink resets it mid-chunk', () => {
    const frames: string[] = []
    const decoder: FrameDecoder = new FrameDecoder({
      onFrame: (b) => {
        frames.push(Buffer.from(b).toString())
        decoder.reset()
      },
    })
    decoder.push(Buffer.concat([encodeFrame(Buffer.from('a')), encodeFrame(Buffer.from('b'))]))
    expect(frames).toEqual(['a'])
    expect(decoder.pending).toBe(0)
  })
})
