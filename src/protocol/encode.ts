import { FrameTooLargeError } from '../errors.js'
import { encodeFrame, FRAME_HEADER_SIZE } from './frame.js'
import { feedbackFlags, jobExtras, MessageType, type Message } from './messages.js'
import { pack } from './msgpack.js'

/**
 * Encodes a message into a whole frame (length prefix included).
 *
 * The messages sent per batch of jobs (dispatch, accepted, feedback, acks) are written as
 * msgpack by hand, straight into the frame, each job as a tuple (see WireJob): no tuple per
 * job is built in memory, msgpackr's generic walk is skipped, and the body is not copied again behind
 * its length. That was the largest single cost of a dispatch on both ends. Every other
 * message goes through msgpackr. Any msgpack reader decodes both alike.
 */
export function encodeMessageFrame(message: Message, maxFrameSize: number): Buffer {
  let frame: Buffer
  switch (message.type) {
    case MessageType.DISPATCH:
      frame = listFrame(message.type, 'jobs', message.jobs, 64, (w, job) => {
        const extras = jobExtras(job)
        w.arrayHeader(extras === undefined ? 5 : 6)
        w.str(job.id)
        w.str(job.name)
        w.bin(job.args)
        w.num(job.dueAt)
        w.num(job.run)
        if (extras !== undefined) w.raw(pack(extras))
      })
      break
    case MessageType.ACCEPTED:
      frame = listFrame(message.type, 'ids', message.ids, 32, (w, id) => w.str(id))
      break
    case MessageType.FEEDBACK:
      frame = listFrame(message.type, 'items', message.items, 48, (w, item) => {
        w.arrayHeader(4)
        w.str(item.id)
        w.num(item.run)
        w.num(feedbackFlags(item))
        w.bin(item.args)
      })
      break
    case MessageType.FEEDBACK_ACK:
      frame = listFrame(message.type, 'items', message.items, 32, (w, ref) => {
        w.arrayHeader(2)
        w.str(ref.id)
        w.num(ref.run)
      })
      break
    default:
      // Every other message is a map of plain fields: msgpackr's form is the wire form.
      frame = encodeFrame(pack(message))
  }
  const bodyLength = frame.length - FRAME_HEADER_SIZE
  if (bodyLength > maxFrameSize) throw new FrameTooLargeError(bodyLength, maxFrameSize)
  return frame
}

/** A frame { type, <key>: [items …] }, each item written by `write`; sized by a guess per item. */
function listFrame<T>(type: string, key: string, items: readonly T[], bytesPerItem: number, write: (w: FrameWriter, item: T) => void): Buffer {
  const w = new FrameWriter(64 + items.length * bytesPerItem)
  w.typed(type, key, items.length)
  for (const item of items) write(w, item)
  return w.finish()
}

/** Strings up to this length are tried as ASCII, byte by byte, before a UTF-8 encode. */
const SHORT_STRING = 64

/** A msgpack writer into a growing buffer that starts with room for the frame's length. */
class FrameWriter {
  private buf: Buffer
  private pos = FRAME_HEADER_SIZE

  constructor(estimate: number) {
    this.buf = Buffer.allocUnsafe(estimate)
  }

  /** The message map's start: { type: <type>, <listKey>: [ <count> items … ] }. */
  typed(type: string, listKey: string, count: number): void {
    this.byte(0x82)
    this.str('type')
    this.str(type)
    this.str(listKey)
    this.arrayHeader(count)
  }

  arrayHeader(n: number): void {
    if (n < 16) this.byte(0x90 | n)
    else if (n < 0x10000) this.head(0xdc, n, 2)
    else this.head(0xdd, n, 4)
  }

  str(s: string): void {
    const n = s.length
    if (n <= SHORT_STRING) {
      this.reserve(2 + n)
      // Written after its header (an ASCII string's byte length is its length); a string
      // that turns out not to be ASCII is written again below.
      const at = this.pos + (n < 32 ? 1 : 2)
      const buf = this.buf
      let k = 0
      for (; k < n; k++) {
        const c = s.charCodeAt(k)
        if (c > 0x7f) break
        buf[at + k] = c
      }
      if (k === n) {
        if (n < 32) buf[this.pos] = 0xa0 | n
        else {
          buf[this.pos] = 0xd9
          buf[this.pos + 1] = n
        }
        this.pos = at + n
        return
      }
    }
    const length = Buffer.byteLength(s)
    if (length < 32) this.byte(0xa0 | length)
    else if (length < 0x100) this.head(0xd9, length, 1)
    else if (length < 0x10000) this.head(0xda, length, 2)
    else this.head(0xdb, length, 4)
    this.reserve(length)
    this.buf.write(s, this.pos, length, 'utf8')
    this.pos += length
  }

  bin(b: Uint8Array): void {
    const n = b.length
    if (n < 0x100) this.head(0xc4, n, 1)
    else if (n < 0x10000) this.head(0xc5, n, 2)
    else this.head(0xc6, n, 4)
    this.raw(b)
  }

  /** A non-negative integer below 2^32 in its smallest form; anything else as a float64. */
  num(v: number): void {
    if (Number.isInteger(v) && v >= 0 && v <= 0xffffffff) {
      if (v < 0x80) this.byte(v)
      else if (v < 0x100) this.head(0xcc, v, 1)
      else if (v < 0x10000) this.head(0xcd, v, 2)
      else this.head(0xce, v, 4)
      return
    }
    this.reserve(9)
    this.buf[this.pos] = 0xcb
    this.buf.writeDoubleBE(v, this.pos + 1)
    this.pos += 9
  }

  /** Bytes that are msgpack already (or a bin's payload). */
  raw(b: Uint8Array): void {
    this.reserve(b.length)
    const buf = this.buf
    const at = this.pos
    if (b.length <= SHORT_STRING) for (let k = 0; k < b.length; k++) buf[at + k] = b[k] as number
    else buf.set(b, at)
    this.pos += b.length
  }

  finish(): Buffer {
    this.buf.writeUInt32BE(this.pos - FRAME_HEADER_SIZE, 0)
    return this.buf.subarray(0, this.pos)
  }

  private byte(b: number): void {
    this.reserve(1)
    this.buf[this.pos++] = b
  }

  /** A type byte and a big-endian length or value of `size` bytes. */
  private head(type: number, value: number, size: 1 | 2 | 4): void {
    this.reserve(1 + size)
    const buf = this.buf
    buf[this.pos] = type
    for (let i = size; i >= 1; i--) {
      buf[this.pos + i] = value & 0xff
      value = Math.floor(value / 0x100)
    }
    this.pos += 1 + size
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n))
    this.buf.copy(bigger, 0, 0, this.pos)
    this.buf = bigger
  }
}
