import type { Distributor } from '../../src/distributor/distributor.js'
import type { Node } from '../../src/node/node.js'
import { type Resources, startDistributor, startNode } from './cluster.js'
import { GatedStore } from './gated-stores.js'

/**
 * Drops the distributor's connection to node `name` at once, from the distributor's side,
 * as a network fault would: both ends see the link go down and the node redials.
 *
 * WHY it reaches into the distributor: no public call closes one node's connection. Once
 * the distributor offers one, this is the only place to change.
 */
export function dropNode(d: Distributor, name: string): void {
  const session = (
    d as unknown as { pool: { get(n: string): { connection: { socket: { destroy(): void } } } } }
  ).pool.get(name)
  session.connection.socket.destroy()
}

/** A distributor and a node 'n1' on a GatedStore holding its first `held` saves; quick to redial. */
export async function gatedNode(
  res: Resources,
  held: number,
): Promise<{ d: Distributor; store: GatedStore; node: Node }> {
  const d = await startDistributor(res)
  const store = new GatedStore(held)
  const node = await startNode(res, d, { name: 'n1', storage: store, reconnectMinMs: 10, reconnectMaxMs: 20 })
  return { d, store, node }
}
