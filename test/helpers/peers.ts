import { expect } from 'vitest'
import type { Distributor } from '../../src/distributor/distributor.js'
import { MessageType, type Message } from '../../src/protocol/messages.js'
import type { Resources } from './cluster.js'
import { FakePeer, type FakePeerOptions } from './fake-peer.js'
import { within } from './within.js'

/** A FakePeer connected to `to` (a distributor, or the port it listens on), destroyed with `res`. */
export async function connectPeer(
  res: Resources,
  to: Distributor | number,
  options: FakePeerOptions = {},
): Promise<FakePeer> {
  const peer = await FakePeer.connect(typeof to === 'number' ? to : to.port, '127.0.0.1', options)
  return res.add(peer, (p) => p.destroy())
}

/** Asserts that `message` is an error frame with `code`, and returns it. */
export function expectError(message: Message, code: string): Extract<Message, { type: 'error' }> {
  expect(message.type).toBe(MessageType.ERROR)
  if (message.type !== MessageType.ERROR) throw new Error('unreachable')
  expect(message.code).toBe(code)
  return message
}

/** The peer's last frame is an error with `code`, after which the distributor closed the socket. */
export async function expectClosedWithError(
  peer: FakePeer,
  code: string,
): Promise<Extract<Message, { type: 'error' }>> {
  const error = expectError(await peer.nextOfType(MessageType.ERROR), code)
  await peer.closed
  expect(peer.isOpen).toBe(false)
  expect(peer.received.at(-1)).toEqual(error)
  return error
}

/** Proves the distributor still serves: an echo job enqueued now completes on `node`. */
export async function expectEchoCompletes(d: Distributor, node: string): Promise<void> {
  const ran = d.waitFor('job:success', (e) => e.name === 'echo')
  await expect(within(d.enqueue('echo', { n: 1 }).done, 'an echo job')).resolves.toMatchObject({ n: 1, result: 'Yay!' })
  expect((await ran).node).toBe(node)
}
