/**
 * Every wait is bounded (docs/architecture.md, "Every wait, bounded"): strangers who never
 * finish a handshake, a store that hangs, a node that never accepts what it was sent.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import type { Distributor } from '../../src/distributor/distributor.js'
import { resolveDistributorOptions } from '../../src/distributor/options.js'
import { ErrorCode, InvalidArgumentError, StoreError } from '../../src/errors.js'
import { Node } from '../../src/node/node.js'
import { resolveNodeOptions } from '../../src/node/options.js'
import { JobRegistry } from '../../src/node/registry.js'
import { RedisStore } from '../../src/storage/redis/redis-store.js'
import { JobStatus, type JobPatch, type JobRecord } from '../../src/storage/store.js'
import { HANDSHAKE_MAX_FRAME_SIZE } from '../../src/protocol/frame.js'
import { MessageType } from '../../src/protocol/messages.js'
import { pack } from '../../src/protocol/msgpack.js'
import {
  allAccepted,
  config,
  FIXTURE_JOBS,
  Resources,
  spawnConnectedNode,
  spawnNode,
  startDistributor,
  startNode,
} from '../helpers/cluster.js'
import { FakePeer } from '../helpers/fake-peer.js'
import { FirstCallGate } from '../helpers/gated-stores.js'
import { command, startRedisServer } from '../helpers/redis-server.js'

const res = new Resources()
afterEach(() => res.releaseAll())

const DISTRIBUTOR_PROCESS = fileURLToPath(new URL('../fixtures/distributor-process.js', import.meta.url))
const MiB = 1024 * 1024

/** A distributor in a process of its own, answering the fixture's line protocol. */
async function distributorProcess(
  options: object = {},
): Promise<{ port: number; ask: (line: string) => Promise<Record<string, number>> }> {
  const child = spawn(process.execPath, ['--expose-gc', DISTRIBUTOR_PROCESS, JSON.stringify(options)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  res.add(child, (c) => {
    c.stdin?.end()
    c.kill()
  })
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const read = async (): Promise<Record<string, number>> => {
    const { value, done } = await lines.next()
    if (done === true) throw new Error('the distributor process exited')
    return JSON.parse(value as string) as Record<string, number>
  }
  const { port } = await read()
  return {
    port: port as number,
    ask: (line) => {
      child.stdin.write(`${line}\n`)
      return read()
    },
  }
}

async function tempFile(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'jr-deadlines-'))
  res.add(dir, (p) => rm(p, { recursive: true, force: true }))
  return join(dir, name)
}

/** Lines a 'record' job wrote: one per run, `<id> <node>`. */
async function runsIn(file: string): Promise<{ id: string; node: string }[]> {
  const text = await readFile(file, 'utf8').catch(() => '')
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [id = '', node = ''] = l.split(' ')
      return { id, node }
    })
}

function header(length: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(length, 0)
  return b
}

