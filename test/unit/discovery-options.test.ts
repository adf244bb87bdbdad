import { afterEach, describe, expect, it } from 'vitest'
import { memberInfo } from '../../src/admin/group-admin.js'
import { nodeOptionsFromFlags } from '../../src/cli/jr-node.js'
import { ErrorCode } from '../../src/errors.js'
import { resolveNodeOptions } from '../../src/node/options.js'
import { groupKeys, memberKeys } from '../../src/storage/redis/group-keys.js'
import { encodeMemberEntry, parseMemberEntry } from '../../src/storage/redis/member-entry.js'
import { thrown } from '../helpers/thrown.js'

const savedDnsServer = process.env['JR_DNS_SERVER']
afterEach(() => {
  if (savedDnsServer === undefined) delete process.env['JR_DNS_SERVER']
  else process.env['JR_DNS_SERVER'] = savedDnsServer
})

describe('node options: distributors, group, discover', () => {
  it('splits host:port from dns:NAME:PORT entries, each dns target once', () => {
    const o = resolveNodeOptions({
      name: 'n',
      distributors: ['127.0.0.1:5000', 'dns:web-jr.default.svc:5000', '[::1]:6000', 'dns:web-jr.default.svc:5000'],
    })
    expect(o.distributors).toEqual([
      { address: '127.0.0.1:5000', host: '127.0.0.1', port: 5000 },
      { address: '::1:6000', host: '::1', port: 6000 },
    ])
    expect(o.dnsTargets).toEqual([{ name: 'web-jr.default.svc', port: 5000 }])
    expect(o.group).toBeUndefined()
    expect(o.discover).toBeUndefined()
  })

  it('dials 127.0.0.1:5000 by default, and nothing static with discover', () => {
    expect(resolveNodeOptions({ name: 'n' }).distributors.map((d) => d.address)).toEqual(['127.0.0.1:5000'])
    const o = resolveNodeOptions({ name: 'n', group: 'web', discover: 'redis://10.0.0.5:6379' })
    expect(o.distributors).toEqual([])
    expect(o).toMatchObject({ group: 'web', discover: 'redis://10.0.0.5:6379' })
    // An empty list is fine when discovery fills it, and refused when nothing would.
    expect(
      resolveNodeOptions({ name: 'n', distributors: [], group: 'web', discover: 'redis://r' }).distributors,
    ).toEqual([])
    expect(thrown(() => resolveNodeOptions({ name: 'n', distributors: [] })).message).toMatch(/'distributors' must be/)
  })

  it('refuses a dns entry without a port, naming the value', () => {
    const err = thrown(() => resolveNodeOptions({ name: 'n', distributors: ['dns:name-without-port'] }))
    expect(err.code).toBe(ErrorCode.INVALID_ARG)
    expect(err.message).toContain("'dns:name-without-port'")
    expect(err.message).toContain('dns:NAME:PORT')
  })

  it('refuses discover without group, group without discover, and a discover URL that does not parse', () => {
    const noGroup = thrown(() => resolveNodeOptions({ name: 'n', discover: 'redis://127.0.0.1:6379' }))
    expect(noGroup.code).toBe(ErrorCode.INVALID_ARG)
    expect(noGroup.message).toMatch(/'discover' needs 'group'/)

    const noDiscover = thrown(() => resolveNodeOptions({ name: 'n', group: 'web' }))
    expect(noDiscover.code).toBe(ErrorCode.INVALID_ARG)
    expect(noDiscover.message).toMatch(/'group' names the group that 'discover' finds/)

    const badPort = thrown(() => resolveNodeOptions({ name: 'n', group: 'web', discover: 'redis://127.0.0.1:99999' }))
    expect(badPort.code).toBe(ErrorCode.INVALID_ARG)
    expect(badPort.message).toMatch(/^'discover' url "redis:\/\/127\.0\.0\.1:99999" has port 99999/)

    const notRedis = thrown(() => resolveNodeOptions({ name: 'n', group: 'web', discover: 'http://registry' }))
    expect(notRedis.code).toBe(ErrorCode.INVALID_ARG)
    expect(notRedis.message).toMatch(/'discover' must be 'redis:\/\/…'/)

    const badGroup = thrown(() => resolveNodeOptions({ name: 'n', group: 'a/b', discover: 'redis://r' }))
    expect(badGroup.code).toBe(ErrorCode.INVALID_ARG)
    expect(badGroup.message).toMatch(/^'group' must be/)
  })

  it('checks JR_DNS_SERVER when there is a dns entry, and ignores it otherwise', () => {
    process.env['JR_DNS_SERVER'] = 'dns.example'
    expect(resolveNodeOptions({ name: 'n', distributors: ['127.0.0.1:5000'] }).dnsServer).toBeUndefined()
    const err = thrown(() => resolveNodeOptions({ name: 'n', distributors: ['dns:jr.test:5000'] }))
    expect(err.code).toBe(ErrorCode.INVALID_ARG)
    expect(err.message).toMatch(/^JR_DNS_SERVER must be an IP address/)
    process.env['JR_DNS_SERVER'] = '127.0.0.1:5353'
    expect(resolveNodeOptions({ name: 'n', distributors: ['dns:jr.test:5000'] }).dnsServer).toBe('127.0.0.1:5353')
  })

  it('maps jr-node --distributor, --group and --discover to the options', () => {
    const options = nodeOptionsFromFlags(
      {
        name: 'w1',
        storage: 'memory',
        distributor: ['dns:web-jr:5000', '10.0.0.1:5000'],
        group: 'web',
        discover: 'redis://redis:6379',
      },
      {},
    )
    expect(options).toMatchObject({
      distributors: ['dns:web-jr:5000', '10.0.0.1:5000'],
      group: 'web',
      discover: 'redis://redis:6379',
    })
  })
})

