/**
 * Distributor groups (DESIGN.md, "Production topology", Guarantees 8): a member SIGKILLed
 * for good is adopted by another member of its group once its lease ran out, and the
 * adopter receives every result owed to the gone one: those of the jobs a Redis node holds
 * (the node's feedback re-routed by the `answers` message) and those of the jobs that
 * waited in the gone member's spool. Members are web-app child processes
 * (test/fixtures/web-app.js), nodes are jr-node processes, Redis is a real redis-server.
 */
import { Redis } from 'ioredis'
import { afterEach, describe, expect, it } from 'vitest'
import { Distributor } from '../../src/distributor/distributor.js'
import { ErrorCode } from '../../src/errors.js'
import { Membership, type MembershipContext } from '../../src/distributor/spool/membership.js'
import type { SpooledJob } from '../../src/distributor/spool/spooled-job.js'
import { MessageType } from '../../src/protocol/messages.js'
import type { Timer } from '../../src/scheduling/timer-heap.js'
import { memberKeys } from '../../src/storage/redis/group-keys.js'
import { GroupStore } from '../../src/storage/redis/group-store.js'
import { allAccepted, nodeArgs, Resources, spawnNode, startDistributor, startNode } from '../helpers/cluster.js'
import { spoolIds } from '../helpers/group-spool.js'
import { FirstCallGate } from '../helpers/gated-stores.js'
import { LogCapture } from '../helpers/log-capture.js'
import { connectPeer, expectClosedWithError } from '../helpers/peers.js'
import { freePort } from '../helpers/redis-server.js'
import { unique, useRedis } from '../helpers/shared-redis.js'
import { LATE_JOBS, WebApp } from '../helpers/web-app.js'
import { within } from '../helpers/within.js'

const res = new Resources()
afterEach(() => res.releaseAll())

const redis = useRedis()

/** The lease a crashed process left on `name`: held by a token of that name, renewed by nobody. */
async function crashedLease(group: string, name: string, ms: number): Promise<void> {
  const client = new Redis(redis.url)
  try {
    await client.set(memberKeys(group, name).lease, `${name}#crashed`, 'PX', ms)
  } finally {
    client.disconnect()
  }
}

/**
 * A member's place in its group as its distributor sees it, with the timers run by hand:
 * `watch()` fires the adoption round and resolves once it ended (the round re-arms itself),
 * and the spool's flush waits at `flushGate` the first time.
 */
class FakeMember implements MembershipContext {
  readonly logs = new LogCapture()
  readonly log = this.logs.logger
  readonly restored: { ids: string[]; from: string }[] = []
  readonly answered: string[] = []
  readonly adoptions: { member: string; jobs: number }[] = []
  readonly flushGate = new FirstCallGate()
  private readonly armed = new Map<Timer, number>()
  private onArm: ((timer: Timer) => void) | undefined

  constructor(
    readonly group: string,
    readonly name: string,
    private readonly leaseMs: number,
  ) {}

  advertise(): string {
    return '127.0.0.1:1'
  }
  after(timer: Timer, ms: number): void {
    this.armed.set(timer, ms)
    this.onArm?.(timer)
  }
  cancelTimer(timer: Timer): void {
    this.armed.delete(timer)
  }
  restore(jobs: SpooledJob[], from: string): void {
    this.restored.push({ ids: jobs.map((j) => j.id), from })
  }
  flush(): Promise<void> {
    return this.flushGate.pass(() => Promise.resolve())
  }
  answering(names: string[]): void {
    this.answered.push(...names)
  }
  adopted(member: string, jobs: number): void {
    this.adoptions.push({ member, jobs })
  }

  /** Runs one adoption round; the returned promise settles once the round re-armed its timer. */
  watch(): Promise<void> {
    const entry = [...this.armed].find(([, ms]) => ms === this.leaseMs)
    if (entry === undefined) throw new Error('the watch timer is not armed')
    const [timer] = entry
    this.armed.delete(timer)
    const ended = new Promise<void>((resolve) => {
      this.onArm = (armed) => {
        if (armed !== timer) return
        this.onArm = undefined
        resolve()
      }
    })
    timer.fire()
    return within(ended, 'the adoption round to end')
  }
}

const connected = (app: WebApp, node: string): boolean =>
  app.events.some((e) => e.event === 'node:connect' && e['node'] === node)

