import { MsgpackWriter } from '../../protocol/msgpack-writer.js'

const INITIAL_BYTES = 16 * 1024
/** The array32 header in front: its count is written when the bytes are taken. */
const HEADER_BYTES = 5

/** Encodes values as the script reads them (one msgpack array of strs), into one growing buffer. */
export class OpWriter extends MsgpackWriter {
  private count = 0
  ops = 0

  constructor() {
    super(INITIAL_BYTES, HEADER_BYTES)
  }

  /** Adds a value (a string goes as UTF-8, bytes as they are); chainable. */
  value(v: string | Uint8Array): this {
    this.count++
    if (typeof v === 'string') this.str(v)
    else this.strBytes(v)
    return this
  }

  /** Adds a number as the decimal string Redis stores (integers without making the string). */
  number(v: number): this {
    this.count++
    this.digits(v)
    return this
  }

  /** Adds one value written by `write` as msgpack of its own (a str holding it). */
  nested(write: (w: MsgpackWriter) => void): this {
    this.count++
    const at = this.beginStr()
    write(this)
    this.endStr(at)
    return this
  }

  /** Where the writer is, to go back to if an operation cannot be written whole. */
  mark(): { pos: number; count: number } {
    return { pos: this.pos, count: this.count }
  }

  rewind(mark: { pos: number; count: number }): void {
    this.pos = mark.pos
    this.count = mark.count
  }

  /** The encoded operations (a view of the writer's buffer: take it once, at the end). */
  bytes(): Buffer {
    this.buf[0] = 0xdd
    this.buf.writeUInt32BE(this.count, 1)
    return this.buf.subarray(0, this.pos)
  }
}
