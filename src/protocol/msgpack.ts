import { Packr } from 'msgpackr'

/**
 * The one msgpack configuration, shared by frames and job args so both ends agree.
 * Records stay off: every frame must decode on its own, without structure state carried
 * between frames or peers. `mapsAsObjects` keeps decoded maps plain objects.
 */
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })

export function pack(value: unknown): Buffer {
  return packr.pack(value)
}

export function unpack(bytes: Uint8Array): unknown {
  return packr.unpack(bytes)
}