/** Starts members of `group` on the shared Redis, each a web-app process with handlers for `handlers`. */
function groupOf(group: string, handlers = ['noop']): (name: string, leaseMs?: number) => Promise<WebApp> {
  return (name, leaseMs = 1000) =>
    WebApp.start(res, { distributor: { group, name, storage: redis.url, leaseMs }, handlers })
}

/** jr-node arguments for a node `name` that keeps its jobs in the shared Redis and dials the members at `ports`. */
const redisNodeArgs = (name: string, ports: number[]): string[] => nodeArgs(name, ports, ['--storage', redis.url])

const adoptions = (app: WebApp) => app.events.filter((e) => e.event === 'member:adopted')

function untilAdopted(adopter: WebApp, gone: string): Promise<void> {
  return adopter.until(() => adoptions(adopter).some((e) => e.member === gone), `the adoption of ${gone}`)
}

/**
 * 100 jobs of `member`'s, due in a second, accepted by the Redis node `keeper`, which is then
 * SIGKILLed: the jobs wait in Redis under its name until it is started again.
 */
async function heldByKilledRedisNode(member: WebApp, keeper: string): Promise<void> {
  const node = spawnNode(res, redisNodeArgs(keeper, [member.port]))
  await member.until(() => connected(member, keeper), 'the Redis node to connect')
  member.enqueue({ count: 100, name: 'noop', opts: { after: 1 } })
  await member.until(
    () => member.accepted.size === 100,
    '100 jobs accepted by the Redis node',
    () => member.accepted.size,
  )
  node.child.kill('SIGKILL')
  await node.exited
}

/**
 * Members a and b of a new group; a's 100 jobs held by the Redis node `keeper`, SIGKILLed;
 * then a SIGKILLed too, and adopted by b.
 */
async function adoptedWhileRedisNodeDown(group: string) {
  const member = groupOf(group)
  const a = await member('a')
  const b = await member('b')
  const keeper = unique('keeper')
  await heldByKilledRedisNode(a, keeper)
  await a.kill()
  await untilAdopted(b, 'a')
  return { member, a, b, keeper }
}

/** Waits for a result of each job `gone` enqueued, at `adopter`, each through a handler there and run by `node`. */
async function expectResultsAt(adopter: WebApp, gone: WebApp, node: string): Promise<void> {
  const count = gone.enqueued.length
  await adopter.until(
    () => adopter.resultIds().size >= count,
    `the ${count} results`,
    () => adopter.resultIds().size,
  )
  expect(adopter.resultIds()).toEqual(new Set(gone.enqueued))
  expect(adopter.results.every((r) => r.via === 'handler' && r.node === node)).toBe(true)
}

