import { describe, expect, it } from 'vitest'
import { Handle } from '../../src/distributor/job-handle.js'
import { unhandledRejectionsOf } from '../helpers/unhandled.js'

const owner = { cancel: (id: string) => Promise.resolve(id === 'a') }

describe('Handle', () => {
  it('settles a done that was made before the outcome', async () => {
    const h = new Handle('a', owner)
    const done = h.done
    h.resolve({ x: 1 })
    h.reject(new Error('too late'))
    await expect(done).resolves.toEqual({ x: 1 })
    expect(h.done).toBe(done)
  })

  it('rejects a done that was made before the failure with that error, once', async () => {
    const h = new Handle('a', owner)
    const done = h.done
    const boom = new Error('boom')
    h.reject(boom)
    h.resolve({ x: 1 })
    await expect(done).rejects.toBe(boom)
    expect(h.done).toBe(done)
  })

  it('makes an already settled done when first asked after the outcome', async () => {
    const ok = new Handle('a', owner)
    ok.resolve({ y: 2 })
    await expect(ok.done).resolves.toEqual({ y: 2 })
    const failed = new Handle('b', owner)
    failed.reject(new Error('boom'))
    await expect(failed.done).rejects.toThrow('boom')
  })

  it('never leaves an unhandled rejection, looked at or not', async () => {
    const unhandled = await unhandledRejectionsOf(async () => {
      new Handle('a', owner).reject(new Error('nobody looks'))
      const looked = new Handle('b', owner)
      void looked.done
      looked.reject(new Error('looked, never awaited'))
      const late = new Handle('c', owner)
      late.reject(new Error('looked after'))
      void late.done
    })
    expect(unhandled).toEqual([])
  })

  it('persisted: settles once, made before or after, and the first outcome wins', async () => {
    const before = new Handle('a', owner)
    const waiting = before.persisted
    expect(before.isPersisted).toBe(false)
    before.markPersisted()
    before.failPersisted(new Error('too late'))
    await expect(waiting).resolves.toBeUndefined()
    expect(before.isPersisted).toBe(true)

    const after = new Handle('b', owner)
    after.markPersisted()
    await expect(after.persisted).resolves.toBeUndefined()

    const never = new Handle('c', owner)
    const pending = never.persisted
    const closed = new Error('closed')
    never.failPersisted(closed)
    never.markPersisted()
    await expect(pending).rejects.toBe(closed)
    await expect(never.persisted).rejects.toBe(closed)
  })

  it('persisted never leaves an unhandled rejection, looked at or not', async () => {
    const rejections = await unhandledRejectionsOf(async () => {
      const looked = new Handle('a', owner)
      void looked.persisted
      looked.failPersisted(new Error('x'))
      const unlooked = new Handle('b', owner)
      unlooked.failPersisted(new Error('y'))
      void unlooked.persisted
    })
    expect(rejections).toEqual([])
  })

  it('cancels through its distributor by id', async () => {
    expect(await new Handle('a', owner).cancel()).toBe(true)
    expect(await new Handle('z', owner).cancel()).toBe(false)
  })
})
