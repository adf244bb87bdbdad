/*
 * The decisions of limits across a group (docs/architecture.md, Limits), as pure functions
 * of plain numbers: what a member holds, asks for and gives back. GroupLimits carries them out.
 */

/** The slots a member's jobs of a scope could use: in flight and waiting, within the limit. */
export function slotsWanted(concurrency: number | undefined, used: number, waiting: number, detached: boolean): number {
  if (detached || concurrency === undefined) return 0
  return Math.min(concurrency, used + waiting)
}

/**
 * The slots a member should hold of a scope: what its jobs in flight use and what its
 * waiting jobs could use, within the limit; nothing once the limit is gone. WHY not more:
 * a member holds no slot it has no job for, so another member's jobs get it. While
 * `contenders` other members want more slots of the scope than they hold:
 * - with at least one slot per member wanting, at most its share (`concurrency` / members
 *   wanting, rounded up) or what its jobs in flight use: a member with a backlog gives slots
 *   back as its jobs end instead of keeping them for its backlog;
 * - with fewer slots than members wanting, turns: what its jobs in flight use, and, holding
 *   none, one. `turnOver` (a job of it just ended here) gives the slot it freed back, so a
 *   waiting member gets it (the member then waits its turn: GroupLimits marks it refused).
 */
export function slotsTarget(
  concurrency: number | undefined,
  used: number,
  waiting: number,
  detached: boolean,
  contenders = 0,
  turnOver = false,
): number {
  const wanted = slotsWanted(concurrency, used, waiting, detached)
  if (contenders <= 0 || concurrency === undefined) return wanted
  const members = contenders + 1
  if (concurrency >= members) return Math.min(wanted, Math.max(Math.ceil(concurrency / members), used))
  return Math.min(wanted, turnOver ? used : Math.max(used, 1))
}

/** Fewer slots than members wanting them: they take turns (see slotsTarget). */
export function scarce(concurrency: number | undefined, contenders: number): boolean {
  return contenders > 0 && (concurrency ?? 0) < contenders + 1
}

/**
 * Whether a scope's slots go into the turn's call: given back when more are held than
 * wanted; asked for when fewer, unless the last ask was refused and nothing since could
 * have freed one (a give-back heard, a lease run out): no polling.
 */
export function slotsDecision(held: number, target: number, refused: boolean): 'give' | 'ask' | 'none' {
  if (target < held) return 'give'
  if (target > held && !refused) return 'ask'
  return 'none'
}

/**
 * Starts to ask for: one per waiting job, within the rate's max and, with a concurrency
 * limit, the slots held and unused here (a start granted and not used is given back the
 * next turn, and counts in the window until then).
 */
export function startsWanted(
  max: number,
  waiting: number,
  freeSlots: number | undefined,
  refused: boolean,
  detached: boolean,
): number {
  if (refused || detached) return 0
  return Math.max(0, Math.min(max, waiting, freeSlots ?? Number.POSITIVE_INFINITY))
}

/**
 * How long after asking a member may use a granted start: a tenth of the window, at most
 * 50 ms (at least 1). Each start counts in the window from the end of its grace (see
 * limit-scripts.ts), so a saturated rate spaces its windows by `per` + grace: the price of
 * holding in dispatch times whatever the latency of each answer. An answer slower than
 * the grace grants starts that are given back unused.
 */
export function startGraceMs(perMs: number): number {
  return Math.max(1, Math.min(50, Math.floor(perMs / 10)))
}
