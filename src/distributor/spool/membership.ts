import { randomBytes } from 'node:crypto'
import { NameTakenError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { Timer } from '../../scheduling/timer-heap.js'
import type { GroupStore } from '../../storage/redis/group-store.js'
import type { MemberEntry } from '../../storage/redis/member-entry.js'
import { decodeSpooled, type SpooledJob } from './spooled-job.js'

/** What membership needs of its distributor. */
export interface MembershipContext {
  readonly group: string
  readonly name: string
  /** The `host:port` nodes dial (known once listening). */
  advertise(): string
  readonly log: Logger
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
  /**
   * Jobs read back from a spool, own (at start) or a gone member's (`from`): they wait for
   * nodes again, their results going to the named handlers. An adopted member's jobs are
   * spooled under this member's name before they leave its spool.
   */
  restore(jobs: SpooledJob[], from: string): void
  /** Resolves once this member's spool holds everything spooled so far. */
  flush(): Promise<void>
  /** This member now answers for these gone members: the nodes are told. */
  answering(names: string[]): void
  /** A gone member's work was taken over here. */
  adopted(member: string, jobs: number): void
}

/**
 * A distributor's place in its group (docs/architecture.md, "Distributor groups"): the
 * lease on its name, its registry entry, and the adoption of members gone longer than a
 * lease. The same shape as the nodes' LeaseKeeper: exactly one live member wins a gone
 * one's lease (an atomic take in Redis); no consensus of our own.
 *
 * WHY a token per process, not the name: a restarted member must tell its own dead
 * predecessor's lease (which it waits out, then takes) from a live process holding the same
 * name (which keeps renewing: NameTakenError).
 */
export class Membership {
  readonly token: string
  /** Gone members this one answers for. */
  private answers: string[] = []
  private running = false
  private readonly renewTimer = new Timer(() => void this.renew())
  private readonly watchTimer = new Timer(() => void this.watch())

  constructor(
    private readonly ctx: MembershipContext,
    private readonly store: GroupStore,
    private readonly leaseMs: number,
  ) {
    this.token = `${ctx.name}#${randomBytes(6).toString('hex')}`
  }

  /** Gone members this one answers for. */
  get answersFor(): readonly string[] {
    return this.answers
  }

  /**
   * Takes this member's name (waiting out a dead predecessor's lease, or a peer that is
   * adopting it), registers it, and restores its spool. Throws NameTakenError when a live
   * process holds the name.
   */
  async join(): Promise<void> {
    await this.acquireOwn()
    const previous = await this.store.readMember(this.ctx.name)
    if (previous !== undefined) this.answers = previous.answers.filter((n) => n !== this.ctx.name)
    await this.store.register(this.ctx.name, this.record(), true)
    const { jobs } = await this.readSpool(this.ctx.name)
    if (jobs.length > 0) {
      this.ctx.log.info({ jobs: jobs.length }, 'resumed the jobs of this member’s spool')
      this.ctx.restore(jobs, this.ctx.name)
    }
  }

  start(): void {
    this.running = true
    this.ctx.after(this.renewTimer, this.leaseMs / 3)
    this.ctx.after(this.watchTimer, this.leaseMs)
  }

  /** Gives the name up at once, so that a restart or another member takes the work over without waiting out the lease. */
  async leave(): Promise<void> {
    this.running = false
    this.ctx.cancelTimer(this.renewTimer)
    this.ctx.cancelTimer(this.watchTimer)
    // The entry first: once the lease is free, a restart may take the name and write its own.
    await this.store.register(this.ctx.name, { ...this.record(), leaseUntil: 0 }, true)
    await this.store.release(this.ctx.name, this.token)
  }

  /**
   * start() failed after join() may have taken the name: gives the lease up, if it is ours,
   * and touches no registry entry (after a NameTakenError it is the live member's).
   */
  async abandon(): Promise<void> {
    await this.store.release(this.ctx.name, this.token).catch(() => undefined)
  }

  private record(): MemberEntry {
    return { advertise: this.ctx.advertise(), leaseUntil: Date.now() + this.leaseMs, answers: [...this.answers] }
  }

  private async acquireOwn(): Promise<void> {
    let lastPttl = Number.POSITIVE_INFINITY
    let lastHolder = ''
    let announced = false
    for (;;) {
      const { holder, pttl } = await this.store.acquire(this.ctx.name, this.token, this.leaseMs)
      if (holder === this.token) return
      const ownName = holder.slice(0, holder.lastIndexOf('#')) === this.ctx.name
      // The same process renewed between two looks: it is alive, not a crashed predecessor.
      if (ownName && holder === lastHolder && pttl > lastPttl) {
        throw new NameTakenError(
          `distributor name '${this.ctx.name}' of group '${this.ctx.group}' is held by a live member (it renews its lease); give each replica its own name`,
        )
      }
      if (!announced) {
        this.ctx.log.warn(
          { holder, waitMs: pttl },
          ownName
            ? 'this name’s lease is still held (a crashed predecessor, or a live duplicate); waiting to see which'
            : 'a member of the group is taking this name’s work over; waiting until it has',
        )
        announced = true
      }
      lastHolder = holder
      lastPttl = pttl
      await new Promise<void>((resolve) =>
        this.ctx.after(new Timer(resolve), Math.max(10, Math.min(pttl, this.leaseMs / 3))),
      )
    }
  }

  private async renew(): Promise<void> {
    try {
      const { holder } = await this.store.acquire(this.ctx.name, this.token, this.leaseMs)
      if (holder !== this.token) {
        // Only after Redis was out of reach for longer than a lease: another member adopted
        // this one's spool; both may dispatch some jobs (at-least-once still holds).
        this.ctx.log.error({ holder }, 'lost the lease on this member’s name')
      } else {
        await this.store.register(this.ctx.name, this.record(), false)
      }
    } catch (err) {
      this.ctx.log.warn({ err }, 'cannot renew the member lease')
    }
    if (this.running) this.ctx.after(this.renewTimer, this.leaseMs / 3)
  }

  private async watch(): Promise<void> {
    try {
      for (const name of (await this.store.members()).keys()) {
        if (!this.running) return
        if (name === this.ctx.name) continue
        const { holder } = await this.store.acquire(name, this.token, this.leaseMs)
        if (holder === this.token) await this.adopt(name)
      }
    } catch (err) {
      this.ctx.log.warn({ err }, 'group watch failed')
    }
    if (this.running) this.ctx.after(this.watchTimer, this.leaseMs)
  }

  /**
   * `gone`'s lease is ours: its spooled jobs become this member's (spooled here first, then
   * removed from its spool), its name and those it answered for join ours in the registry,
   * and the nodes are told. A crash between any two steps leaves the work where the next
   * adopter finds it (a job may so be spooled twice: at-least-once).
   *
   * WHY the removal checks the lease: nothing renews it while the jobs are read and written
   * here, and a slow flush may outlast it. The name is then whoever's took it since: the
   * member started again (its spool holds its new jobs by now, reported persisted) or another
   * adopter. Its spool and its entry are left to them; the jobs spooled here run twice.
   */
  private async adopt(gone: string): Promise<void> {
    const { jobs, ids } = await this.readSpool(gone)
    this.ctx.restore(jobs, gone)
    await this.ctx.flush()
    if (!(await this.store.removeAdopted(gone, this.token, this.leaseMs, ids))) {
      this.ctx.log.warn(
        { member: gone, jobs: jobs.length },
        'the lease on a gone member ran out while adopting it; its name and spool are left to whoever holds them now (its jobs may run twice)',
      )
      return
    }
    const before = new Set(this.answers)
    const record = await this.store.absorb(this.ctx.name, gone, this.record())
    this.answers = record.answers.filter((n) => n !== this.ctx.name)
    const added = this.answers.filter((n) => !before.has(n))
    await this.store.release(gone, this.token)
    if (added.length > 0) this.ctx.answering(added)
    this.ctx.log.warn({ member: gone, jobs: jobs.length }, 'took over a gone member of the group')
    this.ctx.adopted(gone, jobs.length)
  }

  /** The jobs of `member`'s spool, and the ids of every record read (unreadable ones included). */
  private async readSpool(member: string): Promise<{ jobs: SpooledJob[]; ids: string[] }> {
    const jobs: SpooledJob[] = []
    const ids: string[] = []
    let unreadable = 0
    await this.store.readSpool(member, (entries) => {
      for (const [id, bytes] of entries) {
        ids.push(id)
        const job = decodeSpooled(id, bytes)
        if (job === undefined) unreadable++
        else jobs.push(job)
      }
    })
    if (unreadable > 0) this.ctx.log.error({ member, unreadable }, 'spool records that do not read back were skipped')
    // Enqueue order is lost in a hash: due time is the next best.
    return { jobs: jobs.sort((a, b) => a.dueAt - b.dueAt), ids }
  }
}
