import { existsSync } from 'node:fs'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { Distributor } from '../../src/distributor/distributor.js'
import type { DistributorOptions } from '../../src/distributor/options.js'
import { Node } from '../../src/node/node.js'
import type { NodeOptions } from '../../src/node/options.js'
import { JobRegistry } from '../../src/node/registry.js'
import { groupKeys, memberKeys } from '../../src/storage/redis/group-keys.js'
import { encodeMemberEntry } from '../../src/storage/redis/member-entry.js'
import { config, FIXTURE_JOBS, Resources, spawnNode, startDistributor } from '../helpers/cluster.js'
import { type DnsServer, startDnsServer } from '../helpers/dns-server.js'
import { BUILT_CLI, type JrRun, spawnJr } from '../helpers/jr-cli.js'
import { LogCapture } from '../helpers/log-capture.js'
import { freePort } from '../helpers/redis-server.js'
import { unique, useRedis } from '../helpers/shared-redis.js'
import { within } from '../helpers/within.js'

/*
 * A node whose distributors come and go: found through DNS (the test's own server, which
 * JR_DNS_SERVER points at) and through the group registry in a real Redis, each distributor
 * real and in this process, each link real TCP. A DNS name has one port for all its records,
 * so two distributors behind one name listen on the same port of 127.0.0.1 and 127.0.0.2
 * (the whole of 127/8 is loopback). The node re-resolves at the TTL, at least once a second:
 * the tests wait for the events that follow a change, never for a time.
 */

const res = new Resources()
let dns: DnsServer
const redisServer = useRedis()
let redis: Redis
const savedDnsServer = process.env['JR_DNS_SERVER']

beforeAll(() => {
  redis = new Redis({ host: '127.0.0.1', port: redisServer.port })
})
afterAll(() => {
  redis?.disconnect()
})

/** A fresh group and key prefix per test: the registry keys are the test's own. */
let group = ''
let prefix = ''
beforeEach(async () => {
  group = unique('g')
  prefix = `${unique('jr-disc')}:`
  dns = await startDnsServer()
  process.env['JR_DNS_SERVER'] = dns.address
})
afterEach(async () => {
  await res.releaseAll()
  await dns.close()
  if (savedDnsServer === undefined) delete process.env['JR_DNS_SERVER']
  else process.env['JR_DNS_SERVER'] = savedDnsServer
  await redis.del(groupKeys(group).members, groupKeys(group, prefix).members)
})

/** A job the test lets finish when it wants, and one that returns at once. */
function gatedJobs(): { registry: JobRegistry; open: () => void } {
  let open!: () => void
  const gate = new Promise<void>((resolve) => {
    open = resolve
  })
  const registry = new JobRegistry()
  registry.define('noop', () => {})
  registry.define('gate', () => gate)
  return { registry, open }
}

function newNode(options: Partial<NodeOptions> & { registry: JobRegistry }): Node {
  const node = new Node({ name: 'w1', reconnectMinMs: 20, reconnectMaxMs: 200, ...options }, config())
  res.add(node, (n) => n.close({ force: true }))
  return node
}

/** Resolves once the node has finished the handshake with every one of `addresses`. */
function linksUp(node: Node, addresses: string[], what: string): Promise<void> {
  return within(
    new Promise<void>((resolve) => {
      const check = (): void => {
        if (!addresses.every((a) => node.connectedDistributors.includes(a))) return
        node.off('link:up', check)
        resolve()
      }
      node.on('link:up', check)
      check()
    }),
    what,
  )
}

/** Two distributors on one port, one on 127.0.0.1 and one on 127.0.0.2. */
async function onTwoLoopbacks(options: DistributorOptions = {}): Promise<[Distributor, Distributor]> {
  for (let attempt = 1; ; attempt++) {
    const first = await startDistributor(res, { host: '127.0.0.1', ...options })
    const second = new Distributor({ host: '127.0.0.2', port: first.port, heartbeatMs: 1000, ...options })
    try {
      await second.start()
      res.add(second, (d) => d.close())
      return [first, second]
    } catch (err) {
      // That port was free on 127.0.0.1 only: try another.
      await first.close()
      if ((err as { code?: string }).code !== 'EADDRINUSE' || attempt === 5) throw err
    }
  }
}

function register(name: string, advertise: string, leaseUntil: number, answers: string[] = []): Promise<number> {
  return redis.hset(groupKeys(group).members, name, encodeMemberEntry({ advertise, leaseUntil, answers }))
}

function announce(name: string): Promise<number> {
  return redis.publish(groupKeys(group).events, name)
}

