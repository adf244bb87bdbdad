/** Strings up to this length are tried as ASCII, byte by byte, before a UTF-8 encode. */
const SHORT_STRING = 64

/**
 * msgpack written by hand into one growing buffer, for the few shapes made once per job:
 * frames of job tuples (protocol/encode.ts), Redis write batches (storage/redis/batch.ts)
 * and flat args (protocol/args.ts). There msgpackr's generic walk over a value built for
 * it, and the copy of its output, cost more than the values themselves. Everything else
 * goes through msgpackr.
 */
export class MsgpackWriter {
  protected buf: Buffer
  protected pos: number

  /** `start`: bytes left free at the front, for a header the owner writes at the end. */
  constructor(estimate: number, start: number) {
    this.buf = Buffer.allocUnsafe(Math.max(estimate, start + 16))
    this.pos = start
  }

  arrayHeader(n: number): void {
    if (n < 16) this.byte(0x90 | n)
    else if (n < 0x10000) this.head(0xdc, n, 2)
    else this.head(0xdd, n, 4)
  }

  str(s: string): void {
    if (this.asciiStr(s)) return
    const length = Buffer.byteLength(s)
    this.strHeader(length)
    this.reserve(length)
    this.buf.write(s, this.pos, length, 'utf8')
    this.pos += length
  }

  /** Writes `s` if it is short and ASCII, byte by byte; otherwise false, with `pos` where it was. */
  asciiStr(s: string): boolean {
    const n = s.length
    if (n > SHORT_STRING) return false
    this.reserve(2 + n)
    // Written after its header (an ASCII string's byte length is its length).
    const at = this.pos + (n < 32 ? 1 : 2)
    const buf = this.buf
    for (let k = 0; k < n; k++) {
      const c = s.charCodeAt(k)
      if (c > 0x7f) return false
      buf[at + k] = c
    }
    if (n < 32) buf[this.pos] = 0xa0 | n
    else {
      buf[this.pos] = 0xd9
      buf[this.pos + 1] = n
    }
    this.pos = at + n
    return true
  }

  /** Bytes as a str, for a reader without msgpack's bin types (Redis's cmsgpack). */
  strBytes(b: Uint8Array): void {
    this.strHeader(b.length)
    this.raw(b)
  }

  /**
   * A non-negative safe integer as a str of its decimal digits (what String() gives), written
   * without making the string; anything else goes through String(). The arithmetic stays
   * in int32 (a timestamp is split at 10^9): dividing doubles digit by digit cost four
   * times as much for an epoch-ms time.
   */
  digits(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) {
      this.str(String(v))
      return
    }
    if (v < 10) {
      // attempt and run numbers, mostly
      this.reserve(2)
      this.buf[this.pos] = 0xa1
      this.buf[this.pos + 1] = 0x30 + v
      this.pos += 2
      return
    }
    const high = v < 1e9 ? 0 : Math.floor(v / 1e9)
    const low = high === 0 ? v : v - high * 1e9
    const length = high === 0 ? digitCount(low) : digitCount(high) + 9
    this.reserve(1 + length)
    const buf = this.buf
    buf[this.pos] = 0xa0 | length
    const end = this.pos + length
    if (high === 0) writeDigits(buf, end, low, 0)
    else writeDigits(buf, writeDigits(buf, end, low, 9), high, 0)
    this.pos = end + 1
  }

  bin(b: Uint8Array): void {
    const n = b.length
    if (n < 0x100) this.head(0xc4, n, 1)
    else if (n < 0x10000) this.head(0xc5, n, 2)
    else this.head(0xc6, n, 4)
    this.raw(b)
  }

  /** An integer in int32 or uint32 range in its smallest form; anything else as a float64. */
  num(v: number): void {
    if (Number.isInteger(v) && v >= 0 && v <= 0xffffffff) {
      if (v < 0x80) this.byte(v)
      else if (v < 0x100) this.head(0xcc, v, 1)
      else if (v < 0x10000) this.head(0xcd, v, 2)
      else this.head(0xce, v, 4)
      return
    }
    if (Number.isInteger(v) && v < 0 && v >= -0x80000000) {
      // Two's complement in the field's width (a result's { delta: -3 } is one byte, not nine).
      if (v >= -32) this.byte(v & 0xff)
      else if (v >= -0x80) this.head(0xd0, v & 0xff, 1)
      else if (v >= -0x8000) this.head(0xd1, v & 0xffff, 2)
      else this.head(0xd2, v >>> 0, 4)
      return
    }
    this.reserve(9)
    this.buf[this.pos] = 0xcb
    this.buf.writeDoubleBE(v, this.pos + 1)
    this.pos += 9
  }

  nil(): void {
    this.byte(0xc0)
  }

  bool(v: boolean): void {
    this.byte(v ? 0xc3 : 0xc2)
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

  /**
   * Starts a str whose content is written by the calls that follow (msgpack nested in a
   * str); `endStr(at)` with the returned position sets its length.
   */
  beginStr(): number {
    const at = this.pos
    this.reserve(5)
    this.buf[at] = 0xdb
    this.pos += 5
    return at
  }

  endStr(at: number): void {
    this.buf.writeUInt32BE(this.pos - at - 5, at + 1)
  }

  protected byte(b: number): void {
    this.reserve(1)
    this.buf[this.pos++] = b
  }

  /** A type byte and a big-endian length or value of `size` bytes. */
  protected head(type: number, value: number, size: 1 | 2 | 4): void {
    this.reserve(1 + size)
    const buf = this.buf
    buf[this.pos] = type
    for (let i = size; i >= 1; i--) {
      buf[this.pos + i] = value & 0xff
      value = Math.floor(value / 0x100)
    }
    this.pos += 1 + size
  }

  protected reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n))
    this.buf.copy(bigger, 0, 0, this.pos)
    this.buf = bigger
  }

  private strHeader(length: number): void {
    if (length < 32) this.byte(0xa0 | length)
    else if (length < 0x100) this.head(0xd9, length, 1)
    else if (length < 0x10000) this.head(0xda, length, 2)
    else this.head(0xdb, length, 4)
  }
}

/** Decimal digits of an integer in 0..2^31. */
function digitCount(x: number): number {
  if (x < 100_000) return x < 10 ? 1 : x < 100 ? 2 : x < 1_000 ? 3 : x < 10_000 ? 4 : 5
  return x < 1_000_000 ? 6 : x < 10_000_000 ? 7 : x < 100_000_000 ? 8 : x < 1_000_000_000 ? 9 : 10
}

/**
 * Writes the digits of `x` (below 2^31) backwards from `at`, at least `width` of them
 * (zero-padded); returns where the next digit to the left goes.
 */
function writeDigits(buf: Buffer, at: number, x: number, width: number): number {
  let n = 0
  do {
    const q = (x / 10) | 0
    buf[at--] = 0x30 + x - q * 10
    x = q
    n++
  } while (x > 0 || n < width)
  return at
}
