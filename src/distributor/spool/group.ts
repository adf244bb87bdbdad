import type { DistributorClosedError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { MessageType, type CancelOutcome, type Message } from '../../protocol/messages.js'
import type { Timer } from '../../scheduling/timer-heap.js'
import { GroupStore } from '../../storage/redis/group-store.js'
import { StoreGuard } from '../../storage/store-guard.js'
import type { ClaimAnswer } from '../../storage/redis/spool-script.js'
import type { DistributorEvents } from '../events.js'
import type { TrackedJob } from '../tracked-job.js'
import type { GroupClaims } from '../unique-jobs.js'
import { GroupCancels } from './group-cancels.js'
import { GroupLimits } from './group-limits.js'
import { GroupPauses } from './group-pauses.js'
import { Membership } from './membership.js'
import { Spool } from './spool.js'
import type { SpooledJob } from './spooled-job.js'

/** What the group needs of its distributor. */
export interface GroupContext {
  readonly log: Logger
  readonly events: DistributorEvents
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
  /** The `host:port` nodes dial (known once listening). */
  advertise(): string
  /** Sends `message` to every connected node. */
  broadcast(message: Message): void
  /** This member holds job `id`; `cancelHeld` cancels such a job as `cancel(id)` does. */
  holds(id: string): boolean
  cancelHeld(id: string): Promise<boolean>
  /**
   * Jobs read back from a spool wait for nodes again: the distributor tracks those it does
   * not hold already, tells `held` of each before queueing it, and runs a dispatch pass.
   */
  restore(jobs: SpooledJob[], held: (job: TrackedJob) => void): void
  /** The claim of `job`'s unique key was written: see SpoolContext.claimed. */
  claimed(job: TrackedJob, answer: ClaimAnswer | undefined): void
  /** Another member's job of `name` and `key` pushed back: see GroupPausesContext.pause. */
  paused(name: string, key: string, seconds: number): void
  /** An operator's pause of job name `name` for the group: see GroupPausesContext.operatorPaused. */
  operatorPaused(name: string, paused: boolean): void
}

/** What the group reads of the distributor's options. */
export interface GroupOptions {
  readonly storage: string
  readonly group: string
  /** This member's name: its spool, its lease and its registry entry are under it. */
  readonly name: string
  readonly leaseMs: number
  readonly storeTimeoutMs: number
}

/**
 * A distributor's part in its group (docs/architecture.md, "Distributor groups"), present
 * with `storage`: the group's state in Redis (`GroupStore`), this member's spool (`Spool`),
 * its place in the group (`Membership`: the lease on its name, resume and adoption),
 * cancel from any member (`GroupCancels`) and limits across the group (`GroupLimits`).
 * The distributor keeps the job table and the queue; restored jobs reach them through the
 * context.
 *
 * Lifecycle: constructed → connect() → join() (the name taken, the spool resumed, writes
 * and the group watch started) → handOver() at close, or never joined → disconnect().
 */
export class DistributorGroup {
  readonly spool: Spool
  /** The group's unique keys, claimed and released with the spool's writes. */
  readonly claims: GroupClaims
  /** The slots and starts of limits across the group (the distributor's Limits share them). */
  readonly limits: GroupLimits
  private readonly store: GroupStore
  private readonly membership: Membership
  private readonly cancels: GroupCancels
  private readonly pauses: GroupPauses
  /** The spool's writes land (`spool:up`) or fail (`spool:down`). */
  private up = true

  constructor(
    private readonly ctx: GroupContext,
    private readonly options: GroupOptions,
  ) {
    const { log, events } = ctx
    const after = (timer: Timer, ms: number): void => ctx.after(timer, ms)
    const cancelTimer = (timer: Timer): void => ctx.cancelTimer(timer)
    // A hung Redis counts as failing (every wait is bounded): joining, renewing, giving the
    // name up at close, as the spool's writes.
    const guard = new StoreGuard({ now: Date.now, after }, options.storeTimeoutMs)
    this.store = new GroupStore(options.storage, options.group, { guard })
    this.spool = new Spool(
      {
        log,
        after,
        cancelTimer,
        persisted: (job) => job.markPersisted(),
        changed: (error) => {
          this.up = error === undefined
          if (error === undefined) events.emit('spool:up', {})
          else events.emit('spool:down', { error })
        },
        claimed: (job, answer) => ctx.claimed(job, answer),
      },
      this.store,
      options.name,
      options.storeTimeoutMs,
    )
    const spool = this.spool
    this.claims = {
      claim: (job, scope, def, ttlMs, scheduled) => spool.claim(job, scope, def, ttlMs, scheduled),
      releaseKey: (id) => spool.releaseKey(id),
      cancel: (id) => void this.cancels.request(id),
      rewrite: (job) => spool.add(job),
    }
    this.cancels = new GroupCancels(
      {
        log,
        after,
        cancelTimer,
        holds: (id) => ctx.holds(id),
        cancelHeld: (id) => ctx.cancelHeld(id),
        cancelOnNodes: (id) => ctx.broadcast({ type: MessageType.CANCEL, id }),
      },
      this.store,
    )
    this.pauses = new GroupPauses(
      {
        log,
        pause: (name, key, seconds) => ctx.paused(name, key, seconds),
        operatorPaused: (name, paused) => ctx.operatorPaused(name, paused),
      },
      this.store,
    )
    this.membership = new Membership(
      {
        group: options.group,
        name: options.name,
        advertise: () => ctx.advertise(),
        log,
        after,
        cancelTimer,
        restore: (jobs, from) => this.restore(jobs, from),
        flush: () => this.spool.flush(),
        answering: (names) => ctx.broadcast({ type: MessageType.ANSWERS, names }),
        adopted: (member, jobs) => events.emit('member:adopted', { member, jobs }),
      },
      this.store,
      options.leaseMs,
    )
    // What this process holds is its lease token's: a restart under the same name holds none of it.
    this.limits = new GroupLimits({ log, after, cancelTimer }, this.store, options.name, this.membership.token)
  }

  /** The spool's writes land: false from `spool:down` until `spool:up`. */
  get spoolUp(): boolean {
    return this.up
  }

  /** Gone members this one answers for. */
  get answersFor(): readonly string[] {
    return this.membership.answersFor
  }

  connect(): Promise<void> {
    return this.store.connect()
  }

  disconnect(): Promise<void> {
    return this.store.close()
  }

  /**
   * Takes this member's name, resumes its spool, and starts writing it and watching the
   * group. Throws NameTakenError when a live process holds the name, or what Redis threw;
   * a lease taken meanwhile is given up again.
   */
  async join(): Promise<void> {
    try {
      await this.membership.join()
      await this.cancels.start()
      await this.pauses.start()
    } catch (err) {
      await this.membership.abandon()
      throw err
    }
    this.spool.start()
    this.membership.start()
    this.limits.start()
  }

  /**
   * Asks the other members and the connected nodes to cancel a job this member does not
   * hold: a durable node may hold one whose member is gone.
   */
  cancel(id: string): Promise<boolean> {
    return this.cancels.request(id)
  }

  /** A job of `name` and `key` pushed back on this member's node for `seconds`: the other members pause it too. */
  pushedBack(name: string, key: string, seconds: number): void {
    this.pauses.announce(name, key, seconds)
  }

  /** An operator paused (or resumed) job name `name` here: so it is for the group. */
  operatorPause(name: string, paused: boolean): void {
    this.pauses.operatorPause(name, paused)
  }

  /** A node answered a cancel of a job this member does not hold. */
  cancelResult(id: string, outcome: CancelOutcome): void {
    this.cancels.nodeResult(id, outcome)
  }

  /** Closing before the name was held: nothing was written, nothing is handed over. */
  close(): void {
    this.spool.close()
    this.limits.close()
  }

  /**
   * Closing with a spool (a rolling deploy's SIGTERM): nothing spooled fails. The spool is
   * written out (for at most a lease: Redis may be down), the name is given up so that a
   * restart or another member takes the work over at once. A job of `jobs` whose record
   * never reached Redis was never reported persisted: its `persisted` rejects.
   */
  async handOver(jobs: readonly TrackedJob[], unpersisted: DistributorClosedError): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      this.spool.flush(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.options.leaseMs)
      }),
    ])
    clearTimeout(timer)
    this.spool.close()
    this.cancels.close()
    for (const job of jobs) job.failPersisted(unpersisted)
    // Before the lease goes: slots given back now reach the others without waiting it out.
    await this.limits
      .giveBack()
      .catch((err: unknown) => this.ctx.log.warn({ err }, 'cannot give the group its limit slots back'))
    await this.membership.leave().catch((err: unknown) => this.ctx.log.warn({ err }, 'cannot give up the member lease'))
  }

  /**
   * Jobs read back from a spool; their results run the named handlers. This member's own
   * spool holds them already; a gone member's are spooled here (Membership removes them
   * from that spool once they are written).
   */
  private restore(spooled: SpooledJob[], from: string): void {
    const own = from === this.options.name
    this.ctx.restore(spooled, (job) => {
      if (own) {
        job.spooled = true
        job.markPersisted()
      } else {
        this.spool.add(job)
      }
    })
  }
}
