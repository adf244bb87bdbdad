import { describe, expect, it } from 'vitest'
import { RecentIds } from '../../src/distributor/recent-ids.js'

describe('RecentIds', () => {
  it('remembers at least the last generation of ids, and forgets those two generations old', () => {
    const recent = new RecentIds(3)
    for (const id of ['a', 'b', 'c', 'd', 'e']) recent.add(id)
    // a, b, c filled the first generation; d, e are in the young one.
    expect(['a', 'b', 'c', 'd', 'e'].every((id) => recent.has(id))).toBe(true)
    recent.add('f')
    // d, e, f filled the second: the first (a, b, c) is gone.
    expect(['a', 'b', 'c'].some((id) => recent.has(id))).toBe(false)
    expect(['d', 'e', 'f'].every((id) => recent.has(id))).toBe(true)
    expect(recent.has('g')).toBe(false)
  })
})
