import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import fc from 'fast-check'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { pack } from '../../src/protocol/msgpack.js'
import { MemoryStore } from '../../src/storage/memory-store.js'
import { nodeKeys } from '../../src/storage/redis/keys.js'
import { RedisStore } from '../../src/storage/redis/redis-store.js'
import { JobStatus, type JobPatch, type Store } from '../../src/storage/store.js'
import { freePort, startRedisServer } from '../helpers/redis-server.js'
import { unique, useRedis } from '../helpers/shared-redis.js'
import { type MakeStore, makeFeedback, makeJob, storeConformance } from '../helpers/store-conformance.js'
import { unhandledRejectionsOf } from '../helpers/unhandled.js'

const execFileAsync = promisify(execFile)

/** A call of the store's write script, as MONITOR shows it (the only script with 4 keys). */
function isApplyCall(args: string[]): boolean {
  return /^eval(sha)?$/i.test(args[0] ?? '') && args[2] === '4'
}

/** Every command Redis ran while `fn` ran (scripts' commands included), as MONITOR shows them. */
async function commandsDuring(admin: Redis, fn: () => Promise<void>): Promise<string[][]> {
  const monitor = await admin.duplicate().monitor()
  const seen: string[][] = []
  const marker = `marker-${prefix}`
  const markerSeen = new Promise<void>((resolve) => {
    monitor.on('monitor', (_time: string, args: string[]) => {
      seen.push(args)
      if (args[0]?.toLowerCase() === 'echo' && args[1] === marker) resolve()
    })
  })
  try {
    await fn()
    await admin.echo(marker)
    await markerSeen
  } finally {
    monitor.disconnect()
  }
  return seen
}

/** A fresh key prefix per test, so tests never see each other's keys. */
let prefix = ''
beforeEach(() => {
  prefix = `${unique('jr-test')}:`
})

/** SCAN is fine here: this is test cleanup, not the store. One DEL per key, as keys of
 * different nodes sit in different cluster slots. */
async function dropPrefix(admin: Redis, keyPrefix: string): Promise<void> {
  const keys: string[] = []
  for await (const batch of admin.scanStream({ match: `${keyPrefix}*`, count: 1000 })) {
    keys.push(...(batch as string[]))
  }
  if (keys.length === 0) return
  const pipeline = admin.pipeline()
  for (const key of keys) pipeline.del(key)
  await pipeline.exec()
}

/** The store's own client, to await its connection events instead of sleeping. */
function clientOf(store: RedisStore): Redis {
  return (store as unknown as { client: Redis }).client
}

function untilStatus(client: Redis, status: 'ready' | 'reconnecting'): Promise<void> {
  if (client.status === status) return Promise.resolve()
  return new Promise((resolve) => client.once(status, () => resolve()))
}

/** Runs the conformance suite against one server, opened in beforeAll. */
function conformanceOn(name: string, options: { cluster?: boolean }): void {
  describe(name, () => {
    const server = useRedis(options)
    let admin: Redis
    beforeAll(() => {
      admin = new Redis(server.port, '127.0.0.1')
    })
    afterAll(async () => {
      await admin?.quit()
    })
    const makeStore: MakeStore = async (node = 'worker1') => {
      const keyPrefix = prefix
      return {
        store: new RedisStore({ node, url: server.url, prefix: keyPrefix }),
        cleanup: () => dropPrefix(admin, keyPrefix),
      }
    }
    storeConformance(name, makeStore)
  })
}

conformanceOn('RedisStore', {})
// A one-node cluster that owns every slot: a MULTI or script whose keys left the node's
// hash tag would fail here with CROSSSLOT.
conformanceOn('RedisStore on Redis Cluster', { cluster: true })