describe('before the handshake', () => {
  it('200 strangers each declaring a 16 MiB frame are dropped at once, the distributor holds next to nothing for them, and a real node completes 2,000 jobs meanwhile', async () => {
    const d = await distributorProcess()
    spawnNode(res, ['--name', 'worker', '--distributor', `127.0.0.1:${d.port}`, '--jobs', FIXTURE_JOBS])
    // Warmed up first: what 2,000 jobs make the heap grow to is not what strangers cost.
    expect(await d.ask('run 2000 noop')).toEqual({ done: 2000 })
    const before = (await d.ask('rss'))['rss'] as number
    const finished = d.ask('run 2000 noop')
    const junk = Buffer.alloc(MiB, 0x61)
    const strangers = await Promise.all(
      Array.from({ length: 200 }, async () => {
        const peer = res.add(await FakePeer.connect(d.port), (p) => p.destroy())
        peer.socket.on('error', () => {})
        // What an attacker would send: a huge length, then as much of the body as it can.
        peer.sendRaw(header(16 * MiB))
        peer.sendRaw(junk)
        return peer
      }),
    )
    // Every one of them is dropped: none waits for its handshake timeout (10 s).
    await Promise.all(strangers.map((p) => p.closed))
    for (const p of strangers) {
      const error = p.received.find((m) => m.type === MessageType.ERROR)
      if (error !== undefined) expect(error).toMatchObject({ code: ErrorCode.FRAME_TOO_LARGE })
    }
    expect(await finished).toEqual({ done: 2000 })
    const after = (await d.ask('rss'))['rss'] as number
    const grew = after - before
    console.log(
      `distributor RSS: ${(before / MiB).toFixed(1)} MiB before, ${(after / MiB).toFixed(1)} MiB after (${(grew / MiB).toFixed(1)} MiB) with 200 strangers and 2,000 jobs`,
    )
    // The documented bound for what strangers can make a distributor hold with the default
    // limits (docs/architecture.md): maxHandshakeBytes (4 MiB) + maxConnections (1,024) × one
    // 64 KiB read buffer and its state, about 70 MiB. Before the limit, these 200
    // connections alone made it hold 200 MiB (the 1 MiB each had sent of its frame).
    expect(grew).toBeLessThan(4 * MiB + 1024 * 66 * 1024)
  })

  it('what connections in their handshake hold is capped as a whole (maxHandshakeBytes): past it, the newest are dropped', async () => {
    const d = await startDistributor(res, { maxHandshakeBytes: 1 * MiB, handshakeTimeoutMs: 60_000 })
    const body = HANDSHAKE_MAX_FRAME_SIZE - 1
    // Just under the frame limit and one byte short of whole: each holds 65,534 bytes (the
    // length prefix is read off), and 1 MiB holds 16 of them.
    const partial = Buffer.concat([header(body), Buffer.alloc(body - 1)])
    const peers: FakePeer[] = []
    for (let i = 0; i < 40; i++) {
      const peer = res.add(await FakePeer.connect(d.port), (p) => p.destroy())
      peer.socket.on('error', () => {})
      // Its challenge came: the bytes of the peers before it were read already (each sent
      // them before this one connected), so the budget is charged in this order.
      await peer.next()
      peer.sendRaw(partial)
      peers.push(peer)
    }
    await Promise.all(peers.slice(16).map((p) => p.closed))
    const errors = peers.slice(16).map((p) => p.received.find((m) => m.type === MessageType.ERROR))
    for (const error of errors)
      if (error !== undefined)
        expect(error).toMatchObject({
          code: ErrorCode.HANDSHAKE_REJECTED,
          message: expect.stringMatching(/maxHandshakeBytes/),
        })
    // The 16 that fit wait for their handshake timeout; once they go, the budget is free again.
    expect(peers.slice(0, 16).every((p) => p.isOpen)).toBe(true)
    for (const p of peers.slice(0, 16)) await p.destroy()
    await startNode(res, d, { name: 'after-the-flood' })
  })

  it('a hello above the handshake frame limit is refused before it is buffered whole', async () => {
    const d = await startDistributor(res)
    const peer = res.add(await FakePeer.connect(d.port), (p) => p.destroy())
    await peer.next() // challenge
    peer.sendRaw(header(HANDSHAKE_MAX_FRAME_SIZE + 1))
    const error = await peer.nextOfType(MessageType.ERROR)
    expect(error.code).toBe(ErrorCode.FRAME_TOO_LARGE)
    await peer.closed
  })

  it('a node whose job names do not fit in a handshake frame says so at start', async () => {
    const d = await startDistributor(res)
    const registry = new JobRegistry()
    for (let i = 0; i < 2000; i++) registry.define(`a-rather-long-job-name-number-${i}`, () => {})
    const node = new Node({ name: 'many-jobs', distributors: [`127.0.0.1:${d.port}`], registry }, config())
    await expect(node.start()).rejects.toThrow(/job names take \d+ bytes in its hello/)
    await node.close()
  })
})

