/**
 * The distributor's durable spool (DESIGN.md, Guarantees 8): a job whose `persisted`
 * resolved survives a SIGKILL of the web app, and the web app started again with the same
 * group and name (at any address) runs it and receives its results through the named
 * handlers. The web app is a real child process (test/fixtures/web-app.js), the nodes are
 * real jr-node processes, Redis is a real redis-server.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Distributor } from '../../src/distributor/distributor.js'
import { ErrorCode, InvalidArgumentError } from '../../src/errors.js'
import { allAccepted, nodeArgs, Resources, spawnNode, startDistributor, startNode } from '../helpers/cluster.js'
import { spoolIds } from '../helpers/group-spool.js'
import { LogCapture } from '../helpers/log-capture.js'
import { freePort, type RedisServer, startRedisServer } from '../helpers/redis-server.js'
import { unique, useRedis } from '../helpers/shared-redis.js'
import { LATE_JOBS, WebApp } from '../helpers/web-app.js'
import { within } from '../helpers/within.js'

const res = new Resources()
afterEach(() => res.releaseAll())

const redis = useRedis()

/** Where a promise stands, once the callbacks already due have run. */
function state(promise: Promise<unknown>): Promise<'pending' | 'resolved' | 'rejected'> {
  return Promise.race([
    promise.then(
      () => 'resolved' as const,
      () => 'rejected' as const,
    ),
    new Promise<'pending'>((resolve) => setImmediate(() => resolve('pending'))),
  ])
}

const codeOf = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => 'resolved',
    (err: { code?: unknown }) => err.code,
  )

const missingFrom = (expected: Iterable<string>, got: Set<string>): string[] =>
  [...expected].filter((id) => !got.has(id))