describe('loading ioredis', () => {
  // In a process of its own: this test file, and others in the same worker, load ioredis.
  it('happens when the first RedisStore makes its client, not when the package is imported', async () => {
    const script = `
      import { createRequire } from 'node:module'
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('/node_modules/ioredis/'))
      const { RedisStore } = await import(${JSON.stringify(new URL('../../src/index.ts', import.meta.url).href)})
      const atImport = loaded()
      new RedisStore({ node: 'w' })
      process.stdout.write(JSON.stringify({ atImport, afterStore: loaded() }))
    `
    const { stdout } = await execFileAsync(process.execPath, [
      '--import',
      'tsx',
      '--input-type=module',
      '--eval',
      script,
    ])
    expect(JSON.parse(stdout)).toEqual({ atImport: false, afterStore: true })
  })
})

describe('RedisStore on a real redis-server', () => {
  const server = useRedis()
  let admin: Redis
  const opened: RedisStore[] = []

  async function open(node = 'worker1', url = server.url): Promise<RedisStore> {
    const store = new RedisStore({ node, url, prefix })
    opened.push(store)
    await store.open()
    return store
  }

  beforeAll(() => {
    admin = new Redis(server.port, '127.0.0.1')
  })
  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close()
    await dropPrefix(admin, prefix)
  })
  afterAll(async () => {
    await admin?.quit()
  })

  it('is durable', () => {
    expect(new RedisStore({ node: 'worker1', url: server.url }).durable).toBe(true)
  })

  it('open() against a closed port rejects quickly with ERR_STORE naming the address, and gives up', {
    timeout: 3_000,
  }, async () => {
    const port = await freePort()
    const store = new RedisStore({ node: 'worker1', url: `redis://:hunter2@127.0.0.1:${port}/2` })
    const error = await store.open().then(
      () => undefined,
      (err: unknown) => err,
    )
    expect(error).toMatchObject({ code: 'ERR_STORE' })
    const message = (error as Error).message
    expect(message).toContain(`127.0.0.1:${port}`)
    expect(message).toContain('ECONNREFUSED')
    expect(message).not.toContain('hunter2')
    // No silent reconnecting in the background after a failed open.
    expect(clientOf(store).status).toBe('end')
    await store.close()
  })

  it('open() of a cluster url against a closed port rejects with ERR_STORE', { timeout: 3_000 }, async () => {
    const port = await freePort()
    const store = new RedisStore({ node: 'worker1', url: `redis-cluster://127.0.0.1:${port}` })
    await expect(store.open()).rejects.toMatchObject({
      code: 'ERR_STORE',
      message: expect.stringContaining(`127.0.0.1:${port}`),
    })
    await store.close()
  })

  it('a fresh instance with the same node name resumes jobs and pending feedback', async () => {
    const first = await open('worker1')
    const jobs = [
      makeJob('new', { status: JobStatus.NEW, dueAt: 1_800_000_000_000 }),
      makeJob('running', { status: JobStatus.IN_PROGRESS, attempt: 2, period: 30 }),
      makeJob('retrying', { status: JobStatus.ERROR, lastError: { name: 'Error', message: 'x' }, failedAt: 9 }),
      makeJob('done', { status: JobStatus.IN_PROGRESS }),
    ]
    await first.saveJobs(jobs)
    const feedback = makeFeedback('done', { args: Uint8Array.of(0xc0, 0xff) })
    await first.finishRun('done', { status: JobStatus.COMPLETE }, feedback, true)
    await first.close()

    const second = await open('worker1')
    const resumed = await second.listUnfinished()
    expect(resumed.map((j) => j.id).sort()).toEqual(['new', 'retrying', 'running'])
    expect({ ...resumed.find((j) => j.id === 'running')!, args: [] }).toEqual({ ...jobs[1]!, args: [] })
    const outbox = await second.listFeedback()
    expect(outbox.map((f) => ({ ...f, args: Array.from(f.args) }))).toEqual([{ ...feedback, args: [0xc0, 0xff] }])
  })

  it('stores its keys under <prefix>{<node>}: as keys.ts documents', async () => {
    const store = await open('worker7')
    await store.saveJobs([makeJob('j1'), makeJob('j2', { status: JobStatus.COMPLETE })])
    await store.finishRun('j2', {}, makeFeedback('j2'), false)
    const keys = nodeKeys('worker7', prefix)
    const stored: string[] = []
    for await (const batch of admin.scanStream({ match: `${prefix}*` })) stored.push(...(batch as string[]))
    expect(stored.sort()).toEqual([keys.job('j1'), keys.job('j2'), keys.jobs, keys.outbox, keys.unfinished].sort())
    expect(keys.job('j1')).toBe(`${prefix}{worker7}:job:j1`)
    expect(await admin.smembers(keys.unfinished)).toEqual(['j1'])
    expect((await admin.smembers(keys.jobs)).sort()).toEqual(['j1', 'j2'])
    expect(await admin.hkeys(keys.outbox)).toEqual(['j2:1'])
    expect(await admin.hget(keys.job('j1'), 'dueAt')).toBe('1700000000000')
  })

  it('uses no KEYS or SCAN, and saves a batch of 1,000 in one script call', async () => {
    const seen = await commandsDuring(admin, async () => {
      const store = await open('worker1')
      await store.saveJobs(Array.from({ length: 1000 }, (_, i) => makeJob(`b${i}`)))
      await store.updateJob('b1', { status: JobStatus.IN_PROGRESS })
      await store.finishRun('b1', { status: JobStatus.COMPLETE }, makeFeedback('b1'), true)
      await store.getJob('b2')
      await store.removeJob('b2')
      await store.listUnfinished()
      await store.listJobs({ status: JobStatus.NEW })
      await store.listFeedback()
      await store.ackFeedback([{ jobId: 'b1', run: 1 }])
    })
    const names = seen.map((args) => args[0]!.toLowerCase())
    expect(names.filter((n) => /^(keys|scan|sscan|hscan|zscan)$/.test(n))).toEqual([])
    // Awaited one by one, each write went out in its own turn: saveJobs, updateJob, finishRun, removeJob.
    expect(seen.filter(isApplyCall)).toHaveLength(4)
    expect(names.filter((n) => n === 'multi')).toHaveLength(0)
    // MONITOR also shows the commands a script runs.
    expect(names.filter((n) => n === 'hset').length).toBeGreaterThanOrEqual(1000)
  })

  it('splits a turn of more than 1,000 writes into several script calls, losing none', async () => {
    const store = await open('worker1')
    const calls = await commandsDuring(admin, async () => {
      await store.saveJobs(Array.from({ length: 2_500 }, (_, i) => makeJob(`m${i}`, { name: `ünïcode-${i}` })))
    })
    expect(calls.filter(isApplyCall)).toHaveLength(3)
    const stored = await store.listUnfinished()
    expect(stored).toHaveLength(2_500)
    expect(stored.find((j) => j.id === 'm2499')?.name).toBe('ünïcode-2499')
  })

  it('reads a feedback record stored before the job name was kept: its name is unknown', async () => {
    const store = await open('worker1')
    const keys = nodeKeys('worker1', prefix)
    const args = Uint8Array.of(0x80)
    await admin.hset(keys.outbox, 'old:1', pack(['old', 1, '127.0.0.1:5000', 'success', true, false, args]))
    await store.finishRun('new', { status: JobStatus.COMPLETE }, makeFeedback('new', { name: 'greet' }), false)
    const outbox = await store.listFeedback()
    const old = outbox.find((f) => f.jobId === 'old')
    expect(old).toBeDefined()
    expect('name' in old!).toBe(false)
    expect(outbox.find((f) => f.jobId === 'new')?.name).toBe('greet')
  })

  it('names a corrupt record instead of handing it to the node', async () => {
    const store = await open('worker1')
    const keys = nodeKeys('worker1', prefix)
    await admin.hset(keys.outbox, 'x:1', pack({ jobId: 'x', run: 1 }))
    await expect(store.listFeedback()).rejects.toMatchObject({
      code: 'ERR_STORE',
      message: expect.stringContaining('x:1'),
    })
    await admin.hdel(keys.outbox, 'x:1')
    await admin.hset(keys.job('y'), 'id', 'y', 'name', 'noop', 'status', 'new')
    await expect(store.getJob('y')).rejects.toMatchObject({
      code: 'ERR_STORE',
      message: expect.stringContaining(keys.job('y')),
    })
  })

  it('refuses a job it cannot encode without spoiling the other writes of its turn', async () => {
    const store = await open('worker1')
    const bad = makeJob('bad', { retry: { strategy: 'fixed', delay: 10n as unknown as number } })
    const writes = [store.saveJobs([makeJob('good1')]), store.saveJobs([bad]), store.saveJobs([makeJob('good2')])]
    const [first, second, third] = await Promise.allSettled(writes)
    expect(first?.status).toBe('fulfilled')
    expect(second).toMatchObject({ status: 'rejected', reason: { code: 'ERR_STORE' } })
    expect(third?.status).toBe('fulfilled')
    expect((await store.listUnfinished()).map((j) => j.id).sort()).toEqual(['good1', 'good2'])
  })

  it('sends the job writes of one turn as one script call, applied in the order they were made', async () => {
    const store = await open('worker1')
    const calls = await commandsDuring(admin, async () => {
      await Promise.all([
        store.saveJobs([makeJob('o1'), makeJob('o2')]),
        store.updateJob('o1', { status: JobStatus.IN_PROGRESS, attempt: 1 }),
        store.finishRun('o1', { status: JobStatus.COMPLETE }, makeFeedback('o1'), true),
        // After its removal, an update must not bring o1 back as a half record.
        store.updateJob('o1', { attempt: 2 }),
        store.removeJob('o2'),
        store.saveJobs([makeJob('o2', { attempt: 3 })]),
      ])
    })
    expect(calls.filter(isApplyCall)).toHaveLength(1)
    expect(await store.getJob('o1')).toBeUndefined()
    expect(await admin.exists(`${prefix}{worker1}:job:o1`)).toBe(0)
    expect(await store.getJob('o2')).toMatchObject({ id: 'o2', attempt: 3 })
    expect((await store.listUnfinished()).map((j) => j.id)).toEqual(['o2'])
    expect((await store.listFeedback()).map((f) => f.jobId)).toEqual(['o1'])
  })

  it('skips an update that a removal later in the same turn makes moot, and keeps the others', async () => {
    const store = await open('worker1')
    await store.saveJobs([makeJob('k1'), makeJob('k2'), makeJob('k3')])
    const calls = await commandsDuring(admin, async () => {
      await Promise.all([
        // An instant job's attempt: started and finished in one turn.
        store.updateJob('k1', { status: JobStatus.IN_PROGRESS, attempt: 1 }),
        store.finishRun('k1', { status: JobStatus.COMPLETE }, makeFeedback('k1'), true),
        // Finished but kept: its update must stay.
        store.updateJob('k2', { status: JobStatus.IN_PROGRESS, attempt: 4 }),
        store.finishRun('k2', { status: JobStatus.COMPLETE }, makeFeedback('k2'), false),
        store.updateJob('k3', { attempt: 7 }),
        store.removeJob('k3'),
      ])
    })
    expect(calls.filter(isApplyCall)).toHaveLength(1)
    // Only k2's update looks the job up; k1's and k3's never ran.
    expect(calls.filter((args) => args[0]?.toLowerCase() === 'exists').map((args) => args[1])).toEqual([
      `${prefix}{worker1}:job:k2`,
      `${prefix}{worker1}:job:k2`,
    ])
    expect(await store.getJob('k1')).toBeUndefined()
    expect(await store.getJob('k3')).toBeUndefined()
    expect(await store.getJob('k2')).toMatchObject({ status: JobStatus.COMPLETE, attempt: 4 })
    expect((await store.listFeedback()).map((f) => f.jobId).sort()).toEqual(['k1', 'k2'])
  })

  it('keeps the order of one job’s operations while an update is held back', async () => {
    const store = await open('worker1')
    await store.saveJobs([makeJob('h1'), makeJob('h2')])
    await Promise.all([
      // Held, then overtaken by a save: the save must win, as it came later.
      store.updateJob('h1', { attempt: 9 }),
      store.saveJobs([makeJob('h1', { attempt: 3 })]),
      // Two held updates merge; the later status decides.
      store.updateJob('h2', { status: JobStatus.IN_PROGRESS, attempt: 1 }),
      store.updateJob('h2', { status: JobStatus.ERROR, runDueAt: 42 }),
    ])
    expect(await store.getJob('h1')).toMatchObject({ attempt: 3 })
    expect(await store.getJob('h2')).toMatchObject({ status: JobStatus.ERROR, attempt: 1, runDueAt: 42 })
    expect((await store.listUnfinished()).map((j) => j.id).sort()).toEqual(['h1', 'h2'])
  })

  it('holds a progress update like an attempt start: merged, written before a later finish, dropped by a removal', async () => {
    const store = await open('worker1')
    await store.saveJobs([makeJob('p1'), makeJob('p2'), makeJob('p3')])
    await Promise.all([
      store.updateJob('p1', { status: JobStatus.IN_PROGRESS, attempt: 1 }),
      store.updateJob('p1', { progress: { done: 1 } }),
      store.updateJob('p1', { progress: 0.5 }),
      // Kept by its finish: the held update is written first, then the finish's patch.
      store.updateJob('p2', { status: JobStatus.IN_PROGRESS, attempt: 1 }),
      store.updateJob('p2', { progress: { done: 2 } }),
      store.finishRun('p2', { status: JobStatus.FAILED }, makeFeedback('p2'), false),
      // Removed by its finish within the turn: its updates are never written.
      store.updateJob('p3', { status: JobStatus.IN_PROGRESS, attempt: 1 }),
      store.updateJob('p3', { progress: 1 }),
      store.finishRun('p3', { status: JobStatus.COMPLETE }, makeFeedback('p3'), true),
    ])
    expect(await store.getJob('p1')).toMatchObject({ status: JobStatus.IN_PROGRESS, attempt: 1, progress: 0.5 })
    expect(await store.getJob('p2')).toMatchObject({ status: JobStatus.FAILED, attempt: 1, progress: { done: 2 } })
    expect(await store.getJob('p3')).toBeUndefined()
  })

  it('refuses a progress value msgpack cannot encode in that call, and the batch goes on', async () => {
    const store = await open('worker1')
    await store.saveJobs([makeJob('e1'), makeJob('e2')])
    const bad = store.updateJob('e1', { status: JobStatus.IN_PROGRESS, progress: { s: Symbol('not msgpack') } })
    const good = store.updateJob('e2', { progress: 3 })
    await expect(bad).rejects.toMatchObject({ code: 'ERR_STORE', message: /encoding a progress value/ })
    await good
    expect((await store.getJob('e2'))?.progress).toBe(3)
    expect(await store.getJob('e1')).toMatchObject({ status: JobStatus.NEW })
    expect((await store.getJob('e1'))?.progress).toBeUndefined()
  })

  it('a save replaces whatever its key held: a record with more fields, or a value of another type', async () => {
    const store = await open('worker1')
    const keys = nodeKeys('worker1', prefix)
    await store.saveJobs([makeJob('r1', { period: 5, lastError: { name: 'Error', message: 'old', stack: '' } })])
    await admin.set(keys.job('r2'), 'not a hash')
    await store.saveJobs([makeJob('r1'), makeJob('r2')])
    for (const id of ['r1', 'r2']) {
      const job = await store.getJob(id)
      expect({ ...job, args: Uint8Array.from(job?.args ?? []) }).toEqual(makeJob(id))
    }
  })

  it('ends a turn of any mix of writes in the state MemoryStore reaches with the same writes', async () => {
    // The script gathers set memberships, removals and feedback and writes them at the end
    // of the batch: any order of operations on a few ids must still end as one by one.
    const ids = ['m1', 'm2', 'm3']
    const status = fc.constantFrom(...Object.values(JobStatus))
    // A field given as undefined is left alone: both ways of leaving one out are drawn.
    const maybe = <T>(value: fc.Arbitrary<T>) => fc.option(value, { nil: undefined })
    const patch = fc.record(
      { status: maybe(status), attempt: maybe(fc.nat(9)), runDueAt: maybe(fc.nat(99)), failedAt: maybe(fc.nat(99)) },
      { requiredKeys: [] },
    )
    const op = fc.oneof(
      fc.record({ op: fc.constant('save' as const), id: fc.constantFrom(...ids), status, attempt: fc.nat(9) }),
      fc.record({ op: fc.constant('update' as const), id: fc.constantFrom(...ids), patch }),
      fc.record({ op: fc.constant('error' as const), id: fc.constantFrom(...ids), message: fc.string() }),
      fc.record({ op: fc.constant('progress' as const), id: fc.constantFrom(...ids), done: fc.nat(99) }),
      fc.record({
        op: fc.constant('finish' as const),
        id: fc.constantFrom(...ids),
        patch,
        run: fc.integer({ min: 1, max: 2 }),
        remove: fc.boolean(),
      }),
      fc.record({ op: fc.constant('remove' as const), id: fc.constantFrom(...ids) }),
    )
    type Op = typeof op extends fc.Arbitrary<infer T> ? T : never
    const apply = (store: Store, o: Op): Promise<void> => {
      switch (o.op) {
        case 'save':
          return store.saveJobs([makeJob(o.id, { status: o.status, attempt: o.attempt })])
        case 'update':
          return store.updateJob(o.id, o.patch as JobPatch)
        case 'error':
          return store.updateJob(o.id, { lastError: { name: 'Error', message: o.message, stack: '' } })
        case 'progress':
          return store.updateJob(o.id, { progress: o.done % 2 === 0 ? o.done : { done: o.done } })
        case 'finish':
          return store.finishRun(o.id, o.patch as JobPatch, makeFeedback(o.id, { run: o.run }), o.remove)
        case 'remove':
          return store.removeJob(o.id)
      }
    }
    const stateOf = async (store: Store) => ({
      jobs: (await store.listJobs())
        .map((j) => ({ ...j, args: Uint8Array.from(j.args) }))
        .sort((a, b) => a.id.localeCompare(b.id)),
      unfinished: (await store.listUnfinished()).map((j) => j.id).sort(),
      feedback: (await store.listFeedback()).map((f) => `${f.jobId}:${f.run}`).sort(),
    })
    let run = 0
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 12 }), fc.array(op, { maxLength: 12 }), async (before, turn) => {
        const redis = await open(`model${run++}`)
        const memory = new MemoryStore()
        await memory.open()
        // A first turn leaves records behind for the second to find, replace and remove.
        for (const ops of [before, turn]) {
          await Promise.all(ops.map((o) => apply(redis, o)))
          for (const o of ops) await apply(memory, o)
        }
        const expected = await stateOf(memory)
        expect(await stateOf(redis)).toEqual(expected)
        // No id left behind in a set without its record, where the lists would not show it.
        const keys = nodeKeys(`model${run - 1}`, prefix)
        expect((await admin.smembers(keys.unfinished)).sort()).toEqual(expected.unfinished)
        expect((await admin.smembers(keys.jobs)).sort()).toEqual(expected.jobs.map((j) => j.id))
      }),
      { numRuns: 200 },
    )
  })

  it('survives a Redis restart: fails fast while it is down, then reconnects by itself', {
    timeout: 20_000,
  }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jr-redis-restart-'))
    let own = await startRedisServer({ appendonly: true, dir })
    try {
      const store = await open('worker1', own.url)
      const client = clientOf(store)
      await store.saveJobs([makeJob('before')])

      const down = untilStatus(client, 'reconnecting')
      await own.stop()
      await down
      await expect(store.getJob('before')).rejects.toMatchObject({
        code: 'ERR_STORE',
        message: expect.stringContaining(own.url),
      })
      await expect(store.saveJobs([makeJob('during')])).rejects.toMatchObject({ code: 'ERR_STORE' })
      // A save that spans several batches fails as one, and leaves no batch's failure unhandled.
      const unhandled = await unhandledRejectionsOf(async () => {
        await expect(
          store.saveJobs(Array.from({ length: 2_500 }, (_, i) => makeJob(`during-${i}`))),
        ).rejects.toMatchObject({ code: 'ERR_STORE' })
      })
      expect(unhandled).toEqual([])

      own = await startRedisServer({ appendonly: true, dir, port: own.port })
      await untilStatus(client, 'ready')
      expect((await store.getJob('before'))?.id).toBe('before')
      await store.saveJobs([makeJob('after')])
      expect((await store.listUnfinished()).map((j) => j.id).sort()).toEqual(['after', 'before'])
    } finally {
      for (const store of opened.splice(0)) await store.close()
      await own.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('close() while open() is connecting leaves the store closed', async () => {
    const store = new RedisStore({ node: 'worker1', url: server.url, prefix })
    const opening = store.open()
    await store.close()
    await expect(opening).rejects.toMatchObject({ code: 'ERR_STORE', message: expect.stringContaining('closed') })
    await expect(store.listJobs()).rejects.toMatchObject({ code: 'ERR_STORE' })
    expect(clientOf(store).status).toBe('end')
  })

  it('uses a given client without closing it', async () => {
    const client = new Redis(server.port, '127.0.0.1')
    try {
      const store = new RedisStore({ node: 'worker1', redis: client, prefix })
      await store.open()
      await store.saveJobs([makeJob('j1')])
      expect((await store.getJob('j1'))?.id).toBe('j1')
      await store.close()
      expect(client.status).toBe('ready')
      expect(await client.sismember(nodeKeys('worker1', prefix).jobs, 'j1')).toBe(1)
    } finally {
      await client.quit()
    }
  })

  it('rejects bad options with ERR_INVALID_ARG naming them', () => {
    const client = new Redis({ lazyConnect: true })
    try {
      expect(() => new RedisStore({ node: 'w', url: server.url, redis: client })).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_ARG', message: expect.stringContaining("'url'") }),
      )
    } finally {
      client.disconnect()
    }
    const prefixed = new Redis({ lazyConnect: true, keyPrefix: 'app:' })
    try {
      expect(() => new RedisStore({ node: 'w', redis: prefixed })).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_ARG', message: expect.stringContaining('keyPrefix') }),
      )
    } finally {
      prefixed.disconnect()
    }
    expect(() => new RedisStore({ node: '' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
    expect(() => new RedisStore({ node: 'a{b}' })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG', message: expect.stringContaining("'node'") }),
    )
    expect(() => new RedisStore({ node: 'w', prefix: 'x{' })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG', message: expect.stringContaining("'prefix'") }),
    )
    expect(() => new RedisStore({ node: 'w', url: 'http://localhost' })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG' }),
    )
  })
  it('pages failed jobs from the failed index: about the page of reads, none of the whole set', async () => {
    const store = await open('worker1')
    await store.saveJobs(Array.from({ length: 200 }, (_, i) => makeJob(`f${i}`, { status: JobStatus.FAILED })))
    await store.saveJobs(Array.from({ length: 50 }, (_, i) => makeJob(`n${i}`)))
    await store.listFailedPage(undefined, 10) // fills the index of older records once, if it must
    let page: Awaited<ReturnType<RedisStore['listFailedPage']>> | undefined
    const seen = await commandsDuring(admin, async () => {
      page = await store.listFailedPage(undefined, 10)
      page = await store.listFailedPage(page.next, 10)
    })
    expect(page!.jobs).toHaveLength(10)
    const names = seen.map((args) => args[0]!.toLowerCase())
    expect(names.filter((n) => n === 'hgetall')).toHaveLength(20)
    expect(names.filter((n) => n === 'hget')).toHaveLength(22)
    expect(names.filter((n) => /^(smembers|sscan|zrange|exists)$/.test(n))).toEqual([])
  })

  it('fills the failed index once from records stored before it existed', async () => {
    const store = await open('worker1')
    await store.saveJobs([
      ...Array.from({ length: 1500 }, (_, i) => makeJob(`old${i}`, { status: JobStatus.FAILED })),
      ...Array.from({ length: 500 }, (_, i) => makeJob(`n${i}`)),
    ])
    // As a store written by a version without the index left it.
    await admin.del(`${prefix}{worker1}:failed`, `${prefix}{worker1}:failed-indexed`)
    const fresh = await open('worker1')
    const listed: string[] = []
    let next: string | undefined
    do {
      const page = await fresh.listFailedPage(next, 500)
      listed.push(...page.jobs.map((j) => j.id))
      next = page.next
    } while (next !== undefined)
    expect(listed).toHaveLength(1500)
    expect(new Set(listed).size).toBe(1500)
    expect(await admin.exists(`${prefix}{worker1}:failed-indexed`)).toBe(1)
    // Another store (a restart) sees the marker and scans nothing.
    const later = await open('worker1')
    const seen = await commandsDuring(admin, async () => {
      await later.listFailedPage(undefined, 10)
    })
    expect(seen.map((args) => args[0]!.toLowerCase()).filter((n) => n === 'sscan')).toEqual([])
  })

  it('drops the ids of jobs that left the failed status as a page meets them, a bounded number per call', async () => {
    const store = await open('worker1')
    await store.saveJobs(Array.from({ length: 2500 }, (_, i) => makeJob(`s${i}`, { status: JobStatus.FAILED })))
    await store.saveJobs([makeJob('z1', { status: JobStatus.FAILED }), makeJob('z2', { status: JobStatus.FAILED })])
    expect(await store.listFailedPage(undefined, 1)).toMatchObject({ next: 's0' })
    // Retried: their ids stay in the index until a page meets them. Removed (a purge): out at once.
    for (let i = 0; i < 2500; i++) {
      if (i % 2 === 0) void store.updateJob(`s${i}`, { status: JobStatus.NEW })
      else void store.removeJob(`s${i}`)
    }
    await store.updateJob('s0', { status: JobStatus.NEW })
    const failedKey = `${prefix}{worker1}:failed`
    expect(await admin.zcard(failedKey)).toBe(1252)
    const page = await store.listFailedPage(undefined, 10)
    expect(page.jobs.map((j) => j.id).sort()).toEqual(['z1', 'z2'])
    expect(page.next).toBeUndefined()
    expect(await admin.zrange(failedKey, '0', '-1')).toEqual(['z1', 'z2'])
  })

  it('a page filled just before a call cut short by stale ids gives the cursor to go on from, not the first page', async () => {
    const store = await open('worker1')
    // a0 sorts first, then 1,001 ids that will be stale, then c0 and c1.
    const stale = Array.from({ length: 1001 }, (_, i) => `b${String(i).padStart(4, '0')}`)
    await store.saveJobs(['a0', ...stale, 'c0', 'c1'].map((id) => makeJob(id, { status: JobStatus.FAILED })))
    await store.listFailedPage(undefined, 1)
    for (const id of stale) void store.updateJob(id, { status: JobStatus.NEW })
    await store.updateJob('c1', { status: JobStatus.FAILED })
    const seen: string[] = []
    let next: string | undefined
    do {
      const page = await store.listFailedPage(next, 1)
      seen.push(...page.jobs.map((j) => j.id))
      next = page.next
      expect(next).not.toBe('')
    } while (next !== undefined)
    expect(seen).toEqual(['a0', 'c0', 'c1'])
  })

  it('lists a failed job again after a retry that failed again, once', async () => {
    const store = await open('worker1')
    await store.saveJobs([makeJob('a', { status: JobStatus.FAILED })])
    await store.updateJob('a', { status: JobStatus.NEW })
    expect(await store.listFailedPage(undefined, 10)).toEqual({ jobs: [] })
    await store.finishRun('a', { status: JobStatus.FAILED }, makeFeedback('a'), false)
    expect((await store.listFailedPage(undefined, 10)).jobs.map((j) => j.id)).toEqual(['a'])
  })
})