describe('group registry keys and entries', () => {
  it('builds the registry, channel, unique and spool keys, all tagged by group', () => {
    expect(groupKeys('web')).toEqual({
      members: 'jr:group:{web}:members',
      events: 'jr:group:{web}:events',
      cancels: 'jr:group:{web}:cancels',
      pauses: 'jr:group:{web}:pauses',
      paused: 'jr:group:{web}:paused',
      unique: 'jr:group:{web}:unique',
      uniqueIds: 'jr:group:{web}:unique-ids',
      uniqueTtl: 'jr:group:{web}:unique-ttl',
      slots: 'jr:group:{web}:slots',
      base: 'jr:group:{web}:',
    })
    expect(groupKeys('web', 't1:').members).toBe('t1:group:{web}:members')
    expect(memberKeys('web', 'pod-1')).toEqual({
      spool: 'jr:group:{web}:spool:pod-1',
      lease: 'jr:group:{web}:lease:pod-1',
    })
  })

  it('refuses braces, which would move the hash tag', () => {
    for (const fn of [() => groupKeys('we{b}'), () => groupKeys('web', 'x{'), () => memberKeys('web', 'p}').spool]) {
      expect(thrown(fn).code).toBe(ErrorCode.INVALID_ARG)
    }
  })

  it('parses an entry, and says why a bad one is not one', () => {
    const value = encodeMemberEntry({ advertise: '10.0.0.1:5000', leaseUntil: 1000, answers: ['old'] })
    expect(parseMemberEntry(value)).toEqual({
      ok: true,
      entry: { advertise: '10.0.0.1:5000', leaseUntil: 1000, answers: ['old'] },
      host: '10.0.0.1',
      port: 5000,
    })
    // `answers` may be left out.
    expect(parseMemberEntry('{"advertise":"h:1","leaseUntil":5}')).toMatchObject({ ok: true, entry: { answers: [] } })
    expect(parseMemberEntry('nope')).toEqual({ ok: false, reason: 'not JSON' })
    expect(parseMemberEntry('[]')).toEqual({ ok: false, reason: 'not a JSON object' })
    expect(parseMemberEntry('{"advertise":"h:1","leaseUntil":"soon"}')).toMatchObject({
      ok: false,
      reason: expect.stringContaining("'leaseUntil'"),
    })
    expect(parseMemberEntry('{"advertise":"h","leaseUntil":5}')).toMatchObject({
      ok: false,
      reason: expect.stringContaining("'advertise' must look like host:port"),
    })
    expect(parseMemberEntry('{"advertise":"h:1","leaseUntil":5,"answers":[1]}')).toMatchObject({ ok: false })
  })

  it('tells a live member from an expired one, the last millisecond still live', () => {
    const value = encodeMemberEntry({ advertise: 'h:1', leaseUntil: 10_000, answers: [] })
    expect(memberInfo('a', value, 2, 10_000)).toMatchObject({ live: true, leaseMs: 0, spool: 2 })
    expect(memberInfo('a', value, 0, 7_000)).toMatchObject({ live: true, leaseMs: 3_000 })
    expect(memberInfo('a', value, 0, 10_001)).toMatchObject({ live: false, leaseMs: -1 })
    expect(memberInfo('a', '{}', 0, 0)).toMatchObject({
      live: false,
      advertise: undefined,
      invalid: expect.any(String),
    })
  })
})
