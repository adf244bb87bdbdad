import { FrameTooLargeError } from '../errors.js'
import { encodeFrame, FRAME_HEADER_SIZE } from './frame.js'
import { MessageType, type Message } from './messages.js'
import { feedbackFlags, jobExtras } from './parse-message.js'
import { pack } from './msgpack.js'
import { MsgpackWriter } from './msgpack-writer.js'

/**
 * Encodes a message into a whole frame (length prefix included).
 *
 * The messages sent per batch of jobs (dispatch, feedback) are written as
 * msgpack by hand, straight into the frame, each job as a tuple (see WireJob): no tuple per
 * job is built in memory, msgpackr's generic walk is skipped, and the body is not copied again behind
 * its length. That was the largest single cost of a dispatch on both ends. Every other
 * message goes through msgpackr. Any msgpack reader decodes both alike.
 */
export function encodeMessageFrame(message: Message, maxFrameSize: number): Buffer {
  let frame: Buffer
  switch (message.type) {
    case MessageType.DISPATCH:
      frame = listFrame(message.type, message.seq, 'jobs', message.jobs, 64, (w, job) => {
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
    case MessageType.FEEDBACK:
      frame = listFrame(message.type, message.seq, 'items', message.items, 64, (w, item) => {
        w.arrayHeader(5)
        w.str(item.id)
        if (item.name === undefined) w.nil()
        else w.str(item.name)
        w.num(item.run)
        w.num(feedbackFlags(item))
        // Packed args are a msgpack map already: they go in as they are.
        w.raw(item.args instanceof Uint8Array ? item.args : pack(item.args))
      })
      break
    case MessageType.ACCEPTED:
    case MessageType.FEEDBACK_ACK: {
      // One per frame received: on the path of every job at one in flight.
      const w = new FrameWriter(32)
      w.answer(message.type, message.seq)
      frame = w.finish()
      break
    }
    case MessageType.PROGRESS:
      // Tuples, as the other per-job records: a map would repeat its key names per item.
      frame = encodeFrame(
        pack({ type: message.type, items: message.items.map((item) => [item.id, item.name, item.run, item.value]) }),
      )
      break
    default:
      // Every other message is a map of plain fields: msgpackr's form is the wire form.
      frame = encodeFrame(pack(message))
  }
  const bodyLength = frame.length - FRAME_HEADER_SIZE
  if (bodyLength > maxFrameSize) throw new FrameTooLargeError(bodyLength, maxFrameSize)
  return frame
}

/** A frame { type, seq, <key>: [items …] }, each item written by `write`; sized by a guess per item. */
function listFrame<T>(
  type: string,
  seq: number,
  key: string,
  items: readonly T[],
  bytesPerItem: number,
  write: (w: FrameWriter, item: T) => void,
): Buffer {
  const w = new FrameWriter(64 + items.length * bytesPerItem)
  w.typed(type, seq, key, items.length)
  for (const item of items) write(w, item)
  return w.finish()
}

/** A frame: the msgpack body after room for its length prefix. */
class FrameWriter extends MsgpackWriter {
  constructor(estimate: number) {
    super(estimate, FRAME_HEADER_SIZE)
  }

  /** The message map's start: { type: <type>, seq: <seq>, <listKey>: [ <count> items … ] }. */
  typed(type: string, seq: number, listKey: string, count: number): void {
    this.byte(0x83)
    this.str('type')
    this.str(type)
    this.str('seq')
    this.num(seq)
    this.str(listKey)
    this.arrayHeader(count)
  }

  /** A whole { type, seq } message: the answer to a numbered frame. */
  answer(type: string, seq: number): void {
    this.byte(0x82)
    this.str('type')
    this.str(type)
    this.str('seq')
    this.num(seq)
  }

  finish(): Buffer {
    this.buf.writeUInt32BE(this.pos - FRAME_HEADER_SIZE, 0)
    return this.buf.subarray(0, this.pos)
  }
}
