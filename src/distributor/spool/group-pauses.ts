import { randomBytes } from 'node:crypto'
import { MAX_RATE_LIMIT_SECONDS } from '../../errors.js'
import type { Logger } from '../../logger.js'
import type { GroupStore } from '../../storage/redis/group-store.js'

/** A pause ending at most this much later than one told already is not told again. */
const TOLD_SLACK_MS = 1000
/** Past this many names and keys told, those whose pause ended are forgotten. */
const TOLD_KEPT = 1024

/** What group pauses need of their distributor. */
export interface GroupPausesContext {
  readonly log: Logger
  /** Another member's job of `name` and `key` pushed back: dispatch none of them here for `seconds`. */
  pause(name: string, key: string, seconds: number): void
  /** An operator paused (or resumed) job name `name` for the group, on another member or before this one joined. */
  operatorPaused(name: string, paused: boolean): void
}

/**
 * A message between members, and who sent it: `push`, a job's push-back (the job name, its
 * key or '', seconds); `op`, an operator's pause or resume of a job name.
 */
type Message =
  | { t: 'push'; from: string; name: string; key: string; seconds: number }
  | { t: 'op'; from: string; name: string; paused: boolean }

/**
 * Pauses across the group, over Redis pub/sub.
 *
 * A job's push-back (`ctx.rateLimit`, docs/architecture.md, Limits): the upstream that
 * answered 429 is the group's, not one member's, so the member whose node reports it tells
 * the others, and each pauses the name (or key) as it would for its own job. Seconds, not
 * an instant, travel: each member counts from when it hears, so clocks need not agree.
 * Best effort, as the pause itself: a message lost to an outage pauses nothing there, and
 * that member's own jobs are pushed back by their nodes in turn.
 *
 * An operator's pause of a job name (admin API, `distributor.pause`): kept in a set in
 * Redis, read by a member as it joins, and told to the members there; a member whose
 * write fails keeps the pause itself, and says so in its log.
 */
export class GroupPauses {
  /** Tells this member's own messages from the others'. */
  private readonly me = randomBytes(6).toString('hex')
  /** The end of the last pause told per name and key (NUL between), pruned of the ended ones when it grows. */
  private readonly told = new Map<string, number>()

  constructor(
    private readonly ctx: GroupPausesContext,
    private readonly store: GroupStore,
  ) {}

  /** Hears the group's pauses from now on, and takes over the operator's pauses in force. */
  async start(): Promise<void> {
    await this.store.subscribePauses((raw) => this.onMessage(raw))
    for (const name of await this.store.pausedNames()) this.ctx.operatorPaused(name, true)
  }

  /** An operator paused (or resumed) `name` on this member: so it is for the group. */
  operatorPause(name: string, paused: boolean): void {
    const message: Message = { t: 'op', from: this.me, name, paused }
    this.store
      .setPaused(name, paused, JSON.stringify(message))
      .catch((err: unknown) =>
        this.ctx.log.warn({ err, job: name }, `cannot ${paused ? 'pause' : 'resume'} the job name for the group`),
      )
  }

  announce(name: string, key: string, seconds: number): void {
    // A burst of push-backs (one per job that met the 429) is told once: a pause that ends
    // less than a second after one told already adds nothing the others need to hear.
    const now = Date.now()
    const until = now + seconds * 1000
    const scope = `${name}\0${key}`
    if ((this.told.get(scope) ?? Number.NEGATIVE_INFINITY) + TOLD_SLACK_MS >= until) return
    if (this.told.size >= TOLD_KEPT) for (const [told, end] of this.told) if (end < now) this.told.delete(told)
    this.told.set(scope, until)
    const message: Message = { t: 'push', from: this.me, name, key, seconds }
    this.store
      .publishPause(JSON.stringify(message))
      .catch((err: unknown) => this.ctx.log.warn({ err, job: name, key }, 'cannot tell the group of a pause'))
  }

  private onMessage(raw: string): void {
    const message = parsePause(raw)
    if (message === undefined) {
      this.ctx.log.warn({ message: raw.slice(0, 200) }, 'ignoring a malformed pause message from the group')
      return
    }
    if (message.from === this.me) return
    if (message.t === 'push') this.ctx.pause(message.name, message.key, message.seconds)
    else this.ctx.operatorPaused(message.name, message.paused)
  }
}

function parsePause(raw: string): Message | undefined {
  let value: unknown
  try {
    value = JSON.parse(raw)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null) return undefined
  const { t, from, name, key, seconds, paused } = value as Record<string, unknown>
  if (typeof from !== 'string' || typeof name !== 'string' || name.length === 0) return undefined
  if (t === 'op') return typeof paused === 'boolean' ? { t, from, name, paused } : undefined
  if (t !== 'push' || typeof key !== 'string') return undefined
  if (typeof seconds !== 'number' || !(seconds > 0) || !(seconds <= MAX_RATE_LIMIT_SECONDS)) return undefined
  return { t, from, name, key, seconds }
}