describe('a web app killed and started again with the same name', () => {
  it('SIGKILLed with 1,000 persisted jobs and no node: started again, all 1,000 run and the named handler receives each result', async () => {
    const config = {
      distributor: { group: unique('restart'), name: 'web-1', storage: redis.url, leaseMs: 1000 },
      handlers: ['noop'],
    }
    const first = await WebApp.start(res, config)
    first.enqueue({ count: 1000, name: 'noop' })
    await first.until(
      () => first.persisted.size === 1000,
      '1,000 jobs persisted',
      () => first.persisted.size,
    )
    const ids = new Set(first.enqueued)
    expect(ids.size).toBe(1000)
    expect(first.results).toEqual([])
    await first.kill()

    // Resolves once the new process printed its port: its start waited out the dead
    // predecessor's lease and read the spool back.
    const second = await WebApp.start(res, config)
    expect((await second.status()).active).toBe(1000)
    spawnNode(res, nodeArgs(unique('worker'), [second.port]))
    await second.until(
      () => second.resultIds().size >= 1000,
      '1,000 distinct results',
      () => second.resultIds().size,
    )
    expect(second.resultIds()).toEqual(ids)
    expect(second.results.every((r) => r.via === 'handler' && r.kind === 'success' && r.name === 'noop')).toBe(true)
  })

  it('persisted waits while Redis hangs and resolves once it answers; what it reported is in the spool, and a restart resumes it', async () => {
    const own = res.add(await startRedisServer(), (r) => r.stop())
    const group = unique('outage')
    const config = {
      distributor: { group, name: 'web-1', storage: own.url, leaseMs: 1000, storeTimeoutMs: 200 },
      handlers: ['noop'],
    }
    const app = await WebApp.start(res, config)
    own.pause()
    app.enqueue({ count: 200, name: 'noop' })
    await app.until(
      () => app.enqueued.length === 200 && app.events.some((e) => e.event === 'spool:down'),
      'the spool to report its writes failing',
    )
    expect((await app.status()).persisted).toBe(0)
    expect(app.persisted.size).toBe(0)

    own.resume()
    await app.until(
      () => app.persisted.size === 200 && app.events.some((e) => e.event === 'spool:up'),
      'every job persisted once Redis answers',
      () => app.persisted.size,
    )
    expect(app.persisted).toEqual(new Set(app.enqueued))
    expect(await spoolIds(own.url, group, 'web-1')).toEqual(app.persisted)

    await app.kill()
    const again = await WebApp.start(res, config)
    expect(await again.status()).toMatchObject({ active: 200, pending: 200 })
    spawnNode(res, nodeArgs(unique('worker'), [again.port]))
    await again.until(
      () => again.resultIds().size >= 200,
      '200 distinct results',
      () => again.resultIds().size,
    )
    expect(again.resultIds()).toEqual(app.persisted)
  })

  it('Redis SIGKILLed (append-only file) and started again, then the web app SIGKILLed: every job reported persisted runs', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jr-spool-aof-'))
    res.add(dir, (p) => rm(p, { recursive: true, force: true }))
    let own = await startRedisServer({ appendonly: true, dir })
    res.add(null, () => own.stop())
    const config = {
      distributor: { group: unique('aof'), name: 'web-1', storage: own.url, leaseMs: 1000, storeTimeoutMs: 500 },
      handlers: ['noop'],
    }
    const app = await WebApp.start(res, config)
    app.enqueue({ count: 200, name: 'noop' })
    await app.until(() => app.persisted.size === 200, '200 jobs persisted')
    await own.kill('SIGKILL')
    app.enqueue({ count: 100, name: 'noop' })
    await app.until(
      () => app.enqueued.length === 300 && app.events.some((e) => e.event === 'spool:down'),
      'the spool to report its writes failing',
    )
    expect((await app.status()).persisted).toBe(200)
    own = await startRedisServer({ appendonly: true, dir, port: own.port })
    await app.until(
      () => app.persisted.size === 300,
      'the 100 written once Redis is back',
      () => app.persisted.size,
    )
    await app.kill()

    const again = await WebApp.start(res, config)
    expect(await again.status()).toMatchObject({ active: 300 })
    spawnNode(res, nodeArgs(unique('worker'), [again.port]))
    await again.until(
      () => again.resultIds().size >= 300,
      '300 results',
      () => again.resultIds().size,
    )
    expect(again.resultIds()).toEqual(new Set(app.enqueued))
  })

  it('a job cancelled after the restart stays cancelled across the next one, and new jobs take ids of their own', async () => {
    const config = {
      distributor: { group: unique('cancel'), name: 'web-1', storage: redis.url, leaseMs: 1000 },
      handlers: ['late'],
    }
    const first = await WebApp.start(res, config)
    first.enqueue({ count: 10, name: 'late' })
    await first.until(() => first.persisted.size === 10, '10 jobs persisted')
    await first.kill()

    const second = await WebApp.start(res, config)
    const [kept, dropped] = [first.enqueued.slice(0, 5), first.enqueued.slice(5)]
    for (const id of dropped) expect(await second.cancel(id)).toBe(true)
    // Spool writes land in order: once this job is persisted, so are the cancels.
    second.enqueue({ count: 1, name: 'late' })
    await second.until(() => second.persisted.size === 1, 'the new job persisted')
    const added = second.enqueued[0] as string
    expect(first.enqueued).not.toContain(added)
    expect(await second.status()).toMatchObject({ active: 6, pending: 6 })
    await second.kill()

    const third = await WebApp.start(res, config)
    expect(await third.status()).toMatchObject({ active: 6, pending: 6 })
    spawnNode(res, ['--name', unique('late'), '--distributor', `127.0.0.1:${third.port}`, '--jobs', LATE_JOBS])
    await third.until(
      () => third.resultIds().size >= 6,
      '6 results',
      () => third.resultIds().size,
    )
    expect(third.resultIds()).toEqual(new Set([...kept, added]))
  })

  it('a periodic job goes on from the run its spool record holds', async () => {
    const config = {
      distributor: { group: unique('periodic'), name: 'web-1', storage: redis.url, leaseMs: 1000 },
      handlers: ['stamp'],
    }
    const first = await WebApp.start(res, config)
    const node = unique('worker')
    spawnNode(res, nodeArgs(node, [first.port]))
    await first.until(() => first.events.some((e) => e.event === 'node:connect'), 'the node to connect')
    first.enqueue({ count: 1, name: 'stamp', opts: { period: 0.2 } })
    await first.until(() => first.results.length >= 3, '3 runs')
    await first.kill()
    const runs = first.results.map((r) => r.run)
    expect(runs.slice(0, 3)).toEqual([1, 2, 3])
    const last = Math.max(...(runs as number[]))

    const second = await WebApp.start(res, config)
    spawnNode(res, nodeArgs(unique('worker'), [second.port]))
    await second.until(() => second.results.length >= 2, '2 runs after the restart')
    const [next, after] = second.results
    expect(next?.result).toBe(first.enqueued[0])
    // At-least-once: the last run before the kill may run again, none before it. Runs whose
    // time passed while no distributor listened are skipped, not made up.
    expect(next?.run).toBeGreaterThanOrEqual(last)
    expect(after?.run).toBeGreaterThan(next?.run as number)
    expect(second.results.every((r) => r.via === 'handler' && r.final === false)).toBe(true)
  })

  it('SIGKILLed in the middle of a burst of 2,000 jobs over a memory node and a Redis node, back at another port: every persisted job reaches a closure or the handler', async () => {
    const group = unique('burst')
    const otherPort = await freePort()
    const distributor = { group, name: 'web-1', storage: redis.url, leaseMs: 1000 }
    const first = await WebApp.start(res, { distributor, handlers: ['slow'] })
    // Both ports from the start: the nodes find the web app again when it comes back there.
    const ports = [first.port, otherPort]
    const memoryNode = unique('mem')
    const redisNode = unique('durable')
    spawnNode(res, nodeArgs(memoryNode, ports, ['--concurrency', '10']))
    spawnNode(res, nodeArgs(redisNode, ports, ['--concurrency', '10', '--storage', redis.url]))
    await first.until(
      () => first.events.filter((e) => e.event === 'node:connect').length === 2,
      'both nodes to connect',
    )
    // A burst of requests: 25 jobs every 5 ms, each running 20 ms on 20 slots in all.
    first.enqueue({ count: 2000, name: 'slow', args: { ms: 20 }, chunk: 25, everyMs: 5 })
    await first.until(
      () => first.results.length >= 300,
      '300 results',
      () => first.results.length,
    )
    await first.kill()
    const persisted = new Set(first.persisted)
    const closures = first.resultIds('closure')
    const ranOn = new Set(first.results.map((r) => r.node))

    const second = await WebApp.start(res, { distributor: { ...distributor, port: otherPort }, handlers: ['slow'] })
    expect(second.port).toBe(otherPort)
    const reached = (): Set<string> => new Set([...closures, ...second.resultIds('handler')])
    await second.until(
      () => missingFrom(persisted, reached()).length === 0,
      'every persisted job to reach a closure or the handler',
      () => `(missing ${missingFrom(persisted, reached()).length} of ${persisted.size})`,
    )
    const counts = new Map<string, number>()
    for (const r of [...first.results, ...second.results]) counts.set(r.result, (counts.get(r.result) ?? 0) + 1)
    const duplicates = [...counts.values()].filter((n) => n > 1).length
    console.log(
      `burst of 2,000: ${first.enqueued.length} enqueued and ${persisted.size} persisted before the kill, ` +
        `${closures.size} closures before it, ${second.resultIds('handler').size} handler results after; ` +
        `${duplicates} jobs reported more than once`,
    )
    expect(missingFrom(persisted, reached())).toEqual([])
    // Both nodes took part before the kill, and the results after it came through the handler.
    expect(ranOn).toEqual(new Set([memoryNode, redisNode]))
    expect(second.results.every((r) => r.via === 'handler')).toBe(true)
  })
})

