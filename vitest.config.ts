import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    env: { JR_LOG_LEVEL: 'silent' },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real processes and servers; two cores do not gain from more.
    maxWorkers: 2,
  },
})
