import type { Logger } from '../logger.js'
import { MessageType, NotAcceptingReason, type StateMessage } from '../protocol/messages.js'

/** What a node that takes no new jobs tells a distributor that sent some anyway. */
const REFUSALS: Record<NotAcceptingReason, string> = {
  [NotAcceptingReason.STORE_DOWN]: 'node storage unavailable',
  [NotAcceptingReason.DRAINING]: 'node is shutting down',
  [NotAcceptingReason.QUIET]: 'node is quiet',
  [NotAcceptingReason.LEAVING]: 'node is leaving this distributor',
}

/** Why a node takes no new jobs, when it does not: the first of these that holds. */
export function notAcceptingReason(running: boolean, storeUp: boolean): NotAcceptingReason {
  if (!running) return NotAcceptingReason.DRAINING
  return storeUp ? NotAcceptingReason.QUIET : NotAcceptingReason.STORE_DOWN
}

/** What admission needs of its node. */
export interface AdmissionContext {
  readonly log: Logger
  /** The node runs (started, not draining). */
  running(): boolean
  /** Accepting or its reason changed: every distributor is told (`state`). */
  changed(): void
}

/**
 * Whether a node takes new jobs, and why not: it does while it runs, its store is up and no
 * operator quieted it. States: ACCEPTING ⇄ NOT ACCEPTING (reason: draining, store down,
 * quiet); the distributors are told every change of either, a change of reason alone too.
 */
export class Admission {
  private open = true
  /** Why not, as the distributors were last told. */
  private told: NotAcceptingReason | undefined
  /** An operator quieted the node (admin API): it takes no new jobs, and finishes what it holds. */
  private quieted = false
  /** False from `store:down` until `store:up`. */
  private up = true

  constructor(private readonly ctx: AdmissionContext) {}

  get accepting(): boolean {
    return this.open
  }

  get storeUp(): boolean {
    return this.up
  }

  /** What a distributor is told of it (at the handshake, and on every change). */
  message(): StateMessage {
    return this.open
      ? { type: MessageType.STATE, accepting: true }
      : { type: MessageType.STATE, accepting: false, reason: this.reason() }
  }

  /** What a dispatch that came anyway is refused with; undefined while accepting. */
  refusal(): string | undefined {
    return this.open ? undefined : REFUSALS[this.reason()]
  }

  /** The store went down (or came back up). */
  storeChanged(up: boolean): void {
    this.up = up
    if (!up) this.set(false)
    else if (this.ctx.running()) this.set(!this.quieted)
  }

  /** Quiets the node or lifts it; returns whether it is quiet now. */
  quiet(quiet: boolean): boolean {
    this.quieted = quiet
    if (this.ctx.running()) this.set(!quiet && this.up)
    if (quiet) this.ctx.log.info('quieted: taking no new jobs')
    return quiet
  }

  /** The node drains: it takes nothing more. */
  drain(): void {
    this.set(false)
  }

  private reason(): NotAcceptingReason {
    return notAcceptingReason(this.ctx.running(), this.up)
  }

  private set(accepting: boolean): void {
    const reason = accepting ? undefined : this.reason()
    if (this.open === accepting && this.told === reason) return
    this.open = accepting
    this.told = reason
    this.ctx.changed()
  }
}
