import { describe, expect, it } from 'vitest'
import { toJson } from '../../src/admin/api/views.js'
import { type Failure, RecentFailures } from '../../src/distributor/recent-failures.js'

function failure(id: string): Failure {
  return { id, name: 'mail', node: 'w1', run: 1, at: 0, error: { name: 'Error', message: id }, args: {} }
}

describe('RecentFailures', () => {
  it('keeps the last `size` failures, newest first, and counts every one', () => {
    const failures = new RecentFailures(3)
    for (const id of ['a', 'b', 'c', 'd', 'e']) failures.add(failure(id))
    expect(failures.list().map((f) => f.id)).toEqual(['e', 'd', 'c'])
    expect(failures.list(2).map((f) => f.id)).toEqual(['e', 'd'])
    expect(failures.count).toBe(5)
    expect(failures.get('d')?.id).toBe('d')
    expect(failures.get('a')).toBeUndefined()
  })

  it('forgets a retried job, and finds the newest failure of a job that failed twice', () => {
    const failures = new RecentFailures(4)
    failures.add({ ...failure('a'), run: 1 })
    failures.add(failure('b'))
    failures.add({ ...failure('a'), run: 2 })
    expect(failures.get('a')?.run).toBe(2)
    failures.forget('a')
    expect(failures.list().map((f) => f.id)).toEqual(['b'])
    expect(failures.get('a')).toBeUndefined()
  })
})

describe('toJson', () => {
  it('writes what msgpack args may hold that JSON has no form for: binary as base64, bigint as digits', () => {
    const json = toJson({ bytes: Buffer.from('hi'), raw: new Uint8Array([1, 2]), big: 2n ** 70n, when: new Date(0) })
    expect(JSON.parse(json)).toEqual({
      bytes: { $binary: 'aGk=' },
      raw: { $binary: 'AQI=' },
      big: '1180591620717411303424',
      when: '1970-01-01T00:00:00.000Z',
    })
  })
})