describe('a node that never accepts', () => {
  async function muteNode(d: Distributor): Promise<FakePeer> {
    const peer = res.add(await FakePeer.connect(d.port), (p) => p.destroy())
    // It answers every ping: only the acceptance deadline can tell it is stuck.
    await peer.handshake({ node: 'mute', jobs: ['echo'], concurrency: 10, window: 10, durable: true })
    return peer
  }

  it("its jobs are taken back past acceptTimeoutMs and complete on another node; its late 'accepted' runs no second copy for good", async () => {
    const d = await startDistributor(res, { acceptTimeoutMs: 300, heartbeatMs: 100 })
    const mute = await muteNode(d)
    const unresponsive = d.waitFor('node:unresponsive')
    const handles = Array.from({ length: 5 }, (_, i) => d.enqueue('echo', { i }))
    const dispatch = await mute.nextOfType(MessageType.DISPATCH)
    expect(dispatch.jobs).toHaveLength(5)
    expect(await unresponsive).toEqual({ node: 'mute', jobs: 5 })
    expect(mute.isOpen).toBe(true)

    const ranOn: string[] = []
    d.on('job:success', (e) => ranOn.push(e.node))
    await startNode(res, d, { name: 'good' })
    const results = await Promise.all(handles.map((h) => h.done))
    expect(results.map((r) => r['i'])).toEqual([0, 1, 2, 3, 4])
    expect(ranOn).toEqual(['good', 'good', 'good', 'good', 'good'])

    // It stored them after all: each copy is cancelled there, none reported twice.
    mute.send({ type: MessageType.ACCEPTED, seq: dispatch.seq })
    const cancelled = new Set<string>()
    while (cancelled.size < 5) cancelled.add((await mute.nextOfType(MessageType.CANCEL)).id)
    expect([...cancelled].sort()).toEqual(handles.map((h) => h.id).sort())
    expect(ranOn).toHaveLength(5)
  })

  it("a late 'accepted' for jobs still waiting here makes them that node's again, and its feedback settles them", async () => {
    const d = await startDistributor(res, { acceptTimeoutMs: 200, heartbeatMs: 100 })
    const mute = await muteNode(d)
    const unresponsive = d.waitFor('node:unresponsive')
    const handles = Array.from({ length: 3 }, (_, i) => d.enqueue('echo', { i }))
    const dispatch = await mute.nextOfType(MessageType.DISPATCH)
    await unresponsive
    expect(d.pendingCount).toBe(3)

    const accepted: string[] = []
    d.on('job:accepted', (e) => accepted.push(`${e.id}@${e.node}`))
    mute.send({ type: MessageType.ACCEPTED, seq: dispatch.seq })
    await d.waitFor('job:accepted', () => accepted.length === 3)
    expect(accepted.sort()).toEqual(handles.map((h) => `${h.id}@mute`).sort())
    expect(d.pendingCount).toBe(0)
    // Answering again, it gets new work.
    const next = d.enqueue('echo', { i: 3 })
    const second = await mute.nextOfType(MessageType.DISPATCH)
    expect(second.jobs.map((j) => j.id)).toEqual([next.id])

    mute.send({
      type: MessageType.FEEDBACK,
      seq: 1,
      items: handles.map((h, i) => ({
        id: h.id,
        run: 1,
        kind: 'success',
        final: true,
        cancelled: false,
        args: { i, by: 'mute' },
      })),
    })
    expect((await Promise.all(handles.map((h) => h.done))).map((r) => r['by'])).toEqual(['mute', 'mute', 'mute'])
  })

  it('acceptTimeoutMs, maxHandshakeBytes, storeTimeoutMs and handshakeTimeoutMs are validated, naming the option', async () => {
    const defaults = { alwaysUseSpecifiedNode: false }
    expect(() => resolveDistributorOptions({ acceptTimeoutMs: 0 }, defaults)).toThrow(InvalidArgumentError)
    expect(() => resolveDistributorOptions({ acceptTimeoutMs: 'soon' }, defaults)).toThrow(/'acceptTimeoutMs'/)
    expect(() => resolveDistributorOptions({ maxHandshakeBytes: 1000 }, defaults)).toThrow(/'maxHandshakeBytes'/)
    expect(() => resolveNodeOptions({ name: 'n', storeTimeoutMs: -1 })).toThrow(/'storeTimeoutMs'/)
    expect(() => resolveNodeOptions({ name: 'n', handshakeTimeoutMs: 1.5 })).toThrow(/'handshakeTimeoutMs'/)
    const resolved = resolveDistributorOptions({}, defaults)
    expect(resolved.acceptTimeoutMs).toBe(10_000)
    expect(resolved.maxHandshakeBytes).toBe(4 * MiB)
    expect(resolveNodeOptions({ name: 'n' }).storeTimeoutMs).toBe(5_000)
  })
})

