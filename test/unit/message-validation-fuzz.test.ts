import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ProtocolError } from '../../src/errors.js'
import { MessageType } from '../../src/protocol/messages.js'
import { parseMessage } from '../../src/protocol/parse-message.js'
import { pack, unpack } from '../../src/protocol/msgpack.js'
import { anyValue, message, packOrEmpty, params, text, thrownBy } from '../helpers/protocol-arbitraries.js'
import { toWire } from '../helpers/wire-form.js'

// Property-based: msgpack unpack and parseMessage against arbitrary input (fixed seeds).

describe('msgpack and message validation against arbitrary input', () => {
  it('unpack of arbitrary bytes returns or throws an Error, and parseMessage of the result returns or throws ProtocolError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => {
        let value: unknown
        const unpackErr = thrownBy(() => (value = unpack(bytes)))
        if (unpackErr !== undefined) {
          expect(unpackErr).toBeInstanceOf(Error)
          return
        }
        const err = thrownBy(() => parseMessage(value))
        if (err !== undefined) expect(err).toBeInstanceOf(ProtocolError)
      }),
      params(1000),
    )
  })

  it('parseMessage of arbitrary values (odd containers, null prototypes, boxed values) only ever throws ProtocolError', () => {
    fc.assert(
      fc.property(anyValue, (value) => {
        const err = thrownBy(() => parseMessage(value))
        if (err !== undefined) expect(err).toBeInstanceOf(ProtocolError)
        // and what a peer can actually send: the value after a msgpack round trip
        const body = packOrEmpty(value)
        let decoded: unknown
        if (thrownBy(() => (decoded = unpack(body))) !== undefined) return
        const err2 = thrownBy(() => parseMessage(decoded))
        if (err2 !== undefined) expect(err2).toBeInstanceOf(ProtocolError)
      }),
      params(),
    )
  })

  it('a valid message with one required field of the wrong type is refused, naming the field', () => {
    /** A coarse JSON-ish kind: a replacement of another kind can never pass the field's check. */
    const kind = (v: unknown): string =>
      v === null ? 'null' : Array.isArray(v) ? 'array' : v instanceof Uint8Array ? 'bin' : typeof v
    const wrong = ['text', -1.5, 7, true, null, [], ['x'], {}, { type: 'ping' }, Buffer.from([1, 2])]
    // Optional fields read nil as absent.
    const required = (k: string): boolean => k !== 'type' && k !== 'proof' && k !== 'answersFor'
    const mutated = message
      .filter((m) => Object.keys(m).some(required))
      .chain((m) => {
        const keys = Object.keys(m).filter(required)
        return fc.tuple(fc.constant(m), fc.constantFrom(...keys), fc.constantFrom(...wrong))
      })
      .filter(([m, key, replacement]) => kind((m as unknown as Record<string, unknown>)[key]) !== kind(replacement))
    fc.assert(
      fc.property(mutated, ([m, key, replacement]) => {
        const bad = { ...toWire(m), [key]: replacement }
        const err = thrownBy(() => parseMessage(unpack(pack(bad))))
        expect(err).toBeInstanceOf(ProtocolError)
        expect((err as ProtocolError).message).toContain(`'${m.type}.${key}`)
      }),
      params(),
    )
  })

  it('an unknown message type is refused with its name (cut to 64 characters), and a non-string type is named as such', () => {
    const known = new Set<string>(Object.values(MessageType))
    fc.assert(
      fc.property(
        fc.oneof(text, fc.string({ minLength: 65, maxLength: 500 })).filter((t) => !known.has(t)),
        fc.dictionary(text, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
        (type, extra) => {
          const err = thrownBy(() => parseMessage(unpack(pack({ ...extra, type }))))
          expect(err).toBeInstanceOf(ProtocolError)
          expect((err as ProtocolError).message).toBe(`unknown message type '${type.slice(0, 64)}'`)
        },
      ),
      params(),
    )
    fc.assert(
      fc.property(
        anyValue.filter((t) => typeof t !== 'string'),
        (type) => {
          const err = thrownBy(() => parseMessage({ type }))
          expect(err).toBeInstanceOf(ProtocolError)
          expect((err as ProtocolError).message).toBe(`'message.type' must be a string`)
        },
      ),
      params(),
    )
  })

  it('huge declared lengths inside msgpack (str32, bin32, array32, map32, ext32) fail fast without allocating them', () => {
    const tags = [0xdb, 0xc6, 0xdd, 0xdf, 0xc9]
    fc.assert(
      fc.property(
        fc.constantFrom(...tags),
        fc.integer({ min: 1 << 20, max: 0xffff_ffff }),
        fc.uint8Array({ maxLength: 64 }),
        (tag, length, tail) => {
          const head = Buffer.alloc(5)
          head[0] = tag
          head.writeUInt32BE(length, 1)
          const body = Buffer.concat([head, tail])
          const before = process.memoryUsage().arrayBuffers
          const err = thrownBy(() => unpack(body))
          expect(err).toBeInstanceOf(Error)
          // A 1 MiB+ allocation would show; the odd few KiB of bookkeeping does not.
          expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1 << 20)
        },
      ),
      params(100),
    )
  })
})
