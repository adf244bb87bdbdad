import { describe, expect, it } from 'vitest'
import { RunIndex } from '../../src/storage/run-index.js'
import { seededRandom } from '../helpers/prng.js'

interface Item {
  id: string
  run: number
  tag: string
}

const item = (id: string, run: number, tag = `${id}/${run}`): Item => ({ id, run, tag })

describe('RunIndex', () => {
  it('finds, replaces and removes by (id, run), counting values', () => {
    const index = new RunIndex<Item>((v) => v.run)
    index.set('a', item('a', 1))
    index.set('b', item('b', 1))
    index.set('a', item('a', 2))
    expect(index.size).toBe(3)
    expect(index.delete('a', 3)).toBeUndefined()
    expect(index.delete('c', 1)).toBeUndefined()

    index.set('a', item('a', 1, 'again'))
    expect(index.size).toBe(3)
    expect(
      index
        .values()
        .map((v) => v.tag)
        .sort(),
    ).toEqual(['a/2', 'again', 'b/1'])

    expect(index.delete('a', 1)?.tag).toBe('again')
    expect(index.delete('a', 1)).toBeUndefined()
    expect(
      index
        .values()
        .map((v) => v.tag)
        .sort(),
    ).toEqual(['a/2', 'b/1'])
    expect(index.delete('b', 2)).toBeUndefined()
    expect(index.size).toBe(2)
    index.clear()
    expect(index.size).toBe(0)
    expect(index.values()).toEqual([])
  })

  it('keeps each job’s runs in the order added', () => {
    const index = new RunIndex<Item>((v) => v.run)
    index.set('p', item('p', 3))
    index.set('q', item('q', 1))
    index.set('p', item('p', 4))
    index.set('p', item('p', 5))
    index.delete('p', 4)
    index.set('p', item('p', 6))
    const tags = index.values().map((v) => v.tag)
    expect(tags.filter((t) => t.startsWith('p/'))).toEqual(['p/3', 'p/5', 'p/6'])
    expect(tags).toContain('q/1')
  })

  it('agrees with a Map keyed by id:run over random operations', () => {
    const random = seededRandom(7)
    const index = new RunIndex<Item>((v) => v.run)
    const model = new Map<string, Item>()
    for (let step = 0; step < 5_000; step++) {
      const id = `j${Math.floor(random() * 20)}`
      const run = 1 + Math.floor(random() * 4)
      const key = `${id}:${run}`
      if (random() < 0.55) {
        const value = item(id, run, `s${step}`)
        index.set(id, value)
        model.set(key, value)
      } else {
        expect(index.delete(id, run)).toBe(model.get(key))
        model.delete(key)
      }
      if (step % 100 === 0) expect(new Set(index.values())).toEqual(new Set(model.values()))
      expect(index.size).toBe(model.size)
    }
    expect(new Set(index.values())).toEqual(new Set(model.values()))
  })
})
