import { afterEach, describe, expect, it } from 'vitest'
import { ErrorCode } from '../../src/errors.js'
import { encodeFrame } from '../../src/protocol/frame.js'
import { PROTOCOL_VERSION, type Message } from '../../src/protocol/messages.js'
import { pack } from '../../src/protocol/msgpack.js'
import { Resources, startDistributor, startNode } from '../helpers/cluster.js'
import type { FakePeer } from '../helpers/fake-peer.js'
import { connectPeer, expectClosedWithError, expectEchoCompletes } from '../helpers/peers.js'
import { toWire } from '../helpers/wire-form.js'

const res = new Resources()
afterEach(() => res.releaseAll())

describe('garbage closes only the connection that sent it', () => {
  interface GarbageCase {
    what: string
    /** Handshake as node 'bad' first. */
    handshake: boolean
    send: (peer: FakePeer) => void
    /** Part of the error frame's message. */
    names: string
  }

  const cases: GarbageCase[] = [
    {
      what: 'a frame whose body is not msgpack (a truncated map)',
      handshake: false,
      send: (p) => p.sendFrame(Buffer.from([0x81])),
      names: 'undecodable frame',
    },
    {
      what: 'a frame whose body is not msgpack, after the handshake',
      handshake: true,
      send: (p) => p.sendFrame(Buffer.from([0xa5, 0x61])),
      names: 'undecodable frame',
    },
    {
      what: 'a frame with an empty body',
      handshake: true,
      send: (p) => p.sendFrame(Buffer.alloc(0)),
      names: 'undecodable frame',
    },
    {
      what: 'msgpack that is not a map',
      handshake: false,
      send: (p) => p.sendFrame(pack([1, 2, 3])),
      names: "'message' must be a map",
    },
    {
      what: 'a valid msgpack frame with an unknown message type, before the handshake',
      handshake: false,
      send: (p) => p.sendMessage({ type: 'bogus' }),
      names: "unknown message type 'bogus'",
    },
    {
      what: 'a valid msgpack frame with an unknown message type, after the handshake',
      handshake: true,
      send: (p) => p.sendMessage({ type: 'bogus', ids: [] }),
      names: "unknown message type 'bogus'",
    },
    {
      what: 'a hello with a malformed field',
      handshake: false,
      send: (p) =>
        p.sendMessage({ type: 'hello', protocolVersion: PROTOCOL_VERSION, version: '0', node: 'bad', jobs: 'echo' }),
      names: "'hello.jobs'",
    },
    {
      what: 'a message other than hello during the handshake',
      handshake: false,
      send: (p) => p.send({ type: 'state', accepting: true }),
      names: "expected 'hello', got 'state'",
    },
    {
      what: 'a dispatch sent by the node side',
      handshake: true,
      send: (p) =>
        p.send({ type: 'dispatch', seq: 1, jobs: [{ id: 'x', name: 'echo', args: pack({}), dueAt: 0, run: 1 }] }),
      names: "unexpected 'dispatch' from a node",
    },
    {
      what: 'a welcome sent by the node side',
      handshake: true,
      send: (p) => p.send({ type: 'welcome', group: 'default', name: 'me', heartbeatMs: 1000 }),
      names: "unexpected 'welcome' from a node",
    },
    {
      what: 'a second hello after the handshake',
      handshake: true,
      send: (p) =>
        p.sendMessage({
          type: 'hello',
          protocolVersion: PROTOCOL_VERSION,
          version: '0',
          node: 'bad',
          jobs: [],
          concurrency: 1,
          window: 1,
          durable: false,
          nonce: Buffer.alloc(32),
        }),
      names: "unexpected 'hello' from a node",
    },
    {
      what: 'an accepted whose seq is not a frame number',
      handshake: true,
      send: (p) => p.sendMessage({ type: 'accepted', seq: 'one' }),
      names: "'accepted.seq'",
    },
    {
      what: 'an accepted in the old form, naming jobs instead of a frame',
      handshake: true,
      send: (p) => p.sendMessage({ type: 'accepted', ids: ['x'] }),
      names: "'accepted.seq'",
    },
    {
      what: 'a rejected whose ids are not strings',
      handshake: true,
      send: (p) => p.sendMessage({ type: 'rejected', seq: 1, ids: [1], code: 'X', message: 'no' }),
      names: "'rejected.ids[0]'",
    },
    {
      what: 'an accepted for a dispatch frame never sent',
      handshake: true,
      send: (p) => p.send({ type: 'accepted', seq: 1 }),
      names: "'accepted' for dispatch frame 1, which awaits no answer",
    },
  ]

  it.each(cases)('$what', async ({ handshake, send, names }) => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'good' })
    const bystander = await connectPeer(res, d)
    await bystander.handshake({ node: 'bystander', jobs: ['fake-only'] })

    const bad = await connectPeer(res, d)
    const disconnected = d.waitFor('node:disconnect', (e) => e.node === 'bad')
    if (handshake) await bad.handshake({ node: 'bad', jobs: ['fake-only'] })
    else await bad.nextOfType('challenge')
    send(bad)

    const error = await expectClosedWithError(bad, ErrorCode.PROTOCOL)
    expect(error.message).toContain(names)
    if (handshake) expect((await disconnected).reason?.code).toBe('ERR_PROTOCOL')

    // Everyone else is untouched.
    expect(d.nodes.sort()).toEqual(['bystander', 'good'])
    expect(bystander.isOpen).toBe(true)
    expect(bystander.received.map((m) => m.type)).toEqual(['challenge', 'welcome'])
    await expectEchoCompletes(d, 'good')
  })

  it('delivers nothing after the bad frame, even valid frames that arrived in the same chunk', async () => {
    const d = await startDistributor(res)
    const peer = await connectPeer(res, d)
    await peer.handshake({ node: 'bad', jobs: ['fake-only'] })
    let orphans = 0
    d.on('feedback:orphan', () => orphans++)
    const feedback: Message = {
      type: 'feedback',
      seq: 1,
      items: [{ id: 'x', run: 1, kind: 'success', final: true, cancelled: false, args: pack({}) }],
    }
    peer.sendRaw(Buffer.concat([encodeFrame(pack({ type: 'bogus' })), encodeFrame(pack(toWire(feedback)))]))
    await expectClosedWithError(peer, ErrorCode.PROTOCOL)
    expect(peer.received.map((m) => m.type)).toEqual(['challenge', 'welcome', 'error'])
    expect(orphans).toBe(0)
  })
})