describe('options', () => {
  it.each([
    [{ group: 'a/b' }, 'group'],
    [{ group: '' }, 'group'],
    [{ group: 'x{y}' }, 'group'],
    [{ name: 'a/b' }, 'name'],
    [{ name: '' }, 'name'],
    [{ name: 'x{y}' }, 'name'],
    [{ storage: 'redis://127.0.0.1:99999' }, 'storage'],
    [{ storage: 'redis://' }, 'storage'],
    [{ storage: 'redis://h1:1,h2:2' }, 'storage'],
    [{ storage: 'mongodb://127.0.0.1' }, 'storage'],
    [{ storage: 'localhost:6379' }, 'storage'],
    [{ storage: 42 }, 'storage'],
  ])('%j is refused with InvalidArgumentError naming %s', (options, field) => {
    let error: unknown
    try {
      new Distributor({ port: 0, ...(options as object) })
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(InvalidArgumentError)
    expect((error as InvalidArgumentError).code).toBe(ErrorCode.INVALID_ARG)
    // A storage URL that does not parse says so as `storage url "…" has …`.
    expect((error as Error).message).toMatch(new RegExp(`'${field}'|^${field} url`))
  })

  it('a second live member claiming the same name: its start() rejects with ERR_NAME_TAKEN, and the first keeps it', async () => {
    const options = { port: 0, group: unique('taken'), name: 'web-1', storage: redis.url, leaseMs: 300 }
    const first = await startDistributor(res, options)
    const second = res.add(new Distributor(options), (d) => d.close())
    await expect(second.start()).rejects.toMatchObject({ code: ErrorCode.NAME_TAKEN })
    expect(second.listening).toBe(false)
    // The first one still holds the name and its spool: a job enqueued there still runs.
    const handle = first.enqueue('noop', {})
    await handle.persisted
    await startNode(res, first, { name: unique('worker') })
    await within(handle.done, 'the job of the member that kept its name')
  })
})

describe('jobs enqueued before start()', () => {
  it('are written once the member holds its name, and run', async () => {
    const d = res.add(
      new Distributor({ port: 0, group: unique('early'), name: 'web-1', storage: redis.url, leaseMs: 1000 }),
      (x) => x.close(),
    )
    const downs: unknown[] = []
    d.on('spool:down', (e) => downs.push(e.error))
    const handle = d.enqueue('noop', {})
    await d.start()
    await within(handle.persisted, 'the job persisted')
    await startNode(res, d, { name: unique('worker') })
    await within(handle.done, 'the job to run')
    expect(downs).toEqual([])
  })

  it("under a live member's name: never written to that member's spool nor reported persisted, and close() fails them", async () => {
    const group = unique('early-taken')
    const options = { port: 0, group, name: 'web-1', storage: redis.url, leaseMs: 300 }
    await startDistributor(res, options)
    const second = res.add(new Distributor(options), (x) => x.close())
    const errors: string[] = []
    const handle = second.enqueue('noop', {}, {}, undefined, (args) => {
      errors.push((args['error'] as { code: string }).code)
    })
    await expect(second.start()).rejects.toMatchObject({ code: ErrorCode.NAME_TAKEN })
    await second.close()
    expect(await codeOf(handle.persisted)).toBe(ErrorCode.DISTRIBUTOR_CLOSED)
    expect(await codeOf(handle.done)).toBe(ErrorCode.DISTRIBUTOR_CLOSED)
    expect(errors).toEqual([ErrorCode.DISTRIBUTOR_CLOSED])
    expect(await spoolIds(redis.url, group, 'web-1')).toEqual(new Set())
  })
})

describe('close() with a spool', () => {
  it('hands every job over: done rejects with ERR_HANDED_OVER, no closure runs, and a restart with the name resumes them at once', async () => {
    const log = new LogCapture()
    const options = { port: 0, group: unique('handover'), name: 'web-1', storage: redis.url, leaseMs: 30_000 }
    const first = res.add(new Distributor({ ...options, logger: log.logger }), (d) => d.close())
    await first.start()
    const closures: string[] = []
    const handles = Array.from({ length: 50 }, (_, i) =>
      first.enqueue(
        'noop',
        { i },
        {},
        () => void closures.push(`success ${i}`),
        () => void closures.push(`error ${i}`),
      ),
    )
    await Promise.all(handles.map((h) => h.persisted))
    const outcomes = Promise.all(handles.map((h) => codeOf(h.done)))
    await first.close()
    expect(new Set(await outcomes)).toEqual(new Set([ErrorCode.HANDED_OVER]))
    expect(closures).toEqual([])

    const restartLog = new LogCapture()
    const second = res.add(new Distributor({ ...options, logger: restartLog.logger }), (d) => d.close())
    const results = new Set<string>()
    let allIn: () => void
    const delivered = new Promise<void>((resolve) => {
      allIn = resolve
    })
    second.onFeedback('noop', {
      success(_args, info) {
        results.add(info.id)
        if (results.size === handles.length) allIn()
      },
    })
    await second.start()
    // The name was given up: the restart took it without waiting out the 30 s lease.
    expect(restartLog.matching((e) => /lease is still held/.test(e.msg))).toEqual([])
    expect(second.activeCount).toBe(50)
    await startNode(res, second, { name: unique('worker') })
    await within(delivered, '50 results through the handler', 10_000)
    expect(results).toEqual(new Set(handles.map((h) => h.id)))
    expect(closures).toEqual([])
  })
})

describe('a hung Redis (every wait is bounded)', () => {
  /** A member, not started yet, on a redis-server of its own to pause; store waits are bounded at 200 ms. */
  async function memberOnOwnRedis(): Promise<{ own: RedisServer; d: Distributor }> {
    const own = res.add(await startRedisServer(), (r) => r.stop())
    const d = res.add(
      new Distributor({
        port: 0,
        group: unique('hung'),
        name: 'web-1',
        storage: own.url,
        leaseMs: 500,
        storeTimeoutMs: 200,
      }),
      (x) => x.close(),
    )
    return { own, d }
  }

  it('close() settles while Redis hangs', async () => {
    const { own, d } = await memberOnOwnRedis()
    await d.start()
    const handle = d.enqueue('noop', {})
    await handle.persisted
    own.pause()
    await within(d.close(), 'close() while Redis hangs', 10_000)
    expect(await codeOf(handle.done)).toBe(ErrorCode.HANDED_OVER)
  })

  it('close() while the spool cannot be written: a job whose record never reached Redis is not reported persisted', async () => {
    const { own, d } = await memberOnOwnRedis()
    await d.start()
    const written = d.enqueue('noop', {})
    await written.persisted
    own.pause()
    const down = d.waitFor('spool:down')
    const unwritten = d.enqueue('noop', {})
    await down
    expect(await state(unwritten.persisted)).toBe('pending')
    await within(d.close(), 'close() while Redis hangs', 10_000)
    expect(await codeOf(unwritten.persisted)).toBe(ErrorCode.DISTRIBUTOR_CLOSED)
    expect(await codeOf(unwritten.done)).toBe(ErrorCode.HANDED_OVER)
    expect(await codeOf(written.done)).toBe(ErrorCode.HANDED_OVER)
  })

  it('start() fails while Redis hangs', async () => {
    const { own, d } = await memberOnOwnRedis()
    own.pause()
    await expect(within(d.start(), 'start() while Redis hangs', 10_000)).rejects.toMatchObject({
      code: ErrorCode.STORE,
    })
    expect(d.listening).toBe(false)
  })
})

describe('persisted without a spool', () => {
  it('resolves once a durable (Redis) node accepted the job, before the job ends', async () => {
    const d = await startDistributor(res)
    const handle = d.enqueue('noop', {}, { after: 30 })
    await new Promise((resolve) => setImmediate(resolve))
    expect(await state(handle.persisted)).toBe('pending')
    const accepted = allAccepted(d, [handle])
    await startNode(res, d, { name: unique('durable'), storage: redis.url })
    await accepted
    expect(await state(handle.persisted)).toBe('resolved')
    expect(await state(handle.done)).toBe('pending')
  })

  it('with only a memory node it stays pending while the node holds the job, and resolves when the job ends', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: unique('memory') })
    const handle = d.enqueue('noop', {}, { after: 1 })
    await allAccepted(d, [handle])
    expect(await state(handle.persisted)).toBe('pending')
    await within(handle.done, 'the job to end')
    expect(await state(handle.persisted)).toBe('resolved')
  })

  it('close() before either rejects it with ERR_DISTRIBUTOR_CLOSED, held by a memory node or waiting for one', async () => {
    const d = res.add(new Distributor({ port: 0 }), (x) => x.close())
    await d.start()
    await startNode(res, d, { name: unique('memory') })
    const held = d.enqueue('noop', {}, { after: 30 })
    const waiting = d.enqueue('late', {})
    await allAccepted(d, [held])
    expect(await state(held.persisted)).toBe('pending')
    expect(await state(waiting.persisted)).toBe('pending')
    await d.close()
    expect(await codeOf(held.persisted)).toBe(ErrorCode.DISTRIBUTOR_CLOSED)
    expect(await codeOf(waiting.persisted)).toBe(ErrorCode.DISTRIBUTOR_CLOSED)
  })
})
