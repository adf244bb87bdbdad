import { describe, expect, it } from 'vitest'
import { DurableMemoryStore } from '../helpers/durable-memory-store.js'
import { storeConformance } from '../helpers/store-conformance.js'

// The test seam for a durable node without Redis must be a Store in every respect but where it keeps data.
storeConformance('DurableMemoryStore (test helper)', async () => ({
  store: new DurableMemoryStore(),
  cleanup: async () => {},
}))

describe('DurableMemoryStore (test helper)', () => {
  it('says it is durable', () => {
    expect(new DurableMemoryStore().durable).toBe(true)
  })
})
