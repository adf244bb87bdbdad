import type { Logger } from '../../logger.js'
import type { DistributorLink } from '../distributor-link.js'
import type { LinkTarget } from '../options.js'

/**
 * What happened to a link of the set: `added` (its address appeared; it is dialling),
 * `leaving` (its address left every source; it closes once nothing is owed to it), `staying`
 * (its address came back while it was leaving), `removed` (closed for good: gone, or a
 * duplicate of a link that reaches the same distributor).
 */
export type LinkChange = 'added' | 'leaving' | 'staying' | 'removed'

/** What the link set needs of its node. */
export interface LinkSetContext {
  readonly log: Logger
  /** A new link to `target`, not started. */
  createLink(target: LinkTarget): DistributorLink
  /**
   * Something is owed to the distributor of `link` that no other link would carry: a job this
   * node holds for it, a result being stored or not yet acknowledged.
   */
  owes(link: DistributorLink): boolean
  /** Reports a change; the node tells a leaving distributor to send no more jobs. It must not throw. */
  changed(link: DistributorLink, change: LinkChange, reason?: 'gone' | 'duplicate'): void
}

/** One address of the union, and its link. */
interface Entry {
  readonly target: LinkTarget
  /** Undefined while parked. */
  link: DistributorLink | undefined
  /** Its address left every source: it closes once nothing is owed to it. */
  leaving: boolean
  /** The identity it claims: the first link whose welcome gave an identity serves it. */
  claim: string | undefined
  /** Parked: its address reaches the distributor with this identity, which another link serves. */
  parkedFor: string | undefined
  /** "Kept because something is owed" was logged for this leaving spell. */
  toldOwed: boolean
}

/**
 * The node's links: one per address of the union of its sources (static addresses, each
 * `dns:` name, the group registry), kept in step as the sources change.
 *
 * - An address that appears gets a link, started at once.
 * - An address that disappears makes its link *leaving*: the node tells its distributor to
 *   send no more jobs, and the link is closed once nothing is owed to it (`ctx.owes`: no job
 *   held for that distributor, no result of its jobs being stored or unacknowledged that no
 *   other link would carry). Until then it stays, and redials if it drops, since only it can
 *   deliver what is owed. `requestRecheck()` looks again; the node calls it when a result
 *   is acknowledged, the last job of a distributor leaves its table, a job's end is stored,
 *   or a distributor says it answers for another.
 * - Two addresses that reach the same distributor (its identity, from the welcome): the link
 *   that claimed the identity first serves it; the other is closed and its address *parked*,
 *   not dialled while it stays in the union (logged once). When the serving link closes for
 *   good, leaves, or finds another distributor at its address, parked links of that identity
 *   dial again; one whose welcome arrives while the claimer is leaving takes the identity over.
 *
 * A link is *admitted* when its welcome was accepted here; only then does the node file work
 * under it (`onReady` true), and only then does its loss concern the node (`onDown` true).
 *
 * INVARIANTS: at most one entry per address, and at most one admitted, unclosed link per
 * identity claim. A parked entry has no link; a leaving entry always has one.
 */
export class LinkSet {
  private readonly sources = new Map<string, ReadonlyMap<string, LinkTarget>>()
  private readonly entries = new Map<string, Entry>()
  /** Identity → the entry that serves it. */
  private readonly claims = new Map<string, Entry>()
  private readonly admitted = new Set<DistributorLink>()
  private closed = false
  private recheckQueued = false

  constructor(private readonly ctx: LinkSetContext) {}

  /** Every link not closed, leaving ones included. */
  *links(): IterableIterator<DistributorLink> {
    for (const entry of this.entries.values()) if (entry.link !== undefined) yield entry.link
  }

  /** Its address left every source, and something is still owed to it. */
  isLeaving(link: DistributorLink): boolean {
    return this.entryOf(link)?.leaving === true
  }

  /** Replaces what `source` (a name the caller chooses) reports: its complete current set. */
  set(source: string, targets: readonly LinkTarget[]): void {
    if (this.closed) return
    this.sources.set(source, new Map(targets.map((t) => [t.address, t])))
    this.sync()
  }

  /**
   * A link finished its handshake. False: it reaches a distributor another link serves; it
   * has been closed, its address parked, and the node must not file anything under it.
   */
  onReady(link: DistributorLink): boolean {
    const entry = this.entryOf(link)
    if (entry === undefined) return false
    const identity = link.identity
    // Its address reaches another distributor than before: the old identity is free.
    if (entry.claim !== undefined && entry.claim !== identity) this.release(entry)
    const claimer = this.claims.get(identity)
    // A claim holds while its link is connected: a distributor that came back at another
    // address (a restart on a new port) is served by whichever link reaches it now.
    const held = claimer?.link !== undefined && this.admitted.has(claimer.link)
    if (claimer !== undefined && claimer !== entry && !claimer.leaving && held) {
      this.park(entry, identity, claimer)
      return false
    }
    if (claimer !== undefined && claimer !== entry) claimer.claim = undefined
    this.claims.set(identity, entry)
    entry.claim = identity
    this.admitted.add(link)
    // What the leaving link was owed may be this one's to carry now.
    this.requestRecheck()
    return true
  }