describe('a store that hangs', () => {
  it('redis-server stopped under 2,000 jobs: the memory node finishes the rest once the Redis node’s store deadline passes; the Redis node resumes after; no job is lost', async () => {
    const redis = await startRedisServer()
    res.add(redis, (r) => r.stop())
    const file = await tempFile('runs.log')
    // The acceptance deadline is far away: what moves the jobs is the store deadline.
    const d = await startDistributor(res, { acceptTimeoutMs: 120_000 })
    const rnode = await spawnConnectedNode(res, d, 'rnode', [
      '--storage',
      redis.url,
      '--store-timeout',
      '1000',
      '--concurrency',
      '20',
      '--window',
      '2000',
      '--log-level',
      'info',
    ])
    await startNode(res, d, { name: 'mem', concurrency: 20 })

    const acceptedByRedisNode = new Set<string>()
    let sentToRedisNode = 0
    d.on('job:accepted', (e) => {
      if (e.node === 'rnode') acceptedByRedisNode.add(e.id)
    })
    d.on('job:dispatch', (e) => {
      if (e.node === 'rnode') sentToRedisNode++
    })
    const done = new Set<string>()
    // Long jobs first, all accepted before Redis hangs: the Redis node still runs its share.
    const first = Array.from({ length: 200 }, (_, i) => d.enqueue('record', { i, file, ms: 200 }))
    await allAccepted(d, first)
    redis.pause()
    // Then the rest, while it hangs: what goes to the Redis node cannot be stored there.
    const handles = [
      ...first,
      ...Array.from({ length: 1800 }, (_, i) => d.enqueue('record', { i: 200 + i, file, ms: 2 })),
    ]
    const settled = (): boolean => handles.every((h) => done.has(h.id) || acceptedByRedisNode.has(h.id))
    let onSettled = (): void => {}
    for (const h of handles) {
      h.done.then(
        () => {
          done.add(h.id)
          if (settled()) onSettled()
        },
        () => {},
      )
    }

    // Past its store deadline the Redis node hands back what it was sending to the store,
    // and everything but what it had accepted before completes on 'mem' while Redis hangs.
    await rnode.waitForOutput(/store unavailable/)
    await new Promise<void>((resolve) => {
      onSettled = resolve
      if (settled()) resolve()
    })
    expect(sentToRedisNode).toBeGreaterThan(acceptedByRedisNode.size)
    const heldByRedisNode = handles.filter((h) => !done.has(h.id)).length
    expect(heldByRedisNode).toBeGreaterThan(0)
    expect(heldByRedisNode).toBeLessThanOrEqual(acceptedByRedisNode.size)

    redis.resume()
    const results = await Promise.all(handles.map((h) => h.done))
    expect(results.map((r) => r['i'])).toEqual(handles.map((_, i) => i))
    const runs = await runsIn(file)
    const ids = new Set(runs.map((r) => r.id))
    expect(ids.size).toBe(2000)
    // The saves that timed out were carried out when Redis woke, then undone: a restart of
    // the Redis node would not run the jobs it handed back a second time.
    await rnode.waitForOutput(/store reachable again/)
    const store = new RedisStore({ node: 'rnode', url: redis.url })
    await store.open()
    expect(await store.listUnfinished()).toEqual([])
    await store.close()
    const duplicates = runs.length - ids.size
    console.log(
      `hung Redis under 2,000 jobs: ${sentToRedisNode - acceptedByRedisNode.size} handed back by the Redis node, ${heldByRedisNode} waited for it, ${runs.filter((r) => r.node === 'mem').length} runs on mem, ${duplicates} duplicate runs (at-least-once)`,
    )
  }, 60_000)

  it('a periodic and a delayed job on a node whose Redis hangs keep their due times, and report once Redis answers', async () => {
    const redis = await startRedisServer()
    res.add(redis, (r) => r.stop())
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: `hung-${process.pid}`, storage: redis.url, storeTimeoutMs: 300 })
    const period = 0.2
    const runs: { run: number; dueAt: number; ranAt: number }[] = []
    const periodic = d.enqueue('stamp', {}, { period }, (args) => {
      runs.push({ run: args['run'] as number, dueAt: args['dueAt'] as number, ranAt: args['ranAt'] as number })
    })
    const enqueuedAt = Date.now()
    const delayed = d.enqueue('stamp', {}, { after: 0.6 })
    await d.waitFor('job:success', (e) => e.id === periodic.id)
    const firstDue = runs[0]?.dueAt as number

    const down = node.waitFor('store:down')
    redis.pause()
    expect((await down).error).toMatchObject({ code: ErrorCode.STORE_TIMEOUT })
    // Timers go on without the store: the delayed job starts when due. The periodic job's
    // next run waits until the end of the last one is stored.
    await node.waitFor('job:start', (e) => e.id === delayed.id)
    const reportedWhileDown = runs.length
    const lastRun = runs[runs.length - 1]?.run as number

    const up = node.waitFor('store:up')
    redis.resume()
    await up
    const result = await delayed.done
    expect(result['dueAt']).toBeGreaterThanOrEqual(enqueuedAt + 600)
    expect(result['ranAt']).toBeGreaterThanOrEqual(result['dueAt'] as number)
    await d.waitFor('job:success', (e) => e.id === periodic.id && e.run >= lastRun + 2)
    expect(runs.length).toBeGreaterThan(reportedWhileDown)
    // No drift: every run was due one period after the one before, the outage included.
    for (const r of runs) expect(r.dueAt).toBe(firstDue + Math.round((r.run - 1) * period * 1000))
    expect(await periodic.cancel()).toBe(true)
  }, 30_000)

  it('a Redis store closes on a hung server: QUIT is never answered, so the connection is dropped and close() resolves', async () => {
    const redis = await startRedisServer()
    res.add(redis, (r) => r.stop())
    const store = new RedisStore({ node: `closing-${process.pid}`, url: redis.url })
    await store.open()
    redis.pause()
    // Without a bound, close() waited for the server for as long as it hung, and the open
    // socket kept an application that embeds a node from exiting.
    await store.close()
    redis.resume()
  })

  it('a slow but healthy Redis (DEBUG SLEEP 2, twice) does not trip the default deadline', async () => {
    const redis = await startRedisServer()
    res.add(redis, (r) => r.stop())
    const d = await startDistributor(res)
    const node = await startNode(res, d, { name: `slow-${process.pid}`, storage: redis.url })
    let downs = 0
    node.on('store:down', () => downs++)
    const handles = Array.from({ length: 200 }, (_, i) => d.enqueue('echo', { i }))
    const sleeps = command(redis.port, 'DEBUG SLEEP 2', 5000).then(() => command(redis.port, 'DEBUG SLEEP 2', 5000))
    const more = Array.from({ length: 200 }, (_, i) => d.enqueue('echo', { i: 200 + i }))
    expect(await sleeps).toMatch(/OK/)
    const results = await Promise.all([...handles, ...more].map((h) => h.done))
    expect(results).toHaveLength(400)
    expect(downs).toBe(0)
  }, 30_000)
})

