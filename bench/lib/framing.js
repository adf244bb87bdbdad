// Bare framing for the echo ceiling: 4-byte big-endian length + msgpack body, with the same
// msgpackr settings as the library. Deliberately minimal: no validation, no state machine.
import { Packr } from 'msgpackr'

export const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })

export function frame(value) {
  const body = packr.pack(value)
  const out = Buffer.allocUnsafe(4 + body.length)
  out.writeUInt32BE(body.length, 0)
  body.copy(out, 4)
  return out
}

/** Calls onMessage(decoded) for every complete frame; keeps the tail between calls. */
export function createReader(onMessage) {
  let pending = null
  return (chunk) => {
    const buf = pending === null ? chunk : Buffer.concat([pending, chunk])
    let offset = 0
    while (buf.length - offset >= 4) {
      const length = buf.readUInt32BE(offset)
      if (buf.length - offset - 4 < length) break
      onMessage(packr.unpack(buf.subarray(offset + 4, offset + 4 + length)))
      offset += 4 + length
    }
    pending = offset === buf.length ? null : buf.subarray(offset)
  }
}
