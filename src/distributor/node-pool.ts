import type { NodeSession } from './node-session.js'
import { decide, decisionSlot, pick, roomiest, type Decision, type Destination } from './routing.js'

/**
 * The READY nodes, indexed for the routing rule (routing.ts): in connection order for the
 * least-loaded scan, by name for a job's `node`. It keeps the tie-break's rotation, and the
 * one slot every decision is written into: a dispatch pass makes no object per job.
 */
export class NodePool {
  private readonly sessions: NodeSession[] = []
  private readonly byName = new Map<string, NodeSession>()
  /** Rotates the tie-break so equally loaded nodes take turns. */
  private turn = 0
  private readonly slot = decisionSlot<NodeSession>()

  get size(): number {
    return this.sessions.length
  }

  all(): readonly NodeSession[] {
    return this.sessions
  }

  get(name: string): NodeSession | undefined {
    return this.byName.get(name)
  }

  add(session: NodeSession): void {
    this.sessions.push(session)
    this.byName.set(session.name, session)
  }

  remove(session: NodeSession): void {
    const i = this.sessions.indexOf(session)
    if (i >= 0) this.sessions.splice(i, 1)
    if (this.byName.get(session.name) === session) this.byName.delete(session.name)
  }

  /** Some connected node has a definition for `name` (room or not). */
  knows(name: string): boolean {
    for (const s of this.sessions) if (s.jobs.has(name)) return true
    return false
  }

  /**
   * What becomes of a job of `bytes` (its wireSize) bound for `to` (see routing.ts,
   * Decision). The decision is valid until the next call.
   */
  decide(to: Destination, bytes: number, strict: boolean): Decision<NodeSession> {
    const preferred = to.node === undefined ? undefined : this.byName.get(to.node)
    const decision = decide(this.sessions, preferred, to, bytes, strict, this.turn, this.slot)
    this.turn = decision.turn
    return decision
  }

  /**
   * The node a job of `bytes` (its wireSize) goes to now, if any: nodes whose frame limit
   * it exceeds are passed over like nodes without its definition.
   */
  pick(
    name: string,
    node: string | undefined,
    notNode: string | undefined,
    strict: boolean,
    bytes: number,
  ): NodeSession | undefined {
    const preferred = node === undefined ? undefined : this.byName.get(node)
    const picked = pick(this.slot, this.sessions, preferred, name, node, notNode, strict, bytes, this.turn)
    this.turn = picked.turn
    return picked.node
  }

  /** Of the nodes `pick` could give such a job to, room or not, the one with the largest frame limit. */
  roomiest(
    name: string,
    node: string | undefined,
    notNode: string | undefined,
    strict: boolean,
  ): NodeSession | undefined {
    return roomiest(this.sessions, name, node, notNode, strict)
  }
}