describe('a store that comes back', () => {
  /**
   * Redis, with the attempt-start write (status 'in progress') failing until `failStarts` is
   * cleared; the first one after that (the replay) waits in `replay` until the test lets it through.
   */
  class StartsFailFirst extends RedisStore {
    failStarts = true
    readonly replay = new FirstCallGate()
    override updateJob(id: string, patch: JobPatch): Promise<void> {
      if (patch.status !== JobStatus.IN_PROGRESS) return super.updateJob(id, patch)
      if (this.failStarts) return Promise.reject(new StoreError('store unavailable'))
      return this.replay.pass(() => super.updateJob(id, patch))
    }
  }

  it('a write made while the backlog is replayed waits behind it: a job that failed for good is not stored as in progress again, and a restart does not run it', async () => {
    const redis = await startRedisServer()
    res.add(redis, (r) => r.stop())
    const d = await startDistributor(res)
    const name = `replay-${process.pid}`
    let runs = 0
    let fail = (): void => {}
    const registry = new JobRegistry()
    registry.define('doomed', async () => {
      runs++
      await new Promise<void>((resolve) => (fail = resolve))
      throw new Error('doomed')
    })
    const store = new StartsFailFirst({ node: name, url: redis.url })
    const node = await startNode(res, d, { name, registry, storage: store })
    const down = node.waitFor('store:down')
    // Fails for good on its first attempt; removeFailedJobs is off by default: its record stays, 'failed'.
    const h = d.enqueue('doomed', {}, { maxAttempt: 1 })
    const failed = h.done.then(
      () => 'succeeded',
      () => 'failed',
    )
    await down
    // Its attempt-start write waits in the backlog; the store answers the next probe, and
    // the replay holds that write.
    store.failStarts = false
    const release = await store.replay.held()
    // The attempt ends meanwhile: its end must be written after its start.
    const ended = node.waitFor('job:failed', (e) => e.id === h.id)
    fail()
    await ended
    release()
    expect(await failed).toBe('failed')
    expect((await store.getJob(h.id))?.status).toBe(JobStatus.FAILED)
    await node.close()

    const again = new Node({ name, distributors: [`127.0.0.1:${d.port}`], registry, storage: redis.url }, config())
    res.add(again, (n) => n.close({ force: true }))
    const ready = again.waitFor('ready')
    await again.start()
    expect((await ready).resumed).toBe(0)
    expect(runs).toBe(1)
  }, 30_000)
})

