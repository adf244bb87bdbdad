import { randomBytes } from 'node:crypto'
import type { Logger } from '../../logger.js'
import type { CancelOutcome } from '../../protocol/messages.js'
import { Timer } from '../../scheduling/timer-heap.js'
import type { GroupStore } from '../../storage/redis/group-store.js'

/** How long a cancel of a job this member does not hold waits for another member or a node to answer. */
export const GROUP_CANCEL_WAIT_MS = 2_000

/** What group cancels need of their distributor. */
export interface GroupCancelsContext {
  readonly log: Logger
  /** This member holds the job (it is in its table). */
  holds(id: string): boolean
  /** Cancels a job this member holds, as `cancel(id)` does. */
  cancelHeld(id: string): Promise<boolean>
  /** Sends a cancel of `id` to every connected node: a durable node may hold a job no member does. */
  cancelOnNodes(id: string): void
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
}

/** A cancel message between members: `c` asks, `r` answers (`o`: the outcome). */
type Message = { t: 'c'; id: string; from: string } | { t: 'r'; id: string; o: 'cancelled' | 'finished' }

/**
 * `cancel(id)` on any member of a group (docs/architecture.md, "Cancel from any member"):
 * a member that does not hold the job asks the others over Redis pub/sub, and the nodes
 * connected to it (a durable node may hold a job whose member is gone); the first answer
 * that the job was cancelled or had finished settles it. Nobody answering within
 * GROUP_CANCEL_WAIT_MS means nobody holds it: false, as for an unknown id.
 */
export class GroupCancels {
  private readonly waiting = new Map<string, { waiters: ((cancelled: boolean) => void)[]; timer: Timer }>()
  /** Tells this member's own messages from the others'. */
  private readonly me = randomBytes(6).toString('hex')

  constructor(
    private readonly ctx: GroupCancelsContext,
    private readonly store: GroupStore,
  ) {}

  start(): Promise<void> {
    return this.store.subscribeCancels((raw) => this.onMessage(raw))
  }

  request(id: string): Promise<boolean> {
    return new Promise((resolve) => {
      const asked = this.waiting.get(id)
      if (asked !== undefined) {
        asked.waiters.push(resolve)
        return
      }
      const timer = new Timer(() => this.settle(id, false))
      this.waiting.set(id, { waiters: [resolve], timer })
      this.ctx.after(timer, GROUP_CANCEL_WAIT_MS)
      this.publish({ t: 'c', id, from: this.me })
      this.ctx.cancelOnNodes(id)
    })
  }

  /** A node answered a cancel of a job this member does not hold: whoever asked hears it. */
  nodeResult(id: string, outcome: CancelOutcome): void {
    if (outcome === 'unknown') return
    this.settle(id, outcome === 'cancelled')
    this.publish({ t: 'r', id, o: outcome })
  }

  close(): void {
    for (const id of [...this.waiting.keys()]) this.settle(id, false)
  }

  private onMessage(raw: string): void {
    let message: Message
    try {
      message = JSON.parse(raw) as Message
    } catch {
      return
    }
    if (typeof message !== 'object' || message === null || typeof message.id !== 'string') return
    if (message.t === 'r') {
      this.settle(message.id, message.o === 'cancelled')
    } else if (message.t === 'c' && message.from !== this.me && this.ctx.holds(message.id)) {
      void this.ctx
        .cancelHeld(message.id)
        .then((cancelled) => this.publish({ t: 'r', id: message.id, o: cancelled ? 'cancelled' : 'finished' }))
    }
  }

  private settle(id: string, cancelled: boolean): void {
    const asked = this.waiting.get(id)
    if (asked === undefined) return
    this.waiting.delete(id)
    this.ctx.cancelTimer(asked.timer)
    for (const waiter of asked.waiters) waiter(cancelled)
  }

  private publish(message: Message): void {
    this.store.publishCancel(JSON.stringify(message)).catch((err: unknown) => {
      this.ctx.log.warn({ err, id: message.id }, 'cannot reach the group for a cancel')
    })
  }
}
