import { describe, expect, it } from 'vitest'
import { MemoryStore } from '../../src/storage/memory-store.js'
import { makeJob, storeConformance } from '../helpers/store-conformance.js'

storeConformance('MemoryStore', async () => ({ store: new MemoryStore(), cleanup: async () => {} }))

describe('MemoryStore', () => {
  it('is not durable', () => {
    expect(new MemoryStore().durable).toBe(false)
  })

  it('shares the args bytes instead of copying them', async () => {
    const store = new MemoryStore()
    await store.open()
    const job = makeJob('j1')
    await store.saveJobs([job])
    expect((await store.getJob('j1'))!.args).toBe(job.args)
  })

  it('cannot be opened again once closed', async () => {
    const store = new MemoryStore()
    await store.open()
    await store.close()
    await expect(store.open()).rejects.toMatchObject({ code: 'ERR_STORE' })
  })
})
