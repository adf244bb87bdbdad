import { describe, expect, it } from 'vitest'
import { type LinkChange, LinkSet, type LinkSetContext } from '../../src/node/discovery/link-set.js'
import type { LinkTarget } from '../../src/node/options.js'
import type { DistributorLink } from '../../src/node/distributor-link.js'
import { LogCapture } from '../helpers/log-capture.js'

/** As much of a link as the set sees: its address, the identity its welcome gave, start and close. */
class FakeLink {
  state: 'idle' | 'dialling' | 'ready' | 'closed' = 'idle'
  identity = ''
  constructor(readonly address: string) {}
  start(): void {
    this.state = 'dialling'
  }
  close(): void {
    this.state = 'closed'
  }
}

/** The node, as the set sees it: it makes links, says what is owed, and hears of changes. */
class FakeNode implements LinkSetContext {
  readonly logs = new LogCapture()
  readonly log = this.logs.logger
  readonly made: FakeLink[] = []
  readonly changes: string[] = []
  /** Addresses something is owed to. */
  readonly owed = new Set<string>()
  createLink(target: LinkTarget): DistributorLink {
    const link = new FakeLink(target.address)
    this.made.push(link)
    return link as unknown as DistributorLink
  }
  owes(link: DistributorLink): boolean {
    return this.owed.has(link.address)
  }
  changed(link: DistributorLink, change: LinkChange, reason?: string): void {
    this.changes.push(`${change} ${link.address}${reason === undefined ? '' : ` (${reason})`}`)
  }
  /** The live (unclosed) links, by address. */
  open(): string[] {
    return this.made.filter((l) => l.state !== 'closed').map((l) => l.address)
  }
  last(address: string): FakeLink {
    const link = this.made.findLast((l) => l.address === address)
    if (link === undefined) throw new Error(`no link to ${address}`)
    return link
  }
}

const at = (...addresses: string[]): LinkTarget[] =>
  addresses.map((address) => {
    const [host, port] = address.split(':') as [string, string]
    return { address, host, port: Number(port) }
  })

/** The set rechecks what is owed after the current turn's synchronous work. */
const settle = (): Promise<void> => new Promise((resolve) => queueMicrotask(resolve))

function setUp(): { node: FakeNode; set: LinkSet; ready: (address: string, identity: string) => boolean } {
  const node = new FakeNode()
  const set = new LinkSet(node)
  const ready = (address: string, identity: string): boolean => {
    const link = node.last(address)
    link.identity = identity
    link.state = 'ready'
    return set.onReady(link as unknown as DistributorLink)
  }
  return { node, set, ready }
}