describe('distributors found through DNS', () => {
  it('serves every record of the name, lets one go once what it is owed is delivered, and dials one that appears', async () => {
    const [d1, d2] = await onTwoLoopbacks()
    const port = d1.port
    const a1 = `127.0.0.1:${port}`
    const a2 = `127.0.0.2:${port}`
    dns.set('jr.test', { a: ['127.0.0.1', '127.0.0.2'], ttl: 1 })
    const { registry, open } = gatedJobs()
    const node = newNode({ distributors: [`dns:jr.test:${port}`], registry })
    await node.start()
    await linksUp(node, [a1, a2], 'both distributors of the name')
    expect(node.connectedDistributors.sort()).toEqual([a1, a2])
    await within(Promise.all([d1.enqueue('noop').done, d2.enqueue('noop').done]), 'a job of each')

    // d2 leaves the name while the node runs a job of d2's.
    const started = node.waitFor('job:start', (e) => e.name === 'gate')
    const held = d2.enqueue('gate')
    await within(started, 'the held job to start')
    const order: string[] = []
    node.on('feedback:acked', (e) => order.push(`acked ${e.id}`))
    node.on('link:removed', (e) => order.push(`removed ${e.distributor} (${e.reason})`))
    const leaving = node.waitFor('link:leaving', (e) => e.distributor === a2)
    dns.set('jr.test', { a: ['127.0.0.1'], ttl: 1 })
    await within(leaving, 'the record of 127.0.0.2 to go')
    const released = d2.waitFor('node:disconnect', (e) => e.node === 'w1')

    open()
    expect(await within(held.done, 'the held job')).toEqual({})
    await within(released, 'd2 to lose the node')
    // The link stayed until the result was acknowledged, and not a moment longer.
    expect(order).toEqual([`acked ${held.id}`, `removed ${a2} (gone)`])
    expect(node.connectedDistributors).toEqual([a1])
    expect(d2.nodes).toEqual([])
    await within(d1.enqueue('noop').done, 'a job of the remaining distributor')

    // The record comes back: so does the link.
    dns.set('jr.test', { a: ['127.0.0.1', '127.0.0.2'], ttl: 1 })
    await linksUp(node, [a2], 'd2 to be dialled again')
    await within(d2.enqueue('noop').done, 'a job of the distributor that came back')
    expect(node.connectedDistributors.sort()).toEqual([a1, a2])
  })

  it('makes one link of a static address and a dns address that reach the same distributor', async () => {
    // Listening on every interface, so that 127.0.0.1 and 127.0.0.2 reach the one distributor.
    const d = await startDistributor(res, { host: '0.0.0.0', insecure: true, name: 'one' })
    const viaStatic = `127.0.0.1:${d.port}`
    const viaDns = `127.0.0.2:${d.port}`
    dns.set('dup.test', { a: ['127.0.0.2'], ttl: 1 })
    const logs = new LogCapture()
    const added: string[] = []
    const { registry } = gatedJobs()
    const node = newNode({ distributors: [viaStatic, `dns:dup.test:${d.port}`], registry, logger: logs.logger })
    node.on('link:added', (e) => added.push(e.distributor))
    const duplicate = node.waitFor('link:removed', (e) => e.reason === 'duplicate')
    await node.start()
    const { distributor: parked } = await within(duplicate, 'the second link to be found a duplicate')
    expect([viaStatic, viaDns]).toContain(parked)
    const kept = parked === viaStatic ? viaDns : viaStatic

    // The duplicate's hello replaced the other's connection at the distributor, which redials.
    await linksUp(node, [kept], 'the kept link')
    expect(node.connectedDistributors).toEqual([kept])
    expect(d.nodes).toEqual(['w1'])
    await within(d.enqueue('noop').done, 'a job over the kept link')

    // The name gets a third address of the same distributor: parked too, and the first
    // parked one, still listed, is not dialled again.
    const third = `127.0.0.3:${d.port}`
    const another = node.waitFor('link:removed', (e) => e.distributor === third)
    dns.set('dup.test', { a: ['127.0.0.2', '127.0.0.3'], ttl: 1 })
    expect(await within(another, 'the third address to be found a duplicate')).toEqual({
      distributor: third,
      reason: 'duplicate',
    })
    await linksUp(node, [kept], 'the kept link, again')
    expect(node.connectedDistributors).toEqual([kept])
    expect(added.filter((a) => a === parked)).toHaveLength(1)
    expect(logs.matching((e) => e.msg.includes('two addresses reach the same distributor'))).toHaveLength(2)
    await within(d.enqueue('noop').done, 'a job after the third address')
  })
})