describe('a store with much to read', () => {
  it('a durable node with 200,000 unfinished jobs resumes them all: a long listing that answers in pages is not a hung store', async () => {
    const redis = await startRedisServer()
    res.add(redis, (r) => r.stop())
    const name = `many-${process.pid}`
    const writer = new RedisStore({ node: name, url: redis.url })
    await writer.open()
    const count = 200_000
    const dueAt = Date.now() + 3_600_000
    const args = pack({ greeting: 'hello' })
    for (let from = 0; from < count; from += 10_000) {
      const jobs: JobRecord[] = []
      for (let i = from; i < from + 10_000; i++) {
        jobs.push({
          id: `job-${i}`,
          name: 'echo',
          args,
          status: JobStatus.NEW,
          attempt: 0,
          run: 1,
          dueAt,
          runDueAt: dueAt,
          defer: false,
          distributor: '127.0.0.1:1',
          createdAt: Date.now(),
        })
      }
      await writer.saveJobs(jobs)
    }
    await writer.close()

    // Read back in one command they kept Redis silent for longer than the deadline (here
    // 1 s; 600,000 jobs did the same to the default 5 s): a store that answers all along,
    // not a hung one.
    const d = await startDistributor(res)
    const node = new Node(
      {
        name,
        distributors: [`127.0.0.1:${d.port}`],
        jobDirectory: FIXTURE_JOBS,
        storage: redis.url,
        storeTimeoutMs: 1000,
      },
      config(),
    )
    res.add(node, (n) => n.close({ force: true }))
    const ready = node.waitFor('ready')
    await node.start()
    expect((await ready).resumed).toBe(count)
    expect(node.jobCount).toBe(count)
  }, 120_000)
})
