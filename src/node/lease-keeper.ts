import type { Logger } from '../logger.js'
import { Timer } from '../scheduling/timer-heap.js'
import type { NodeLeases, Store } from '../storage/store.js'

/** What the lease keeper needs of its node. */
export interface LeaseContext {
  readonly name: string
  readonly log: Logger
  /** Takes over a dead peer's jobs from its store; resolves with how many. */
  adopt(peer: string, store: Store): Promise<number>
  /** Jobs of `peer` this node still holds unfinished. */
  heldFor(peer: string): number
  /** Fires `timer` once, `ms` from now, on the node's scheduler. */
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
}

/**
 * Keeps this node's lease on its stored jobs alive and, with takeover on, adopts the jobs
 * of peers whose lease expired (they died and did not come back within the lease).
 *
 * WHY a lease held by name: a node restarted after a crash must get its own jobs back at
 * once, while a peer that adopted them keeps them until it has finished them. The atomic
 * take-or-renew in the store makes exactly one peer win a dead node's jobs.
 *
 * This is the one periodic store access of the system: one renewal per third of a lease
 * and, with takeover on, one look at the node list per lease. It is independent of how
 * many jobs there are.
 */
export class LeaseKeeper {
  private readonly adopted = new Set<string>()
  private running = false
  private readonly renewTimer = new Timer(() => void this.renew())
  private readonly watchTimer = new Timer(() => void this.watch())

  constructor(
    private readonly ctx: LeaseContext,
    private readonly leases: NodeLeases,
    private readonly leaseMs: number,
    private readonly takeover: boolean,
  ) {}

  /** Resolves once this node holds its own lease; waits while a peer finishes its jobs. */
  async acquireOwn(): Promise<void> {
    let announced = false
    for (;;) {
      const owner = await this.leases.acquireLease(this.ctx.name, this.ctx.name, this.leaseMs)
      if (owner === this.ctx.name) return
      if (!announced) {
        this.ctx.log.warn(
          { holder: owner },
          `node '${owner}' took over this node's jobs; waiting until it has finished them`,
        )
        announced = true
      }
      await new Promise<void>((resolve) => this.ctx.after(new Timer(resolve), this.leaseMs / 3))
    }
  }

  start(): void {
    this.running = true
    this.ctx.after(this.renewTimer, this.leaseMs / 3)
    if (this.takeover) this.ctx.after(this.watchTimer, this.leaseMs)
  }

  async stop(): Promise<void> {
    this.running = false
    this.ctx.cancelTimer(this.renewTimer)
    this.ctx.cancelTimer(this.watchTimer)
    for (const peer of this.adopted) await this.leases.releaseLease(peer, this.ctx.name).catch(() => {})
    this.adopted.clear()
  }

  private async renew(): Promise<void> {
    try {
      const owner = await this.leases.acquireLease(this.ctx.name, this.ctx.name, this.leaseMs)
      if (owner !== this.ctx.name) {
        // Only after the store was unreachable for longer than a lease: a peer adopted our
        // jobs and both may run some of them (at-least-once still holds).
        this.ctx.log.error({ holder: owner }, `lost the lease on this node's jobs to '${owner}'`)
      }
      for (const peer of [...this.adopted]) {
        if (this.ctx.heldFor(peer) === 0) {
          this.adopted.delete(peer)
          await this.leases.releaseLease(peer, this.ctx.name)
          this.ctx.log.info({ peer }, "finished a dead peer's jobs; released its lease")
        } else {
          await this.leases.acquireLease(peer, this.ctx.name, this.leaseMs)
        }
      }
    } catch (err) {
      this.ctx.log.warn({ err }, 'cannot renew the lease')
    }
    if (this.running) this.ctx.after(this.renewTimer, this.leaseMs / 3)
  }

  private async watch(): Promise<void> {
    try {
      for (const peer of await this.leases.listNodes()) {
        if (peer === this.ctx.name || this.adopted.has(peer)) continue
        if ((await this.leases.acquireLease(peer, this.ctx.name, this.leaseMs)) !== this.ctx.name) continue
        const count = await this.ctx.adopt(peer, this.leases.forNode(peer))
        if (count === 0) {
          await this.leases.releaseLease(peer, this.ctx.name)
          continue
        }
        this.adopted.add(peer)
        this.ctx.log.warn({ peer, jobs: count }, "took over a dead peer's unfinished jobs")
      }
    } catch (err) {
      this.ctx.log.warn({ err }, 'takeover check failed')
    }
    if (this.running) this.ctx.after(this.watchTimer, this.leaseMs)
  }
}
