import { Resolver } from 'node:dns/promises'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type DnsAddress,
  type DnsContext,
  DnsSource,
  type DnsSourceOptions,
} from '../../src/node/discovery/dns-source.js'
import { type DnsServer, startDnsServer } from '../helpers/dns-server.js'
import { FakeSourceNode } from '../helpers/fake-source-node.js'
import { LEVEL } from '../helpers/log-capture.js'
import { within } from '../helpers/within.js'

const PORT = 5000

/** The node as a DNS source sees it; the test fires its timer by hand. */
class FakeNode extends FakeSourceNode<DnsAddress> implements DnsContext {}

const at = (...hosts: string[]): DnsAddress[] => hosts.map((host) => ({ host, port: PORT }))

let server: DnsServer | undefined
let source: DnsSource | undefined
afterEach(async () => {
  source?.close()
  source = undefined
  await server?.close()
  server = undefined
})

async function setUp(
  options: Partial<DnsSourceOptions> = {},
): Promise<{ node: FakeNode; dns: DnsServer; source: DnsSource }> {
  const dns = (server = await startDnsServer())
  const node = new FakeNode()
  source = new DnsSource(node, { name: 'jr.test', port: PORT, server: dns.address, ...options })
  return { node, dns, source }
}

describe('DnsSource', () => {
  it('reports every A and AAAA record of the name, sorted, and re-resolves at the TTL', async () => {
    const { node, dns, source } = await setUp()
    dns.set('jr.test', { a: ['10.0.0.2', '10.0.0.1'], aaaa: ['fd00::1', '::1'], ttl: 7 })

    expect(await node.round(() => source.start())).toBe(7000)
    expect(node.changes).toEqual([at('10.0.0.1', '10.0.0.2', '::1', 'fd00::1')])
    expect(dns.queries).toBe(2)
  })

  it('takes a name with only A or only AAAA records, and reports an unknown name as empty', async () => {
    const { node, dns, source } = await setUp()
    dns.set('jr.test', { a: ['10.0.0.1'] })
    await node.round(() => source.start())
    dns.set('jr.test', { aaaa: ['::1'] })
    await node.fire()
    dns.remove('jr.test')
    // No record, no TTL: the name is asked again at the shortest interval.
    expect(await node.fire()).toBe(1000)

    expect(node.changes).toEqual([at('10.0.0.1'), at('::1'), []])
    expect(node.logs.matching((e) => e.level === LEVEL.warn && e.msg.includes('no A or AAAA records'))).toHaveLength(1)
  })

  it('reports the first answer even when it is empty', async () => {
    const { node, source } = await setUp()
    await node.round(() => source.start())
    expect(node.changes).toEqual([[]])
  })

  it('reports a record added or removed at the next resolution, and nothing when nothing changed', async () => {
    const { node, dns, source } = await setUp()
    dns.set('jr.test', { a: ['10.0.0.1'], ttl: 5 })
    await node.round(() => source.start())

    dns.set('jr.test', { a: ['10.0.0.1', '10.0.0.3'], aaaa: ['::1'], ttl: 5 })
    await node.fire()
    expect(node.changes).toEqual([at('10.0.0.1'), at('10.0.0.1', '10.0.0.3', '::1')])

    dns.set('jr.test', { a: ['10.0.0.3'], aaaa: ['::1'], ttl: 5 })
    await node.fire()
    expect(node.changes.at(-1)).toEqual(at('10.0.0.3', '::1'))

    const asked = dns.queries
    expect(await node.fire()).toBe(5000)
    expect(dns.queries).toBe(asked + 2)
    expect(node.changes).toHaveLength(3)
  })

  it('waits the TTL clamped to the interval bounds', async () => {
    const { node, dns, source } = await setUp({ minIntervalMs: 2000, maxIntervalMs: 9000 })
    dns.set('jr.test', { a: ['10.0.0.1'], ttl: 0 })
    expect(await node.round(() => source.start())).toBe(2000)
    dns.set('jr.test', { a: ['10.0.0.1'], ttl: 1 })
    expect(await node.fire()).toBe(2000)
    dns.set('jr.test', { a: ['10.0.0.1'], ttl: 4 })
    expect(await node.fire()).toBe(4000)
    dns.set('jr.test', { a: ['10.0.0.1'], ttl: 86_400 })
    expect(await node.fire()).toBe(9000)
  })

  it('keeps the last set while the server does not answer, backs off, warns once, and recovers', async () => {
    const { node, dns, source } = await setUp({ maxIntervalMs: 5000 })
    dns.set('jr.test', { a: ['10.0.0.1'], aaaa: ['::1'], ttl: 3 })
    await node.round(() => source.start())
    await dns.close()

    const backoff = [await node.fire(), await node.fire(), await node.fire(), await node.fire()]
    expect(backoff).toEqual([1000, 2000, 4000, 5000])
    expect(node.changes).toEqual([at('10.0.0.1', '::1')])
    const warnings = node.logs.matching((e) => e.level === LEVEL.warn)
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatchObject({ msg: expect.stringContaining('keeping the last known ones') })

    // Back on the same port with the same records: nothing to report, the TTL rules again.
    const back = (server = await startDnsServer({ port: dns.port }))
    back.set('jr.test', { a: ['10.0.0.1'], aaaa: ['::1'], ttl: 3 })
    expect(await node.fire()).toBe(3000)
    expect(node.changes).toHaveLength(1)
    expect(
      node.logs.matching((e) => e.level === LEVEL.info && e.msg === 'the distributors resolve again'),
    ).toHaveLength(1)

    // A new streak warns again.
    await back.close()
    expect(await node.fire()).toBe(1000)
    expect(node.logs.matching((e) => e.level === LEVEL.warn)).toHaveLength(2)
  })

  it('reports nothing before a first answer', async () => {
    const { node, dns, source } = await setUp()
    await dns.close()
    expect(await node.round(() => source.start())).toBe(1000)
    expect(node.changes).toEqual([])
    expect(node.logs.matching((e) => e.level === LEVEL.warn)).toHaveLength(1)
  })

  it('stops at close(): its timer is cancelled and it asks nothing more', async () => {
    const { node, dns, source } = await setUp()
    dns.set('jr.test', { a: ['10.0.0.1'] })
    await node.round(() => source.start())
    const timer = node.armed!
    source.close()
    expect(node.armed).toBeUndefined()

    // A scheduler that fired it anyway, in the same turn as the close.
    dns.set('jr.test', { a: ['10.0.0.2'] })
    const asked = dns.queries
    timer.fire()
    await answeredOnce(dns)
    expect(dns.queries).toBe(asked + 1)
    expect(node.changes).toEqual([at('10.0.0.1')])
    expect(node.delays).toHaveLength(1)
  })

  it('drops the answer of a resolution under way at close()', async () => {
    const { node, dns, source } = await setUp()
    dns.set('jr.test', { a: ['10.0.0.1'] })
    source.start()
    source.close()
    await answeredOnce(dns)
    expect(node.changes).toEqual([])
    expect(node.delays).toEqual([])
  })
})

/**
 * One query of our own, answered: the server has had the time to answer anything it was sent
 * before, and the source has had turns of the event loop to act on it.
 */
async function answeredOnce(dns: DnsServer): Promise<void> {
  const resolver = new Resolver({ timeout: 2000, tries: 1 })
  resolver.setServers([dns.address])
  await within(
    resolver.resolve4('jr.test').catch(() => []),
    'an answer of the test server',
  )
  await new Promise((resolve) => setImmediate(resolve))
}
