import { describe, expect, it } from 'vitest'
import { DistributorDirectory } from '../../src/node/distributor-directory.js'
import type { DistributorLink } from '../../src/node/distributor-link.js'

/** As much of a link as the directory reads. */
function link(address: string, group: string, name: string, answersFor: string[] = []): DistributorLink {
  return { address, group, memberName: name, identity: `${group}/${name}`, answersFor } as unknown as DistributorLink
}

describe('DistributorDirectory', () => {
  it('a connected distributor receives what is filed under its identity, whatever address it answers at', () => {
    const dir = new DistributorDirectory()
    const a = link('10.0.0.1:5000', 'web', 'a')
    dir.up(a)
    expect(dir.linkFor('web/a')).toBe(a)
    expect(dir.linkFor('web/b')).toBeUndefined()
    dir.down(a)
    expect(dir.linkFor('web/a')).toBeUndefined()
    // Back at another address (a new pod), the same name.
    const again = link('10.0.0.9:5000', 'web', 'a')
    dir.up(again)
    expect(dir.linkFor('web/a')).toBe(again)
  })

  it('a gone member goes to the member that answers for it, through chains of adoptions, and to itself when it is back', () => {
    const dir = new DistributorDirectory()
    const b = link('10.0.0.2:5000', 'web', 'b', ['a'])
    dir.up(b)
    expect(dir.linkFor('web/a')).toBe(b)
    // c adopts b later (an `answers` message): a goes to c through b.
    const c = link('10.0.0.3:5000', 'web', 'c')
    dir.up(c)
    dir.answers(c, ['b'])
    dir.down(b)
    expect(dir.linkFor('web/b')).toBe(c)
    expect(dir.linkFor('web/a')).toBe(c)
    // Another group's member of the same name is someone else.
    expect(dir.linkFor('api/a')).toBeUndefined()
    const a = link('10.0.0.1:5000', 'web', 'a')
    dir.up(a)
    expect(dir.linkFor('web/a')).toBe(a)
  })

  it('a record from before identities names the address dialled: whoever answers there receives it', () => {
    const dir = new DistributorDirectory()
    const d = link('127.0.0.1:5000', 'default', '127.0.0.1:5000')
    dir.up(d)
    expect(dir.linkFor('127.0.0.1:5000')).toBe(d)
  })

  it('aliases that loop end without an answer', () => {
    const dir = new DistributorDirectory()
    const x = link('h:1', 'g', 'x', ['y'])
    const y = link('h:2', 'g', 'y', ['x'])
    dir.up(x)
    dir.up(y)
    dir.down(x)
    dir.down(y)
    expect(dir.linkFor('g/x')).toBeUndefined()
  })

  it('a link that is replaced under the same identity stays the one found when the old one goes down', () => {
    const dir = new DistributorDirectory()
    const first = link('h:1', 'g', 'a')
    const second = link('h:2', 'g', 'a')
    dir.up(first)
    dir.up(second)
    dir.down(first)
    expect(dir.linkFor('g/a')).toBe(second)
  })
})