describe('distributors found in the group registry', () => {
  it('serves the live members of its group, lets go of those removed or expired, and dials new ones', async () => {
    const d1 = await startDistributor(res, { group, name: 'd1' })
    const d2 = await startDistributor(res, { group, name: 'd2' })
    const a1 = `127.0.0.1:${d1.port}`
    const a2 = `127.0.0.1:${d2.port}`
    await register('d1', a1, Date.now() + 60_000)
    await register('d2', a2, Date.now() + 60_000)
    const { registry } = gatedJobs()
    const node = newNode({ group, discover: redisServer.url, registry })
    await node.start()
    await linksUp(node, [a1, a2], 'both registered members')
    expect(node.connectedDistributors.sort()).toEqual([a1, a2].sort())
    await within(Promise.all([d1.enqueue('noop').done, d2.enqueue('noop').done]), 'a job of each')

    // Its entry removed, and the change announced.
    let removed = node.waitFor('link:removed', (e) => e.distributor === a2)
    await redis.hdel(groupKeys(group).members, 'd2')
    await announce('d1')
    expect(await within(removed, 'd2 to be let go')).toEqual({ distributor: a2, reason: 'gone' })

    // Its lease written as run out, and announced.
    removed = node.waitFor('link:removed', (e) => e.distributor === a1)
    await register('d1', a1, Date.now() - 1000)
    await announce('d1')
    await within(removed, 'd1 to be let go')
    expect(node.connectedDistributors).toEqual([])

    // A new member registers.
    const d3 = await startDistributor(res, { group, name: 'd3' })
    const a3 = `127.0.0.1:${d3.port}`
    await register('d3', a3, Date.now() + 60_000)
    await announce('d3')
    await linksUp(node, [a3], 'the new member')
    await within(d3.enqueue('noop').done, 'a job of the new member')

    // It stops renewing (a crash): the node notices its lease run out without a message.
    removed = node.waitFor('link:removed', (e) => e.distributor === a3)
    await register('d3', a3, Date.now() + 300)
    await announce('d3')
    await within(removed, 'the lease of d3 to run out')
    expect(node.connectedDistributors).toEqual([])
  })

  it('serves the union of static addresses and registered members, a distributor of another group included', async () => {
    const other = await startDistributor(res, { group: 'billing', name: 'b1' })
    const member = await startDistributor(res, { group, name: 'm1' })
    await register('m1', `127.0.0.1:${member.port}`, Date.now() + 60_000)
    const { registry } = gatedJobs()
    const node = newNode({ distributors: [`127.0.0.1:${other.port}`], group, discover: redisServer.url, registry })
    await node.start()
    await linksUp(node, [`127.0.0.1:${other.port}`, `127.0.0.1:${member.port}`], 'both distributors')
    // The registry empties: the static one stays.
    const removed = node.waitFor('link:removed')
    await redis.hdel(groupKeys(group).members, 'm1')
    await announce('m1')
    expect(await within(removed, 'the member to be let go')).toMatchObject({
      distributor: `127.0.0.1:${member.port}`,
    })
    expect(node.connectedDistributors).toEqual([`127.0.0.1:${other.port}`])
    await within(other.enqueue('noop').done, 'a job of the static distributor')
  })

  it('jr-node --group --discover finds the members; a bad --distributor or a lone --discover is refused', async () => {
    const d = await startDistributor(res, { group, name: 'd1' })
    await register('d1', `127.0.0.1:${d.port}`, Date.now() + 60_000)
    const connected = d.waitFor('node:connect', (e) => e.node === 'cli1')
    const proc = spawnNode(res, [
      '--name',
      'cli1',
      '--group',
      group,
      '--discover',
      redisServer.url,
      '--jobs',
      FIXTURE_JOBS,
    ])
    await within(
      Promise.race([
        connected,
        proc.exited.then((code) => {
          throw new Error(`jr-node exited with ${code}:\n${proc.output()}`)
        }),
      ]),
      'jr-node to connect',
      15_000,
    )
    expect((await within(d.enqueue('echo').done, 'a job of the CLI node'))['result']).toBe('Yay!')

    const badDns = spawnNode(res, ['--name', 'cli2', '--distributor', 'dns:name-without-port', '--jobs', FIXTURE_JOBS])
    expect(await badDns.exited).toBe(2)
    expect(badDns.output()).toMatch(
      /distributor 'dns:name-without-port' must be dns:NAME:PORT \(no port\) \(ERR_INVALID_ARG\)/,
    )

    const lone = spawnNode(res, ['--name', 'cli3', '--discover', redisServer.url, '--jobs', FIXTURE_JOBS])
    expect(await lone.exited).toBe(2)
    expect(lone.output()).toMatch(/'discover' needs 'group'.*\(ERR_INVALID_ARG\)/)
  })
})