describe('LinkSet', () => {
  it('keeps one started link per address of the union of its sources', () => {
    const { node, set } = setUp()
    set.set('static', at('10.0.0.1:5000'))
    set.set('dns', at('10.0.0.1:5000', '10.0.0.2:5000'))
    expect(node.open()).toEqual(['10.0.0.1:5000', '10.0.0.2:5000'])
    expect(node.made.every((l) => l.state === 'dialling')).toBe(true)
    // Still listed by the static source: dropping it from DNS changes nothing.
    set.set('dns', at('10.0.0.2:5000'))
    expect(node.made).toHaveLength(2)
    expect(node.changes).toEqual(['added 10.0.0.1:5000', 'added 10.0.0.2:5000'])
  })

  it('closes a link whose address left every source once nothing is owed to it', async () => {
    const { node, set, ready } = setUp()
    set.set('dns', at('10.0.0.1:5000', '10.0.0.2:5000'))
    ready('10.0.0.2:5000', 'web/b')
    node.owed.add('10.0.0.2:5000')
    set.set('dns', at('10.0.0.1:5000'))
    await settle()
    expect(set.isLeaving(node.last('10.0.0.2:5000') as unknown as DistributorLink)).toBe(true)
    expect(node.last('10.0.0.2:5000').state).toBe('ready')
    expect(node.logs.matching((e) => e.msg.includes('keeping its link'))).toHaveLength(1)

    // A recheck while still owed changes nothing, and does not log again.
    set.requestRecheck()
    await settle()
    expect(node.last('10.0.0.2:5000').state).toBe('ready')
    expect(node.logs.matching((e) => e.msg.includes('keeping its link'))).toHaveLength(1)

    node.owed.clear()
    set.requestRecheck()
    await settle()
    expect(node.last('10.0.0.2:5000').state).toBe('closed')
    expect(node.open()).toEqual(['10.0.0.1:5000'])
    expect(node.changes.slice(2)).toEqual(['leaving 10.0.0.2:5000', 'removed 10.0.0.2:5000 (gone)'])
  })

  it('keeps a leaving link whose address comes back, and dials it again once it was closed', async () => {
    const { node, set } = setUp()
    set.set('dns', at('10.0.0.1:5000'))
    node.owed.add('10.0.0.1:5000')
    set.set('dns', [])
    set.set('dns', at('10.0.0.1:5000'))
    node.owed.clear()
    set.requestRecheck()
    await settle()
    expect(node.made).toHaveLength(1)
    expect(node.last('10.0.0.1:5000').state).toBe('dialling')
    expect(node.changes).toEqual(['added 10.0.0.1:5000', 'leaving 10.0.0.1:5000', 'staying 10.0.0.1:5000'])

    set.set('dns', [])
    await settle()
    set.set('dns', at('10.0.0.1:5000'))
    expect(node.made).toHaveLength(2)
    expect(node.open()).toEqual(['10.0.0.1:5000'])
  })

  it('parks a second address of a distributor another link serves, and does not dial it while it is listed', async () => {
    const { node, set, ready } = setUp()
    set.set('static', at('127.0.0.1:5000'))
    set.set('dns', at('10.0.0.9:5000'))
    expect(ready('127.0.0.1:5000', 'web/a')).toBe(true)
    expect(ready('10.0.0.9:5000', 'web/a')).toBe(false)
    expect(node.last('10.0.0.9:5000').state).toBe('closed')
    expect(node.changes.at(-1)).toBe('removed 10.0.0.9:5000 (duplicate)')
    // Its loss concerns nobody: the node never filed anything under it.
    expect(set.onDown(node.last('10.0.0.9:5000') as unknown as DistributorLink)).toBe(false)

    // Listed again and again: still parked.
    set.set('dns', at('10.0.0.9:5000', '10.0.0.8:5000'))
    set.set('dns', at('10.0.0.9:5000'))
    await settle()
    expect(node.made.filter((l) => l.address === '10.0.0.9:5000')).toHaveLength(1)
    expect(node.logs.matching((e) => e.msg.includes('two addresses reach the same distributor'))).toHaveLength(1)

    // The serving link drops and comes back: it still serves, the other stays parked.
    expect(set.onDown(node.last('127.0.0.1:5000') as unknown as DistributorLink)).toBe(true)
    expect(ready('127.0.0.1:5000', 'web/a')).toBe(true)
    expect(node.made.filter((l) => l.address === '10.0.0.9:5000')).toHaveLength(1)
  })

  it('a distributor back at another listed address (a restart on a new port) is served there: a claim holds only while its link is up', () => {
    const { node, set, ready } = setUp()
    set.set('static', at('127.0.0.1:5000', '127.0.0.1:5001'))
    expect(ready('127.0.0.1:5000', 'web/a')).toBe(true)
    expect(set.onDown(node.last('127.0.0.1:5000') as unknown as DistributorLink)).toBe(true)
    // Killed, and started again with the same name at :5001: that link serves it now.
    expect(ready('127.0.0.1:5001', 'web/a')).toBe(true)
    expect(node.last('127.0.0.1:5001').state).not.toBe('closed')
    // Should :5000 reach it too later (both listening), that one is the duplicate.
    expect(ready('127.0.0.1:5000', 'web/a')).toBe(false)
  })

  it('dials a parked address again when the link that served its distributor leaves', async () => {
    const { node, set, ready } = setUp()
    set.set('static', at('127.0.0.1:5000'))
    set.set('dns', at('10.0.0.9:5000'))
    ready('127.0.0.1:5000', 'web/a')
    ready('10.0.0.9:5000', 'web/a')
    node.owed.add('127.0.0.1:5000')

    // The serving address is unlisted while something is owed to it: the parked one dials,
    // and, as the serving link is leaving, takes the identity over.
    set.set('static', [])
    expect(node.made.filter((l) => l.address === '10.0.0.9:5000')).toHaveLength(2)
    expect(ready('10.0.0.9:5000', 'web/a')).toBe(true)
    node.owed.clear()
    set.requestRecheck()
    await settle()
    expect(node.open()).toEqual(['10.0.0.9:5000'])
  })

  it('frees the identity of a link that finds another distributor at its address', () => {
    const { node, set, ready } = setUp()
    set.set('dns', at('10.0.0.1:5000', '10.0.0.2:5000'))
    ready('10.0.0.1:5000', 'web/a')
    ready('10.0.0.2:5000', 'web/a')
    expect(node.open()).toEqual(['10.0.0.1:5000'])
    // 10.0.0.1 now answers as web/c (a new pod at an old IP): web/a is reachable only at 10.0.0.2.
    set.onDown(node.last('10.0.0.1:5000') as unknown as DistributorLink)
    expect(ready('10.0.0.1:5000', 'web/c')).toBe(true)
    expect(node.open()).toEqual(['10.0.0.1:5000', '10.0.0.2:5000'])
    expect(ready('10.0.0.2:5000', 'web/a')).toBe(true)
  })

  it('closes every link on close and takes no more changes', () => {
    const { node, set } = setUp()
    set.set('dns', at('10.0.0.1:5000', '10.0.0.2:5000'))
    set.close()
    set.set('dns', at('10.0.0.3:5000'))
    expect(node.open()).toEqual([])
    expect([...set.links()]).toEqual([])
  })
})
