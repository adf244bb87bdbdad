import { randomBytes } from 'node:crypto'
import { expect } from 'vitest'
import { Node } from '../../src/node/node.js'
import { NONCE_SIZE } from '../../src/protocol/handshake.js'
import { PROTOCOL_VERSION, type HelloMessage, type Message, type WireJob } from '../../src/protocol/messages.js'
import { pack } from '../../src/protocol/msgpack.js'
import type { Store } from '../../src/storage/store.js'
import { config, FIXTURE_JOBS, type Resources } from './cluster.js'
import { fakeDistributor, type FakePeer } from './fake-peer.js'

/** The distributor's side of the handshake, without a secret. */
export async function welcome(peer: FakePeer): Promise<HelloMessage> {
  peer.send({ type: 'challenge', protocolVersion: PROTOCOL_VERSION, nonce: randomBytes(NONCE_SIZE), auth: false })
  const hello = await peer.nextOfType('hello')
  peer.send({ type: 'welcome', group: 'default', name: 'fake', heartbeatMs: 1000 })
  return hello
}

/**
 * A memory node 'real' dialling a fake distributor, connected and welcomed.
 * `storeFor`: a store of the test's own, given the key the node files the fake's results under.
 */
export async function nodeOnFakeDistributor(
  res: Resources,
  storeFor?: (distributor: string) => Promise<Store>,
): Promise<{ node: Node; peer: FakePeer; nextPeer: () => Promise<FakePeer> }> {
  const fake = await fakeDistributor(res)
  const distributor = `127.0.0.1:${fake.port}`
  const storage = storeFor === undefined ? 'memory' : await storeFor(distributor)
  const node = new Node(
    {
      name: 'real',
      distributors: [distributor],
      jobDirectory: FIXTURE_JOBS,
      storage,
      reconnectMinMs: 10,
      reconnectMaxMs: 50,
    },
    config(),
  )
  res.add(node, (n) => n.close({ force: true }))
  const up = node.waitFor('link:up')
  await node.start()
  const peer = await fake.nextPeer()
  const hello = await welcome(peer)
  expect(hello.durable).toBe(false)
  await up
  return { node, peer, nextPeer: fake.nextPeer }
}

/** An hour from when the tests were loaded: a job that stays on the node's timer. */
export const LATER = Date.now() + 3_600_000

/** An echo job in its wire form, due at `dueAt`. */
export const wireJob = (id: string, dueAt = LATER): WireJob => ({ id, name: 'echo', args: pack({ id }), dueAt, run: 1 })

/** The node's answers to dispatch frames, in order. */
export const answers = (peer: FakePeer): Message[] =>
  peer.received.filter((m) => m.type === 'accepted' || m.type === 'rejected')
