import { FRAME_ENVELOPE_BYTES } from '../config.js'
import type { NodeSession } from './node-session.js'

/**
 * The READY nodes and the routing rule: a job goes only to a node that has its definition
 * and is not its `notNode`; its `node` wins when that node has room (and is waited for
 * when `strict`); otherwise the least-loaded node with room, by load relative to window, so
 * equal nodes share a burst evenly and a slow node (whose jobs finish later) gets less.
 */
export class NodePool {
  private readonly sessions: NodeSession[] = []
  private readonly byName = new Map<string, NodeSession>()
  /** Rotates the tie-break so equally loaded nodes take turns. */
  private turn = 0

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
   * The node a job of `bytes` (its wireSize) goes to now, if any: nodes whose frame limit
   * it exceeds are passed over like nodes without its definition.
   */
  pick(name: string, node: string | undefined, notNode: string | undefined, strict: boolean, bytes: number): NodeSession | undefined {
    if (node !== undefined) {
      const preferred = this.byName.get(node)
      if (preferred !== undefined && preferred.hasRoom && preferred.jobs.has(name) && node !== notNode && fits(preferred, bytes)) return preferred
      if (strict) return undefined
    }
    const n = this.sessions.length
    let best: NodeSession | undefined
    let bestLoad = Infinity
    const start = this.turn++ % (n || 1)
    for (let k = 0; k < n; k++) {
      const s = this.sessions[(start + k) % n] as NodeSession
      if (!s.hasRoom || s.name === notNode || !s.jobs.has(name) || !fits(s, bytes)) continue
      const load = s.load / s.window
      if (load < bestLoad) {
        best = s
        bestLoad = load
      }
    }
    return best
  }

  /**
   * Of the connected nodes `pick` could give such a job to (room or not, taking jobs now or
   * not: a store that is down comes back), the one with the largest frame limit; undefined
   * when there is none.
   */
  roomiest(name: string, node: string | undefined, notNode: string | undefined, strict: boolean): NodeSession | undefined {
    let best: NodeSession | undefined
    for (const s of this.sessions) {
      if (s.name === notNode || !s.jobs.has(name) || (strict && node !== undefined && s.name !== node)) continue
      if (best === undefined || s.maxFrameSize > best.maxFrameSize) best = s
    }
    return best
  }
}

/** A job of `bytes` (its wireSize) goes into a dispatch frame `session` accepts. */
export function fits(session: NodeSession, bytes: number): boolean {
  return bytes <= session.maxFrameSize - FRAME_ENVELOPE_BYTES
}