  /** A link lost its connection. False: it was never admitted, and its loss changes nothing. */
  onDown(link: DistributorLink): boolean {
    if (!this.admitted.delete(link)) return false
    this.requestRecheck()
    return true
  }

  /** Something owed may have been delivered: leaving links that are owed nothing close. */
  requestRecheck(): void {
    if (this.recheckQueued || this.closed) return
    for (const entry of this.entries.values()) {
      if (entry.leaving) {
        this.recheckQueued = true
        // After the current turn's synchronous work: a job's end files its result in the
        // same turn as it leaves the job table, and must be seen owed in between.
        queueMicrotask(() => {
          this.recheckQueued = false
          this.recheck()
        })
        return
      }
    }
  }

  /** Closes every link; the set takes no more changes. */
  close(): void {
    this.closed = true
    for (const entry of this.entries.values()) entry.link?.close()
    this.entries.clear()
    this.claims.clear()
  }

  private recheck(): void {
    if (this.closed) return
    for (const entry of [...this.entries.values()]) {
      if (!entry.leaving || entry.link === undefined) continue
      if (!this.ctx.owes(entry.link)) {
        this.remove(entry)
      } else if (!entry.toldOwed) {
        entry.toldOwed = true
        this.ctx.log.info(
          { distributor: entry.target.address },
          'distributor left the discovered set; keeping its link until what is owed to it is delivered',
        )
      }
    }
  }

  private sync(): void {
    const wanted = new Map<string, LinkTarget>()
    for (const targets of this.sources.values()) {
      for (const [address, target] of targets) if (!wanted.has(address)) wanted.set(address, target)
    }
    for (const [address, target] of wanted) {
      const entry = this.entries.get(address)
      if (entry === undefined) this.add(target)
      else if (entry.leaving) this.stay(entry)
    }
    for (const entry of [...this.entries.values()]) {
      if (wanted.has(entry.target.address) || entry.leaving) continue
      if (entry.link === undefined) this.entries.delete(entry.target.address)
      else this.leave(entry)
    }
    this.requestRecheck()
  }

  private add(target: LinkTarget): void {
    const entry: Entry = {
      target,
      link: undefined,
      leaving: false,
      claim: undefined,
      parkedFor: undefined,
      toldOwed: false,
    }
    this.entries.set(target.address, entry)
    this.dial(entry)
  }

  private dial(entry: Entry): void {
    const link = this.ctx.createLink(entry.target)
    entry.link = link
    this.ctx.changed(link, 'added')
    link.start()
  }

  private leave(entry: Entry): void {
    entry.leaving = true
    entry.toldOwed = false
    this.ctx.changed(entry.link as DistributorLink, 'leaving')
    // A parked link that reaches the same distributor can carry what is owed instead.
    if (entry.claim !== undefined) this.unpark(entry.claim)
  }

  private stay(entry: Entry): void {
    entry.leaving = false
    this.ctx.log.info({ distributor: entry.target.address }, 'distributor is back in the discovered set')
    this.ctx.changed(entry.link as DistributorLink, 'staying')
  }

  private park(entry: Entry, identity: string, claimer: Entry): void {
    const link = entry.link as DistributorLink
    entry.link = undefined
    link.close()
    this.ctx.changed(link, 'removed', 'duplicate')
    if (entry.leaving) {
      // Not wanted anyway: nothing to keep parked.
      this.entries.delete(entry.target.address)
      return
    }
    entry.parkedFor = identity
    this.ctx.log.info(
      { distributor: entry.target.address, identity, servedBy: claimer.target.address },
      'two addresses reach the same distributor; keeping one link and not dialling this address while it stays listed',
    )
  }

  private remove(entry: Entry): void {
    const link = entry.link as DistributorLink
    this.entries.delete(entry.target.address)
    entry.link = undefined
    link.close()
    this.ctx.log.info({ distributor: entry.target.address }, 'let go of a distributor that left the discovered set')
    this.ctx.changed(link, 'removed', 'gone')
    this.release(entry)
  }

  /** `entry` no longer serves its identity: a parked address that reaches it dials again. */
  private release(entry: Entry): void {
    const identity = entry.claim
    entry.claim = undefined
    if (identity === undefined || this.claims.get(identity) !== entry) return
    this.claims.delete(identity)
    this.unpark(identity)
  }

  private unpark(identity: string): void {
    for (const entry of this.entries.values()) {
      if (entry.parkedFor !== identity) continue
      entry.parkedFor = undefined
      this.dial(entry)
    }
  }

  private entryOf(link: DistributorLink): Entry | undefined {
    const entry = this.entries.get(link.address)
    return entry?.link === link ? entry : undefined
  }
}
