import { describe, expect, it } from 'vitest'
import { LinkedList, type Linked } from '../../src/linked-list.js'

interface Item extends Linked<Item> {
  name: string
}

const item = (name: string): Item => ({ name, list: undefined, prev: undefined, next: undefined })
const names = (list: LinkedList<Item>): string[] => list.values().map((i) => i.name)

describe('LinkedList', () => {
  it('keeps items in the order added and takes any of them out', () => {
    const list = new LinkedList<Item>()
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(item) as [Item, Item, Item, Item]
    for (const i of [a, b, c, d]) list.add(i)
    list.remove(b)
    expect(names(list)).toEqual(['a', 'c', 'd'])
    list.remove(a)
    list.remove(d)
    expect(names(list)).toEqual(['c'])
    expect(list.size).toBe(1)
    list.add(a)
    expect(names(list)).toEqual(['c', 'a'])
    expect(b.list).toBeUndefined()
  })

  it('ignores an item of another list, and moves an item added to a second list', () => {
    const one = new LinkedList<Item>()
    const two = new LinkedList<Item>()
    const a = item('a')
    const b = item('b')
    one.add(a)
    two.add(b)
    one.remove(b)
    expect(names(two)).toEqual(['b'])
    expect(one.size).toBe(1)
    two.add(a)
    expect(names(one)).toEqual([])
    expect(one.size).toBe(0)
    expect(names(two)).toEqual(['b', 'a'])
    expect(a.list).toBe(two)
  })

  it('drains in order and leaves every item free', () => {
    const list = new LinkedList<Item>()
    const items = ['x', 'y', 'z'].map(item)
    for (const i of items) list.add(i)
    expect(list.drain().map((i) => i.name)).toEqual(['x', 'y', 'z'])
    expect(list.size).toBe(0)
    expect(names(list)).toEqual([])
    for (const i of items) expect([i.list, i.prev, i.next]).toEqual([undefined, undefined, undefined])
    list.add(items[1] as Item)
    expect(names(list)).toEqual(['y'])
  })
})
