import { urlAlphabet } from 'nanoid'
import { describe, expect, it } from 'vitest'
import { newJobId } from '../../src/distributor/job-id.js'
import { ownString, pack, unpack } from '../../src/protocol/msgpack.js'

describe('newJobId', () => {
  it('makes 21 characters of the URL-safe alphabet, distinct across pool refills', () => {
    // 5,000 ids draw the random pool several times over.
    const ids = Array.from({ length: 5_000 }, newJobId)
    const allowed = new Set(urlAlphabet)
    for (const id of ids) {
      expect(id).toHaveLength(21)
      expect([...id].every((c) => allowed.has(c))).toBe(true)
    }
    expect(new Set(ids).size).toBe(ids.length)
  })

  it('uses the whole alphabet', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 200; i++) for (const c of newJobId()) seen.add(c)
    expect(seen.size).toBe(64)
  })
})

describe('ownString', () => {
  it('copies a string decoded from a frame, short or long, one-byte or not', () => {
    const samples = ['', 'V1StGXR8_Z5jdHi6B-myT', 'ünïcödé ✓ 🚀', 'x'.repeat(300), '€'.repeat(1000)]
    const decoded = unpack(pack(samples)) as string[]
    expect(decoded.map(ownString)).toEqual(samples)
  })

  it('keeps code units msgpack could not carry (a lone surrogate)', () => {
    for (const s of ['\ud800 lone', '\udc00'.repeat(300)]) expect(ownString(s)).toBe(s)
  })
})
