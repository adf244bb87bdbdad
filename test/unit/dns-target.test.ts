import { describe, expect, it } from 'vitest'
import { type DnsContext, DnsSource, parseDnsServer, parseDnsTarget } from '../../src/node/discovery/dns-source.js'
import { LogCapture } from '../helpers/log-capture.js'

const invalid = (...parts: string[]): unknown =>
  expect.objectContaining({
    code: 'ERR_INVALID_ARG',
    message: expect.stringMatching(new RegExp(parts.map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*'))),
  })

describe('parseDnsTarget', () => {
  it.each([
    ['dns:web-jr.default.svc:5000', { name: 'web-jr.default.svc', port: 5000 }],
    ['dns:web-jr.default.svc.cluster.local.:5000', { name: 'web-jr.default.svc.cluster.local.', port: 5000 }],
    ['dns:localhost:1', { name: 'localhost', port: 1 }],
    ['dns:_jr._tcp.example:65535', { name: '_jr._tcp.example', port: 65535 }],
  ])('parses %s', (spec, expected) => {
    expect(parseDnsTarget(spec)).toEqual(expected)
  })

  it.each(['127.0.0.1:5000', 'web:5000', '[::1]:5000', 'DNS:web:5000', 'dnsweb:5000', ''])(
    'leaves %s to the host:port parser',
    (spec) => {
      expect(parseDnsTarget(spec)).toBeUndefined()
    },
  )

  it('says what is missing, naming the spec', () => {
    expect(() => parseDnsTarget('dns:web-jr.default.svc')).toThrow(
      expect.objectContaining({
        code: 'ERR_INVALID_ARG',
        message: "distributor 'dns:web-jr.default.svc' must be dns:NAME:PORT (no port)",
      }),
    )
  })

  it.each([
    ['dns:', 'no port'],
    ['dns:web:', 'no port'],
    ['dns::5000', 'no name'],
    ['dns:web:0', "port '0'"],
    ['dns:web:65536', "port '65536'"],
    ['dns:web:50x', "port '50x'"],
    ['dns:web:-1', "port '-1'"],
    ['dns:web:1.5', "port '1.5'"],
    ['dns:web: 80', "port ' 80'"],
    ['dns:web:0x50', "port '0x50'"],
    ['dns:::1:5000', "'::1' is not a DNS name"],
    ['dns:a b:5000', "'a b' is not a DNS name"],
    ['dns:web..svc:5000', "'web..svc' is not a DNS name"],
    ['dns:.:5000', "'.' is not a DNS name"],
    [`dns:${'a'.repeat(64)}.svc:5000`, 'is not a DNS name'],
  ])('rejects %s', (spec, why) => {
    expect(() => parseDnsTarget(spec)).toThrow(invalid(`distributor '${spec}'`, why))
  })
})

describe('parseDnsServer', () => {
  it.each([
    ['10.0.0.10', { host: '10.0.0.10', port: 53 }],
    ['127.0.0.1:5353', { host: '127.0.0.1', port: 5353 }],
    ['::1', { host: '::1', port: 53 }],
    ['fd00::a', { host: 'fd00::a', port: 53 }],
    ['[::1]', { host: '::1', port: 53 }],
    ['[fd00::a]:5353', { host: 'fd00::a', port: 5353 }],
  ])('parses %s', (value, expected) => {
    expect(parseDnsServer(value)).toEqual(expected)
  })

  it('takes an unset or empty variable as no server', () => {
    expect(parseDnsServer(undefined)).toBeUndefined()
    expect(parseDnsServer('')).toBeUndefined()
  })

  it.each([
    ['dns.example', "'dns.example' is not an IPv4"],
    ['dns.example:53', "'dns.example' is not an IPv4"],
    ['10.0.0.256', "'10.0.0.256' is not an IPv4"],
    ['10.0.0.1:0', "port '0'"],
    ['10.0.0.1:70000', "port '70000'"],
    ['10.0.0.1:', "port ''"],
    ['10.0.0.1:dns', "port 'dns'"],
    ['[10.0.0.1]:53', "'10.0.0.1' is not an IPv6"],
    ['[::1]:x', "port 'x'"],
    ['[::1', 'not host, host:port'],
    ['::1:53:', 'not host, host:port'],
    [' 10.0.0.1', "' 10.0.0.1' is not an IPv4"],
  ])('rejects %s', (value, why) => {
    expect(() => parseDnsServer(value)).toThrow(invalid('JR_DNS_SERVER', `'${value}'`, why))
  })
})

describe('DnsSource options', () => {
  const ctx: DnsContext = {
    log: new LogCapture().logger,
    after: () => {},
    cancelTimer: () => {},
    onChange: () => {},
  }

  it('rejects a malformed server at construction, naming the variable and the value', () => {
    expect(() => new DnsSource(ctx, { name: 'web', port: 5000, server: 'dns.example' })).toThrow(
      invalid('JR_DNS_SERVER', "'dns.example'"),
    )
  })

  it.each([
    [{ name: 'web', port: 0 }, "'port'"],
    [{ name: 'a:b', port: 5000 }, "'a:b' is not a DNS name"],
    [{ name: 'web', port: 5000, minIntervalMs: 0 }, "'minIntervalMs'"],
    [{ name: 'web', port: 5000, minIntervalMs: 5000, maxIntervalMs: 1000 }, "'maxIntervalMs'"],
  ])('rejects %o', (options, why) => {
    expect(() => new DnsSource(ctx, options)).toThrow(invalid(why))
  })

  it('accepts a server and intervals', () => {
    expect(
      new DnsSource(ctx, { name: 'web', port: 5000, server: '[::1]:5353', minIntervalMs: 10, maxIntervalMs: 10 }),
    ).toBeInstanceOf(DnsSource)
  })
})
