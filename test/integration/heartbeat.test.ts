import { afterEach, describe, expect, it } from 'vitest'
import { ErrorCode } from '../../src/errors.js'
import { Resources, startDistributor } from '../helpers/cluster.js'
import { connectPeer } from '../helpers/peers.js'

const res = new Resources()
afterEach(() => res.releaseAll())

describe('heartbeat', () => {
  it('drops a node that stops answering after 3 silent intervals, and keeps one that answers', async () => {
    const d = await startDistributor(res, { heartbeatMs: 50 })
    const live = await connectPeer(res, d) // answers every ping, as a node's own heartbeat would
    await live.handshake({ node: 'live', jobs: ['echo'] })
    const mute = await connectPeer(res, d, { answerPings: false })
    await mute.handshake({ node: 'mute', jobs: ['echo'] })
    const gone = d.waitFor('node:disconnect', (e) => e.node === 'mute')

    // The distributor pings a quiet link before it gives up on it.
    expect((await mute.nextOfType('ping')).type).toBe('ping')
    expect((await gone).reason?.code).toBe(ErrorCode.HEARTBEAT_TIMEOUT)
    await mute.closed
    expect(live.isOpen).toBe(true)
    expect(d.nodes).toEqual(['live'])
    expect(live.received.some((m) => m.type === 'ping')).toBe(true)
  })
})
