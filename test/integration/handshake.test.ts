import { afterEach, describe, expect, it } from 'vitest'
import { ErrorCode } from '../../src/errors.js'
import { NONCE_SIZE } from '../../src/protocol/handshake.js'
import { MessageType, PROTOCOL_VERSION } from '../../src/protocol/messages.js'
import { Resources, startDistributor } from '../helpers/cluster.js'
import { connectPeer, expectClosedWithError } from '../helpers/peers.js'

const res = new Resources()
afterEach(() => res.releaseAll())

describe('handshake', () => {
  it('sends a challenge as the first frame', async () => {
    const d = await startDistributor(res)
    const peer = await connectPeer(res, d)
    const first = await peer.next()
    expect(first.type).toBe(MessageType.CHALLENGE)
    if (first.type !== MessageType.CHALLENGE) return
    expect(first.protocolVersion).toBe(PROTOCOL_VERSION)
    expect(first.nonce.length).toBe(NONCE_SIZE)
    expect(first.auth).toBe(false)
    expect(peer.received).toHaveLength(1)
  })

  it('sends a fresh nonce to each connection', async () => {
    const d = await startDistributor(res)
    const [a, b] = await Promise.all([connectPeer(res, d), connectPeer(res, d)])
    const [ca, cb] = await Promise.all([a.nextOfType('challenge'), b.nextOfType('challenge')])
    expect(Buffer.from(ca.nonce).equals(Buffer.from(cb.nonce))).toBe(false)
  })

  it('welcomes a valid hello and emits node:connect', async () => {
    const d = await startDistributor(res, { group: 'web', name: 'main' })
    const connected = d.waitFor('node:connect', (e) => e.node === 'fake-1')
    const peer = await connectPeer(res, d)
    const { welcome } = await peer.handshake({ node: 'fake-1', jobs: ['noop', 'echo'], concurrency: 3, window: 6 })
    expect(welcome).toEqual({
      type: 'welcome',
      group: 'web',
      name: 'main',
      heartbeatMs: 1000,
      maxFrameSize: 16 * 1024 * 1024,
    })
    expect(await connected).toEqual({ node: 'fake-1', jobs: ['noop', 'echo'], concurrency: 3, durable: false })
    expect(d.nodes).toEqual(['fake-1'])
  })

  it('rejects a wrong protocol version with ERR_HANDSHAKE_REJECTED and closes the socket', async () => {
    const d = await startDistributor(res)
    const rejected = d.waitFor('node:rejected')
    const peer = await connectPeer(res, d)
    const challenge = await peer.nextOfType('challenge')
    peer.sendMessage(peer.hello(challenge, { node: 'future', jobs: ['echo'], protocolVersion: PROTOCOL_VERSION + 1 }))
    const error = await expectClosedWithError(peer, ErrorCode.HANDSHAKE_REJECTED)
    expect(error.code).toBe('ERR_HANDSHAKE_REJECTED')
    expect(error.message).toContain(`protocol version ${PROTOCOL_VERSION + 1}`)
    expect(await rejected).toMatchObject({ code: 'ERR_HANDSHAKE_REJECTED' })
    expect(d.nodes).toEqual([])
    // No welcome ever went out.
    expect(peer.received.map((m) => m.type)).toEqual(['challenge', 'error'])
  })

  it('rejects a hello advertising concurrency 0 with ERR_HANDSHAKE_REJECTED', async () => {
    const d = await startDistributor(res)
    const peer = await connectPeer(res, d)
    const challenge = await peer.nextOfType('challenge')
    peer.sendMessage(peer.hello(challenge, { node: 'lazy', jobs: ['echo'], concurrency: 0 }))
    const error = await expectClosedWithError(peer, ErrorCode.HANDSHAKE_REJECTED)
    expect(error.message).toContain('concurrency 0')
    expect(d.nodes).toEqual([])
  })

  it('drops a client that sends nothing after handshakeTimeoutMs with ERR_HANDSHAKE_TIMEOUT', async () => {
    const d = await startDistributor(res, { handshakeTimeoutMs: 150 })
    const rejected = d.waitFor('node:rejected')
    const started = Date.now()
    const peer = await connectPeer(res, d)
    expect((await peer.next()).type).toBe(MessageType.CHALLENGE)
    const error = await expectClosedWithError(peer, ErrorCode.HANDSHAKE_TIMEOUT)
    expect(error.message).toContain('150 ms')
    // The timer starts when the server accepts, after our `started`: it cannot have fired early.
    expect(Date.now() - started).toBeGreaterThanOrEqual(145)
    expect(await rejected).toMatchObject({ code: 'ERR_HANDSHAKE_TIMEOUT' })
  })

  it('does not drop a node that completed the handshake when the handshake timeout passes', async () => {
    const d = await startDistributor(res, { handshakeTimeoutMs: 100 })
    const good = await connectPeer(res, d)
    await good.handshake({ node: 'quick', jobs: ['echo'] })
    // A silent second client marks the passing of the timeout without a sleep.
    const silent = await connectPeer(res, d)
    await expectClosedWithError(silent, ErrorCode.HANDSHAKE_TIMEOUT)
    expect(good.isOpen).toBe(true)
    expect(d.nodes).toEqual(['quick'])
    expect(good.received.map((m) => m.type)).toEqual(['challenge', 'welcome'])
  })

  it('drops a client whose half-sent frame never completes, at the handshake timeout', async () => {
    const d = await startDistributor(res, { handshakeTimeoutMs: 100 })
    const peer = await connectPeer(res, d)
    await peer.nextOfType('challenge')
    peer.sendRaw(Buffer.from([0, 0, 0, 50, 1, 2])) // a 50-byte frame, 2 bytes of it sent
    await expectClosedWithError(peer, ErrorCode.HANDSHAKE_TIMEOUT)
  })
})
