import { MessageType, type Message, type WireJob } from '../../src/protocol/messages.js'
import { feedbackFlags, jobExtras } from '../../src/protocol/parse-message.js'
import { unpack } from '../../src/protocol/msgpack.js'
import type { JobArgsObject } from '../../src/protocol/args.js'

function jobTuple(job: WireJob): unknown[] {
  const t: unknown[] = [job.id, job.name, job.args, job.dueAt, job.run]
  const extras = jobExtras(job)
  if (extras !== undefined) t.push(extras)
  return t
}

/**
 * The reference wire form of a message, built the plain way: the per-job records of
 * dispatch and feedback as tuples, every other message as it is. Packed with msgpackr
 * it is what a peer sends; the hand-written encoder (encode.ts) is checked against it, and
 * tests that send a message as a raw body (broken on purpose, or byte by byte) start from it.
 */
export function toWire(message: Message): object {
  switch (message.type) {
    case MessageType.DISPATCH:
      return { type: message.type, seq: message.seq, jobs: message.jobs.map(jobTuple) }
    case MessageType.FEEDBACK:
      // Packed args travel as the map they hold, not as a binary.
      return {
        type: message.type,
        seq: message.seq,
        items: message.items.map((f) => [
          f.id,
          f.name ?? null,
          f.run,
          feedbackFlags(f),
          f.args instanceof Uint8Array ? unpack(f.args) : f.args,
        ]),
      }
    case MessageType.PROGRESS:
      return { type: message.type, items: message.items.map((p) => [p.id, p.name, p.run, p.value]) }
    default:
      return message
  }
}

/** A message as its peer gets it: packed feedback args arrive decoded, with the frame. */
export function asReceived(message: Message): Message {
  if (message.type !== MessageType.FEEDBACK) return message
  return {
    ...message,
    items: message.items.map((f) => ({
      ...f,
      args: f.args instanceof Uint8Array ? (unpack(f.args) as JobArgsObject) : f.args,
    })),
  }
}