describe('jr members', () => {
  const jr = (...args: string[]): Promise<JrRun> => spawnJr(args)

  async function seed(): Promise<void> {
    const members = groupKeys(group, prefix).members
    const now = Date.now()
    await redis.hset(
      members,
      'web-a',
      encodeMemberEntry({ advertise: '10.0.0.1:5000', leaseUntil: now + 60_000, answers: [] }),
      'web-b',
      encodeMemberEntry({ advertise: '10.0.0.2:5000', leaseUntil: now - 30_000, answers: [] }),
      'web-c',
      encodeMemberEntry({ advertise: '10.0.0.3:5000', leaseUntil: now + 60_000, answers: ['web-b', 'web-0'] }),
    )
    await redis.hset(memberKeys(group, 'web-b', prefix).spool, 'j1', 'x', 'j2', 'y', 'j3', 'z')
    await redis.hset(memberKeys(group, 'web-a', prefix).spool, 'j4', 'x')
  }

  afterEach(async () => {
    await redis.del(
      memberKeys(group, 'web-a', prefix).spool,
      memberKeys(group, 'web-b', prefix).spool,
      memberKeys(group, 'web-c', prefix).spool,
    )
  })

  it('prints the members, their lease state, whom they answer for and their spool sizes', async () => {
    expect(existsSync(BUILT_CLI), 'dist/cli/jr.js is missing: run npm run build').toBe(true)
    await seed()
    const run = await jr('members', '--group', group, '--storage', redisServer.url, '--prefix', prefix)
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    const lines = run.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^NAME\s+ADVERTISE\s+LEASE\s+ANSWERS FOR\s+SPOOL$/)
    expect(lines.slice(1)).toHaveLength(3)
    expect(lines[1]).toMatch(/^web-a\s+10\.0\.0\.1:5000\s+live, \d+ ms left\s+-\s+1$/)
    expect(lines[2]).toMatch(/^web-b\s+10\.0\.0\.2:5000\s+expired \d+ ms ago\s+-\s+3$/)
    expect(lines[3]).toMatch(/^web-c\s+10\.0\.0\.3:5000\s+live, \d+ ms left\s+web-b,web-0\s+0$/)
    // The lease times are the entries' own, read at one instant.
    const left = Number(/live, (\d+) ms left/.exec(lines[1] as string)?.[1])
    const ago = Number(/expired (\d+) ms ago/.exec(lines[2] as string)?.[1])
    expect(left + ago).toBe(90_000)
  })

  it('prints JSON with --json', async () => {
    await seed()
    const run = await jr('members', '--group', group, '--redis', redisServer.url, '--prefix', prefix, '--json')
    expect(run.code).toBe(0)
    const rows = JSON.parse(run.stdout) as Record<string, unknown>[]
    expect(rows.map((r) => r['name'])).toEqual(['web-a', 'web-b', 'web-c'])
    expect(rows[0]).toMatchObject({ advertise: '10.0.0.1:5000', live: true, expiredMsAgo: null, spool: 1 })
    expect(rows[0]?.['msLeft']).toBeGreaterThan(0)
    expect(rows[1]).toMatchObject({ live: false, msLeft: null, spool: 3, answers: [], invalid: null })
    expect(rows[1]?.['expiredMsAgo']).toBeGreaterThan(0)
    expect(rows[2]).toMatchObject({ live: true, answers: ['web-b', 'web-0'], spool: 0 })
    expect(typeof rows[2]?.['leaseUntil']).toBe('string')
  })

  it('says so for a group with no member, and fails with exit status 2 when Redis is unreachable', async () => {
    const empty = await jr('members', '--group', group, '--storage', redisServer.url, '--prefix', prefix)
    expect(empty).toEqual({ code: 0, stdout: `no members registered in group '${group}'\n`, stderr: '' })

    const nowhere = await jr('members', '--group', group, '--storage', `redis://127.0.0.1:${await freePort()}`)
    expect(nowhere.code).toBe(2)
    expect(nowhere.stderr).toMatch(/^jr: cannot reach redis at redis:\/\/127\.0\.0\.1:\d+: .*\(ERR_STORE\)\n$/)

    const braces = await jr('members', '--group', 'a{b}', '--storage', redisServer.url)
    expect(braces.code).toBe(2)
    expect(braces.stderr).toMatch(/'group' must be a non-empty string without '\{' or '\}'.*\(ERR_INVALID_ARG\)/)
  })
})