describe('a member of a group gone for good', () => {
  it('is adopted once its lease ran out: the adopter receives the results of its 300 jobs on a Redis node and of the 200 waiting in its spool', async () => {
    const member = groupOf(unique('adopt'), ['noop', 'late'])
    const a = await member('a')
    const b = await member('b')
    const keeper = unique('keeper')
    spawnNode(res, redisNodeArgs(keeper, [a.port, b.port]))
    await a.until(() => connected(a, keeper), 'the Redis node to connect to a')
    await b.until(() => connected(b, keeper), 'the Redis node to connect to b')

    // 300 jobs the Redis node holds (due in 2 s: after a is gone), then 200 that no
    // connected node knows: they wait in a's spool.
    a.enqueue({ count: 300, name: 'noop', opts: { after: 2 } })
    await a.until(
      () => a.accepted.size === 300,
      '300 jobs accepted by the Redis node',
      () => a.accepted.size,
    )
    a.enqueue({ count: 200, name: 'late' })
    await a.until(
      () => a.persisted.size === 500,
      'all 500 jobs persisted',
      () => a.persisted.size,
    )
    expect(a.enqueued.length).toBe(500)
    expect(a.results).toEqual([])
    await a.kill()

    await untilAdopted(b, 'a')
    // The spool held only the waiting jobs: the Redis node owned the others.
    expect(adoptions(b)).toEqual([{ event: 'member:adopted', member: 'a', jobs: 200 }])
    const late = unique('late')
    spawnNode(res, ['--name', late, '--distributor', `127.0.0.1:${b.port}`, '--jobs', LATE_JOBS])
    await b.until(
      () => b.resultIds().size >= 500,
      'all 500 results at b',
      () => b.resultIds().size,
    )
    expect(b.resultIds()).toEqual(new Set(a.enqueued))
    const byName = (name: string) => b.results.filter((r) => r.name === name)
    expect(new Set(byName('noop').map((r) => r.result))).toEqual(new Set(a.enqueued.slice(0, 300)))
    expect(byName('noop').every((r) => r.node === keeper)).toBe(true)
    expect(new Set(byName('late').map((r) => r.result))).toEqual(new Set(a.enqueued.slice(300)))
    expect(byName('late').every((r) => r.node === late)).toBe(true)
    expect(b.results.every((r) => r.via === 'handler' && r.kind === 'success')).toBe(true)
    expect(b.events.filter((e) => e.event === 'feedback:orphan')).toEqual([])
  })

  it("a Redis node that was down meanwhile delivers the gone member's results to the adopter it meets at start (the welcome says whom it answers for)", async () => {
    const { a, b, keeper } = await adoptedWhileRedisNodeDown(unique('welcome'))

    // Started again, it resumes the 100 jobs and knows of b only.
    spawnNode(res, redisNodeArgs(keeper, [b.port]))
    await expectResultsAt(b, a, keeper)
  })

  it('the jobs a memory node held for it stay in its spool: the adopter dispatches them again and receives their results', async () => {
    const member = groupOf(unique('adopt-memory'))
    const a = await member('a')
    const b = await member('b')
    const worker = unique('memory')
    spawnNode(res, nodeArgs(worker, [a.port, b.port]))
    await a.until(() => connected(a, worker), 'the memory node to connect to a')
    await b.until(() => connected(b, worker), 'the memory node to connect to b')
    a.enqueue({ count: 100, name: 'noop', opts: { after: 1 } })
    await a.until(
      () => a.accepted.size === 100 && a.persisted.size === 100,
      '100 jobs accepted by the memory node and persisted',
    )
    await a.kill()
    await untilAdopted(b, 'a')
    expect(adoptions(b)).toEqual([{ event: 'member:adopted', member: 'a', jobs: 100 }])
    await expectResultsAt(b, a, worker)
  })

  it("adoptions chain: once c adopted b, which had adopted a, a Redis node delivers a's results to c", async () => {
    // The node keeps the jobs in Redis, and their results, until it meets whoever answers for a.
    const { member, a, b, keeper } = await adoptedWhileRedisNodeDown(unique('chain'))
    const c = await member('c')
    await b.kill()
    await untilAdopted(c, 'b')

    spawnNode(res, redisNodeArgs(keeper, [c.port]))
    await expectResultsAt(c, a, keeper)
  })

  it('a member that closes (a rolling deploy) gives its name up: another member adopts its spool without waiting out its lease', async () => {
    const member = groupOf(unique('deploy'))
    // A lease far longer than the test: only a lease given up lets b adopt in time.
    const a = await member('a', 120_000)
    const b = await member('b')
    a.enqueue({ count: 100, name: 'noop' })
    await a.until(
      () => a.persisted.size === 100,
      '100 jobs persisted',
      () => a.persisted.size,
    )
    await a.end()
    await untilAdopted(b, 'a')
    expect(adoptions(b)).toEqual([{ event: 'member:adopted', member: 'a', jobs: 100 }])
    const worker = unique('worker')
    spawnNode(res, nodeArgs(worker, [b.port]))
    await expectResultsAt(b, a, worker)
  })
})

describe('an adoption that outlasts the lease it took on the gone member', () => {
  it("leaves alone what the gone member's name holds by then: the spool and the registry entry of a process started again under that name", async () => {
    const group = unique('slow-adopt')
    const options = { group, name: 'x', storage: redis.url, leaseMs: 1000 }
    // x spools three jobs and closes (a rolling deploy): its name is free at once.
    const first = await startDistributor(res, options)
    const handed = [first.enqueue('noop'), first.enqueue('noop'), first.enqueue('noop')]
    await within(Promise.all(handed.map((h) => h.persisted)), 'three jobs persisted')
    await first.close()

    // Member a adopts x; its flush of x's jobs into its own spool is slow (Redis busy, the
    // process starved), so slow that its lease on x runs out meanwhile.
    const store = res.add(new GroupStore(redis.url, group), (s) => s.close())
    await store.connect()
    const ctx = new FakeMember(group, 'a', 60_000)
    const a = new Membership(ctx, store, 60_000)
    await a.join()
    a.start()
    res.add(a, (m) => m.leave())
    const round = ctx.watch()
    const release = await within(ctx.flushGate.held(), 'the adoption to flush')
    // Jobs due at the same instant come back in the hash's order.
    expect(ctx.restored.map((r) => ({ ids: [...r.ids].sort(), from: r.from }))).toEqual([
      { ids: handed.map((h) => h.id).sort(), from: 'x' },
    ])
    const client = new Redis(redis.url)
    try {
      // The lease a took on x runs out (as it would after leaseMs).
      await client.del(memberKeys(group, 'x').lease)
    } finally {
      client.disconnect()
    }

    // x starts again (the next pod): it takes its free name, resumes its spool and spools a new job.
    const second = await startDistributor(res, options)
    expect(second.activeCount).toBe(3)
    const fresh = second.enqueue('noop')
    await within(fresh.persisted, 'the new job persisted')
    const held = new Set([...handed.map((h) => h.id), fresh.id])
    expect(await spoolIds(redis.url, group, 'x')).toEqual(held)

    release()
    await round
    // What x's spool holds is x's again: a deleting it would lose the new job (persisted)
    // the moment x goes down; nor does a answer for a live x.
    expect(await spoolIds(redis.url, group, 'x')).toEqual(held)
    expect([...(await store.members()).keys()].sort()).toEqual(['a', 'x'])
    expect(ctx.answered).toEqual([])
    expect(ctx.adoptions).toEqual([])
    expect(a.answersFor).toEqual([])
    expect(ctx.logs.matching((e) => /lease on a gone member ran out while adopting/.test(e.msg))).toHaveLength(1)
  })
})

