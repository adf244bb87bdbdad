import { describe, expect, it } from 'vitest'
import { DEFAULT_CONFIG, mergeConfig, parseHostPort } from '../../src/config.js'
import { NO_JOB_OPTIONS } from '../../src/distributor/job-options.js'
import { resolveDistributorOptions, resolveEnqueueOptions } from '../../src/distributor/options.js'
import { ErrorCode } from '../../src/errors.js'
import { JobReactor } from '../../src/jr.js'
import { resolveNodeOptions } from '../../src/node/options.js'

const NOW = 1_700_000_000_000

describe('JR.configure', () => {
  it('merges valid settings and keeps the JobReactor defaults for the rest', () => {
    const jr = new JobReactor()
    jr.configure({ maxAttempt: 3, removeFailedJobs: true })
    expect(jr.config).toMatchObject({
      maxAttempt: 3,
      removeFailedJobs: true,
      retryMultiplier: 5,
      retryJobsAtStart: true,
    })
  })

  it('names an unknown or bad option and changes nothing', () => {
    const jr = new JobReactor()
    expect(() => jr.configure({ maxAtempt: 3 } as never)).toThrow(/unknown config option 'maxAtempt'/)
    expect(() => jr.configure({ maxAttempt: 0 })).toThrow(/'maxAttempt' must be an integer in 1\.\./)
    expect(() => jr.configure({ maxAttempt: 4, removeDoneJobs: 'yes' } as never)).toThrow(
      /'removeDoneJobs' must be a boolean/,
    )
    // All or nothing: the valid half of a rejected call did not land.
    expect(jr.config.maxAttempt).toBe(DEFAULT_CONFIG.maxAttempt)
  })

  it('accepts a retry policy and validates it', () => {
    const config = mergeConfig(
      { ...DEFAULT_CONFIG },
      { retry: { strategy: 'exponential', base: 1, max: 60, jitter: 0.1 } },
    )
    expect(config.retry).toEqual({ strategy: 'exponential', base: 1, max: 60, jitter: 0.1 })
    expect(() => mergeConfig({ ...DEFAULT_CONFIG }, { retry: { strategy: 'sometimes' } })).toThrow(/retry/)
  })
})

describe('enqueue options', () => {
  it('makes due times absolute', () => {
    expect(resolveEnqueueOptions({}, NOW)).toEqual({ dueAt: NOW, job: NO_JOB_OPTIONS })
    // Jobs without options share one options object.
    expect(resolveEnqueueOptions({ after: 1 }, NOW).job).toBe(NO_JOB_OPTIONS)
    expect(resolveEnqueueOptions({ node: 'w1' }, NOW).job).toMatchObject({ node: 'w1', defer: false })
    expect(resolveEnqueueOptions({ after: 1.5 }, NOW).dueAt).toBe(NOW + 1500)
    expect(resolveEnqueueOptions({ runAt: new Date(NOW + 42) }, NOW).dueAt).toBe(NOW + 42)
    // 30 days ahead: past the native timer limit, still an exact instant.
    expect(resolveEnqueueOptions({ after: 30 * 86400 }, NOW).dueAt).toBe(NOW + 30 * 86400 * 1000)
  })

  it('reads options an options object inherits like its own, whatever else it sets', () => {
    const inherited = (own: object) => Object.assign(Object.create({ period: 60, maxAttempt: 2 }) as object, own)
    for (const own of [{ after: 5 }, { after: 5, timeout: 3 }, {}]) {
      expect(resolveEnqueueOptions(inherited(own), NOW).job).toMatchObject({ period: 60, maxAttempt: 2 })
    }
  })

  it('names what is wrong', () => {
    expect(() => resolveEnqueueOptions({ after: 1, runAt: NOW }, NOW)).toThrow(/'after' and 'runAt' are exclusive/)
    expect(() => resolveEnqueueOptions({ period: 0 }, NOW)).toThrow(/'period'/)
    expect(() => resolveEnqueueOptions({ runAt: 'tomorrow' }, NOW)).toThrow(
      /'runAt' must be a Date or epoch milliseconds/,
    )
    expect(() => resolveEnqueueOptions({ timeout: -1 }, NOW)).toThrow(/'timeout'/)
    expect(() => resolveEnqueueOptions({ retry: 1, retryMultiplier: 2 }, NOW)).toThrow(/exclusive/)
    expect(() => resolveEnqueueOptions('fast', NOW)).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARG }))
  })
})

describe('distributor and node options', () => {
  it('resolves defaults once', () => {
    const d = resolveDistributorOptions({}, { alwaysUseSpecifiedNode: true })
    expect(d).toMatchObject({ host: '127.0.0.1', port: 5000, maxPending: 1_000_000, alwaysUseSpecifiedNode: true })
    const n = resolveNodeOptions({ name: 'w1' })
    expect(n).toMatchObject({ concurrency: 100, window: 1000, storage: 'memory', takeover: false })
    expect(n.distributors).toEqual([{ address: '127.0.0.1:5000', host: '127.0.0.1', port: 5000 }])
  })

  it('names bad values', () => {
    expect(() => resolveDistributorOptions({ port: 70000 }, { alwaysUseSpecifiedNode: false })).toThrow(
      /'port' must be an integer in 0\.\.65535/,
    )
    expect(() => resolveDistributorOptions({ secret: 'short' }, { alwaysUseSpecifiedNode: false })).toThrow(
      /'secret' must be a string of at least 16/,
    )
    expect(() => resolveNodeOptions({ name: 'w1', storage: 'mongodb://x' })).toThrow(/'storage' must be 'memory'/)
    // Every scheme the Redis store speaks, and nothing that only looks like one.
    for (const ok of ['redis://h:1', 'rediss://h:1', 'redis-cluster://a:1,b:2', 'rediss-cluster://a:1,b:2']) {
      expect(resolveNodeOptions({ name: 'w1', storage: ok }).storage).toBe(ok)
    }
    expect(() => resolveNodeOptions({ name: 'w1', storage: 'redis-clusters://a:1' })).toThrow(
      /'storage' must be 'memory'/,
    )
    expect(() => resolveNodeOptions({ name: 'w1', storage: 'redis://a:1,b:2' })).toThrow(
      /'storage' url .* names several hosts/,
    )
    expect(() => resolveNodeOptions({ name: 'w1', distributors: [] })).toThrow(
      /'distributors' must be a non-empty array/,
    )
    expect(() => resolveNodeOptions({ name: 'w1', concurrency: 0 })).toThrow(/'concurrency'/)
    expect(() => resolveNodeOptions({ name: 'w 1' })).toThrow(/'name' may hold only/)
    expect(() => resolveNodeOptions({ name: 'w1', colour: 'red' })).toThrow(/unknown node option 'colour'/)
  })

  it('parses host:port forms', () => {
    expect(parseHostPort('d', '10.0.0.1:5000')).toEqual({ host: '10.0.0.1', port: 5000 })
    expect(parseHostPort('d', '[::1]:7')).toEqual({ host: '::1', port: 7 })
    expect(parseHostPort('d', '5001')).toEqual({ host: '127.0.0.1', port: 5001 })
    expect(() => parseHostPort('d', 'host:0')).toThrow(/port must be an integer in 1\.\.65535/)
    expect(() => parseHostPort('d', 'nohost')).toThrow(/must look like host:port/)
  })
})
