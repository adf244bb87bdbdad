import { describe, expect, it } from 'vitest'
import { resolveDistributorOptions } from '../../src/distributor/options.js'
import { checkGroup, checkMemberName, defaultAdvertise, identityKey } from '../../src/protocol/identity.js'
import { thrown } from '../helpers/thrown.js'

const defaults = { alwaysUseSpecifiedNode: false }

describe('distributor identity', () => {
  it.each(['web', 'web-0', 'pod.ns.svc', '10.0.0.1:5000', '[::1]:5000', 'a_b@c'])('accepts %s', (value) => {
    expect(checkGroup('group', value)).toBe(value)
    expect(checkMemberName('name', value)).toBe(value)
  })

  it.each(['', 'a/b', 'x{y}', 'x}', 'has space', 'tab\t', 'é', 'x'.repeat(201)])(
    'refuses %j, naming the option',
    (value) => {
      const err = thrown(() => resolveDistributorOptions({ name: value }, defaults))
      expect(err.code).toBe('ERR_INVALID_ARG')
      expect(err.message).toContain(`'name'`)
      expect(err.message).toContain(JSON.stringify(value))
    },
  )

  it('refuses a group that is not a string or too long, naming it', () => {
    for (const value of [42, null, 'g'.repeat(101), 'a/b']) {
      const err = thrown(() => resolveDistributorOptions({ group: value }, defaults))
      expect(err.code).toBe('ERR_INVALID_ARG')
      expect(err.message).toContain(`'group'`)
    }
  })

  it('refuses an advertise address that is not host:port, and a storage URL that does not parse', () => {
    for (const value of ['nohost:', 'host:0', 'host:99999', 42]) {
      const err = thrown(() => resolveDistributorOptions({ advertise: value }, defaults))
      expect(err.code).toBe('ERR_INVALID_ARG')
      expect(err.message).toContain(`'advertise'`)
    }
    for (const value of ['http://redis:6379', 'redis:/x', 42, 'redis://host:notaport']) {
      const err = thrown(() => resolveDistributorOptions({ storage: value }, defaults))
      expect(err.code).toBe('ERR_INVALID_ARG')
    }
  })

  it('defaults: group default; no name without a spool (the address, once listening); a generated one with a spool', () => {
    const plain = resolveDistributorOptions({}, defaults)
    expect(plain.group).toBe('default')
    expect(plain.name).toBeUndefined()
    expect(plain.storage).toBeUndefined()
    const spooled = resolveDistributorOptions({ storage: 'redis://127.0.0.1:6379' }, defaults)
    const other = resolveDistributorOptions({ storage: 'redis://127.0.0.1:6379' }, defaults)
    expect(spooled.name).toMatch(/^[A-Za-z0-9.-]+-[0-9a-f]{10}$/)
    expect(spooled.name).not.toBe(other.name)
    expect(resolveDistributorOptions({ storage: 'memory' }, defaults).storage).toBeUndefined()
  })

  it('the identity key and the advertised address', () => {
    expect(identityKey('web', 'a')).toBe('web/a')
    expect(defaultAdvertise('127.0.0.1', 5000)).toBe('127.0.0.1:5000')
    expect(defaultAdvertise('::1', 5000)).toBe('[::1]:5000')
    expect(defaultAdvertise('0.0.0.0', 5000)).not.toContain('0.0.0.0')
  })
})