describe('a process that claims a name', () => {
  it('started again after a crash, it welcomes a node only once it holds its name', async () => {
    const group = unique('welcome-wait')
    await crashedLease(group, 'web-1', 1500)
    const log = new LogCapture()
    const options = { port: 0, group, name: 'web-1', storage: redis.url, leaseMs: 1500, logger: log.logger }
    const d = res.add(new Distributor(options), (x) => x.close())
    const started = d.start()
    // Listening, and waiting out the lease.
    await log.waitFor((e) => /lease is still held/.test(e.msg))
    const peer = await connectPeer(res, d.port)
    peer.sendMessage(peer.hello(await peer.nextOfType(MessageType.CHALLENGE), { node: 'n1' }))
    const welcome = peer.nextOfType(MessageType.WELCOME, 10_000)
    const first = await Promise.race([welcome.then(() => 'welcome'), started.then(() => 'started')])
    expect(first).toBe('started')
    expect(await welcome).toMatchObject({ group, name: 'web-1' })
  })

  it('a hello that waits longer than handshakeTimeoutMs for the name is dropped, and the node redials', async () => {
    const group = unique('welcome-late')
    await crashedLease(group, 'web-1', 1500)
    const log = new LogCapture()
    const options = { group, name: 'web-1', storage: redis.url, leaseMs: 1500, handshakeTimeoutMs: 200 }
    const d = res.add(new Distributor({ ...options, port: 0, logger: log.logger }), (x) => x.close())
    const started = d.start()
    await log.waitFor((e) => /lease is still held/.test(e.msg))
    const peer = await connectPeer(res, d.port)
    peer.sendMessage(peer.hello(await peer.nextOfType(MessageType.CHALLENGE), { node: 'n1' }))
    const error = await expectClosedWithError(peer, ErrorCode.HANDSHAKE_TIMEOUT)
    expect(error.message).toMatch(/still taking its name/)
    await started
    await startNode(res, d, { name: unique('worker') })
  })

  it("under the name of a live member, it takes none of that member's results while it finds out, and the nodes deliver them to the live member after it gave up", async () => {
    const otherPort = await freePort()
    const options = { group: unique('impostor'), name: 'web-1', storage: redis.url, leaseMs: 6000 }
    const live = await startDistributor(res, options)
    // The node dials both addresses from the start, and redials fast.
    await startNode(res, live, {
      name: unique('worker'),
      distributors: [`127.0.0.1:${live.port}`, `127.0.0.1:${otherPort}`],
      reconnectMinMs: 20,
      reconnectMaxMs: 50,
    })
    // Its result comes while the second process waits to see whether the name's holder is alive.
    const early = live.enqueue('noop', { early: true }, { after: 0.5 })
    await allAccepted(live, [early])
    const second = res.add(new Distributor({ ...options, port: otherPort, heartbeatMs: 1000 }), (d) => d.close())
    const strays: string[] = []
    second.on('feedback:orphan', (e) => strays.push(e.id))
    await expect(second.start()).rejects.toMatchObject({ code: ErrorCode.NAME_TAKEN })
    await within(early.done, 'the result of the job enqueued before')
    const late = live.enqueue('noop', { late: true })
    await within(late.done, 'the result of a job enqueued after')
    expect(strays).toEqual([])
  })
})
