import type { Logger } from '../logger.js'
import { MessageType, NotAcceptingReason, type Message, type StateMessage } from '../protocol/messages.js'
import type { Timer } from '../scheduling/timer-heap.js'
import { DnsSource } from './discovery/dns-source.js'
import { type LinkChange, LinkSet } from './discovery/link-set.js'
import { RegistrySource } from './discovery/registry-source.js'
import type { DistributorDirectory } from './distributor-directory.js'
import { DistributorLink, type LinkContext } from './distributor-link.js'
import type { NodeEvents } from './node-events.js'
import { type LinkTarget, linkTarget, type ResolvedNodeOptions } from './options.js'

const LEAVING: StateMessage = { type: MessageType.STATE, accepting: false, reason: NotAcceptingReason.LEAVING }

/** What the links need of their node. */
export interface NodeLinksContext {
  readonly log: Logger
  /** Fires `timer` once, `ms` from now, on the node's scheduler; `now` reads the node's clock. */
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
  now(): number
  /** What the node says of itself in each hello. */
  helloFields: LinkContext['helloFields']
  /** Whether the node takes jobs now, and why not: what a link that comes up or stays is told. */
  state(): StateMessage
  /**
   * The distributor keys something is filed under: jobs held, jobs' ends being stored,
   * results not yet acknowledged. A link is let go only once none of them is its to deliver.
   */
  filedKeys(): Iterable<string>[]
  onMessage(link: DistributorLink, message: Message): void
  /** An admitted link is up (its unacknowledged results go again), or went down (`lost`). */
  ready(link: DistributorLink): void
  lost(link: DistributorLink): void
}

/**
 * The node's links to its distributors: the link set (one link per address its sources
 * list, and when to let one go), the sources that keep it current (static addresses, `dns:`
 * names, the group registry), and what each link's handshake and loss mean for the
 * directory, which the node shares with the parts that file work under a distributor.
 */
export class NodeLinks {
  private readonly set: LinkSet
  /** What keeps the link set current: DNS names, the group registry. */
  private readonly sources: { start(): void; close(): void }[] = []

  constructor(
    private readonly ctx: NodeLinksContext,
    private readonly directory: DistributorDirectory,
    private readonly events: NodeEvents,
    private readonly options: ResolvedNodeOptions,
  ) {
    this.set = new LinkSet({
      log: ctx.log,
      createLink: (target) => this.createLink(target),
      owes: (link) => this.owes(link),
      changed: (link, change, reason) => this.onLinkChange(link, change, reason),
    })
  }

  /** Every link not closed, leaving ones included. */
  links(): IterableIterator<DistributorLink> {
    return this.set.links()
  }

  /** Something owed may have been delivered: leaving links that are owed nothing close. */
  requestRecheck(): void {
    this.set.requestRecheck()
  }

  /** Dials the static addresses and starts the sources. */
  start(): void {
    this.set.set('static', this.options.distributors)
    this.startSources()
  }

  /** The sources report no more changes; the links stay until close(). */
  stopSources(): void {
    for (const source of this.sources) source.close()
  }

  close(): void {
    this.set.close()
  }

  /** Tells each distributor whether this node takes jobs; a leaving one stays told to send nothing. */
  sendState(): void {
    const state = this.ctx.state()
    for (const link of this.set.links()) {
      if (!this.set.isLeaving(link)) link.send(state)
    }
  }

  /** Each `dns:` entry and the group registry report their sets to the link set. */
  private startSources(): void {
    const { dnsTargets, dnsServer, group, discover } = this.options
    const timers = {
      log: this.ctx.log,
      after: (timer: Timer, ms: number) => this.ctx.after(timer, ms),
      cancelTimer: (timer: Timer) => this.ctx.cancelTimer(timer),
    }
    const report =
      (source: string) =>
      (addresses: readonly { host: string; port: number }[]): void =>
        this.set.set(source, addresses.map(linkTarget))
    for (const { name, port } of dnsTargets) {
      const onChange = report(`dns:${name}:${port}`)
      this.sources.push(new DnsSource({ ...timers, onChange }, { name, port, server: dnsServer }))
    }
    if (discover !== undefined && group !== undefined) {
      const onChange = report(`registry:${group}`)
      const now = (): number => this.ctx.now()
      this.sources.push(new RegistrySource({ ...timers, now, onChange }, { url: discover, group }))
    }
    for (const source of this.sources) source.start()
  }

  private createLink(target: LinkTarget): DistributorLink {
    return new DistributorLink(this.linkContext, {
      ...target,
      secret: this.options.secret,
      tls: this.options.tls,
      maxFrameSize: this.options.maxFrameSize,
      stallTimeoutMs: this.options.stallTimeoutMs,
      handshakeTimeoutMs: this.options.handshakeTimeoutMs,
      reconnectMinMs: this.options.reconnectMinMs,
      reconnectMaxMs: this.options.reconnectMaxMs,
      log: this.ctx.log,
    })
  }

  /**
   * Something filed under a key that `link` is the one to deliver: a job held, a job's end
   * being stored, a result not yet acknowledged. A few keys each (one per distributor).
   */
  private owes(link: DistributorLink): boolean {
    for (const keys of this.ctx.filedKeys()) {
      for (const key of keys) if (this.directory.owedTo(key, link)) return true
    }
    return false
  }

  private onLinkChange(link: DistributorLink, change: LinkChange, reason: 'gone' | 'duplicate' | undefined): void {
    const distributor = link.address
    switch (change) {
      case 'added':
        this.events.emit('link:added', { distributor })
        return
      case 'leaving':
        // It finishes what it holds for that distributor, and takes no more.
        link.send(LEAVING)
        this.events.emit('link:leaving', { distributor })
        return
      case 'staying':
        if (this.ctx.state().accepting) link.send(this.ctx.state())
        return
      case 'removed':
        this.events.emit('link:removed', { distributor, reason: reason ?? 'gone' })
        return
      default: {
        const never: never = change
        throw new Error(`unhandled link change ${String(never)}`)
      }
    }
  }

  private readonly linkContext: LinkContext = {
    helloFields: () => this.ctx.helloFields(),
    onReady: (link) => {
      // A second address of a distributor another link serves: closed, and never filed under.
      if (!this.set.onReady(link)) return
      this.ctx.log.info(
        { distributor: link.address, group: link.group, name: link.memberName, answersFor: link.answersFor.length },
        'connected to distributor',
      )
      this.directory.up(link)
      const state = this.set.isLeaving(link) ? LEAVING : this.ctx.state()
      if (!state.accepting) link.send(state)
      this.ctx.ready(link)
      this.events.emit('link:up', { distributor: link.address, group: link.group, name: link.memberName })
    },
    onMessage: (link, message) => this.ctx.onMessage(link, message),
    onDown: (link, reason) => {
      if (!this.set.onDown(link)) return
      this.directory.down(link)
      this.ctx.lost(link)
      this.events.emit('link:down', { distributor: link.address, reason })
    },
  }
}
