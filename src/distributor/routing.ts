import { FRAME_ENVELOPE_BYTES } from '../config.js'

/**
 * Which node a job goes to, as pure functions of plain data: the connected nodes (name, job
 * names, load, window, room, frame limit) and the job (name, `node`, `notNode`, size). No
 * socket, queue or clock: `NodePool` keeps the candidates and calls these on the hot path,
 * a dispatch pass carries the decision out, and a unit test needs a few literals.
 *
 * The rule (docs/architecture.md, Routing): a job goes only to a node that advertised its
 * name, is not its `notNode`, has room, and whose frame limit it fits. Its `node` wins when
 * that node qualifies (and is waited for when `strict`); otherwise the least-loaded
 * qualifying node by load / window, with a rotating tie-break, so equal nodes share a burst
 * evenly and a slow node (whose jobs finish later) gets less.
 *
 * The hot path makes no object per job: a decision is written into a slot the caller owns
 * and reuses, and the tie-break's rotation is passed in and handed back (`turn`).
 */

/** What the rule reads of a connected node (a NodeSession). */
export interface Candidate {
  readonly name: string
  /** The job names it advertised. */
  readonly jobs: ReadonlySet<string>
  /** Load units in flight to it (see node-session.ts). */
  readonly load: number
  readonly window: number
  /** It takes a job now: ready, accepting, answering, below its window, not backlogged. */
  readonly hasRoom: boolean
  /** The smaller of the two ends' frame limits. */
  readonly maxFrameSize: number
}

/** Where a job may go: its name and its `node` and `notNode` options (what a route of the queue shares). */
export interface Destination {
  readonly name: string
  readonly node: string | undefined
  readonly notNode: string | undefined
}

/** A pick: the candidate chosen, if any, and the tie-break rotation to start the next pick at. */
export interface Picked<C extends Candidate> {
  node: C | undefined
  turn: number
}

export type Verdict = 'give' | 'aside' | 'fail' | 'wait'

/**
 * What becomes of the job a dispatch pass looks at:
 * - `give`: it goes to `node` now.
 * - `aside`: no node with room takes a frame that large, but some connected node that runs
 *   it could, and a node with room takes smaller jobs: it waits aside, so that the jobs
 *   behind it go on.
 * - `fail`: no connected node that runs it takes a frame that large: it fails, naming
 *   `node`, the one with the largest frame limit.
 * - `wait`: no node that runs it has room now, or none runs it: it waits, and so do the
 *   jobs behind it.
 * `turn` is the tie-break rotation to start the next decision at.
 */
export type Decision<C extends Candidate> =
  | { readonly kind: 'give'; readonly node: C; readonly turn: number }
  | { readonly kind: 'fail'; readonly node: C; readonly turn: number }
  | { readonly kind: 'aside'; readonly node: undefined; readonly turn: number }
  | { readonly kind: 'wait'; readonly node: undefined; readonly turn: number }

/** Where `decide` writes a decision: one per caller, overwritten by every call. */
export interface DecisionSlot<C extends Candidate> extends Picked<C> {
  kind: Verdict
}

export function decisionSlot<C extends Candidate>(): DecisionSlot<C> {
  return { kind: 'wait', node: undefined, turn: 0 }
}

/** A job of `bytes` (its wireSize) goes into a dispatch frame `node` accepts. */
export function fits(node: Candidate, bytes: number): boolean {
  return bytes <= node.maxFrameSize - FRAME_ENVELOPE_BYTES
}

/**
 * Decides where a job of `bytes` bound for `to` goes now (see Decision). `preferred` is the
 * candidate named `to.node`, when one is connected (the caller's index finds it); `turn`
 * rotates the tie-break between equally loaded candidates. Writes into `out` and returns it.
 */
export function decide<C extends Candidate>(
  candidates: readonly C[],
  preferred: C | undefined,
  to: Destination,
  bytes: number,
  strict: boolean,
  turn: number,
  out: DecisionSlot<C> = decisionSlot(),
): Decision<C> {
  pick(out, candidates, preferred, to.name, to.node, to.notNode, strict, bytes, turn)
  if (out.node !== undefined) {
    out.kind = 'give'
    return out as Decision<C>
  }
  const largest = roomiest(candidates, to.name, to.node, to.notNode, strict)
  if (largest === undefined) return verdict(out, 'wait', undefined)
  if (!fits(largest, bytes)) return verdict(out, 'fail', largest)
  // It would fit a node that runs it, none of those with room: aside when a node with room
  // takes a job of this route at all, else every job of the route waits.
  pick(out, candidates, preferred, to.name, to.node, to.notNode, strict, 0, out.turn)
  return verdict(out, out.node === undefined ? 'wait' : 'aside', undefined)
}

function verdict<C extends Candidate>(out: DecisionSlot<C>, kind: Verdict, node: C | undefined): Decision<C> {
  out.kind = kind
  out.node = node
  return out as Decision<C>
}

/**
 * The candidate a job of `bytes` goes to now, if any: its `node` when that one qualifies,
 * else (unless `strict` and it has a `node`) the least-loaded qualifying one, the scan
 * starting at `turn` (which it then advances). Writes into `out` and returns it.
 */
export function pick<C extends Candidate>(
  out: Picked<C>,
  candidates: readonly C[],
  preferred: C | undefined,
  name: string,
  node: string | undefined,
  notNode: string | undefined,
  strict: boolean,
  bytes: number,
  turn: number,
): Picked<C> {
  out.turn = turn
  if (node !== undefined) {
    if (preferred?.hasRoom && preferred.jobs.has(name) && node !== notNode && fits(preferred, bytes)) {
      out.node = preferred
      return out
    }
    if (strict) {
      out.node = undefined
      return out
    }
  }
  const n = candidates.length
  let best: C | undefined
  let bestLoad = Infinity
  const start = turn % (n || 1)
  out.turn = turn + 1
  for (let k = 0; k < n; k++) {
    const s = candidates[(start + k) % n] as C
    if (!s.hasRoom || s.name === notNode || !s.jobs.has(name) || !fits(s, bytes)) continue
    const load = s.load / s.window
    if (load < bestLoad) {
      best = s
      bestLoad = load
    }
  }
  out.node = best
  return out
}

/**
 * Of the candidates `pick` could give such a job to (room or not, taking jobs now or not: a
 * store that is down comes back), the one with the largest frame limit; undefined when
 * there is none.
 */
export function roomiest<C extends Candidate>(
  candidates: readonly C[],
  name: string,
  node: string | undefined,
  notNode: string | undefined,
  strict: boolean,
): C | undefined {
  let best: C | undefined
  for (const s of candidates) {
    if (s.name === notNode || !s.jobs.has(name) || (strict && node !== undefined && s.name !== node)) continue
    if (best === undefined || s.maxFrameSize > best.maxFrameSize) best = s
  }
  return best
}
