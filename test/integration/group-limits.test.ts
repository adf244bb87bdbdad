/**
 * Limits across a distributor group (issue 20, DESIGN.md "Scheduling and flow control"):
 * with a Redis spool a limit holds for the group's members together, not per member. Slots
 * are a semaphore in Redis whose holders are dropped once their lease runs out, so the slots
 * of a member SIGKILLed while holding them come back; a rate is a window in Redis.
 * Members are in-process distributors, except the one killed (a web-app child process);
 * Redis is a real redis-server.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterEach, describe, expect, it } from 'vitest'
import type { Distributor } from '../../src/distributor/distributor.js'
import type { Limit, LimitOptions } from '../../src/distributor/limit-options.js'
import { NameLimit } from '../../src/distributor/limits.js'
import { GroupLimits } from '../../src/distributor/spool/group-limits.js'
import { memberKeys } from '../../src/storage/redis/group-keys.js'
import { GroupStore } from '../../src/storage/redis/group-store.js'
import { nodeArgs, Resources, spawnNode, startDistributor, startNode } from '../helpers/cluster.js'
import { LogCapture } from '../helpers/log-capture.js'
import { parsePromText, sampleValue } from '../helpers/prom-text.js'
import { unique, useRedis } from '../helpers/shared-redis.js'
import { WebApp } from '../helpers/web-app.js'
import { within } from '../helpers/within.js'

const res = new Resources()
afterEach(() => res.releaseAll())

const redis = useRedis()

async function tempFile(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'jr-group-limits-'))
  res.add(dir, (d) => rm(d, { recursive: true, force: true }))
  return join(dir, 'spans')
}

/** The most runs under way at once, from the `span` job's start/end lines. */
function peakOf(lines: string[]): number {
  let running = 0
  let peak = 0
  for (const line of lines) {
    if (line.startsWith('start ')) peak = Math.max(peak, ++running)
    else if (line.startsWith('end ')) running--
  }
  return peak
}

/** Two members of a new group on the shared Redis, both limiting `span`, each with a node of its own. */
async function twoMembers(limit: LimitOptions, nodeConcurrency = 4): Promise<[Distributor, Distributor]> {
  const group = unique('glimit')
  const members: Distributor[] = []
  for (const name of ['a', 'b']) {
    const d = await startDistributor(res, { group, name, storage: redis.url, leaseMs: 1000, limits: { span: limit } })
    await startNode(res, d, { name: unique(`n-${name}`), concurrency: nodeConcurrency })
    members.push(d)
  }
  return members as [Distributor, Distributor]
}

describe('limits across a distributor group', () => {
  it("an operator's pause holds for the group: members hear it, one that joins later reads it, a resume anywhere ends it", async () => {
    const group = unique('opause')
    const start = (name: string): Promise<Distributor> =>
      startDistributor(res, { group, name, storage: redis.url, leaseMs: 1000 })
    const a = await start('a')
    const b = await start('b')
    await startNode(res, b, { name: unique('n-b') })
    const heard = b.waitFor('name:paused', (e) => e.name === 'echo')
    a.pause('echo')
    expect(await heard).toEqual({ name: 'echo', paused: true, fromGroup: true })
    expect(b.pausedNames).toEqual(['echo'])
    const held = b.enqueue('echo', { n: 1 })
    const c = await start('c')
    expect(c.pausedNames).toEqual(['echo'])
    expect(b.pendingCount).toBe(1)
    const resumed = [a, b].map((d) => d.waitFor('name:paused', (e) => e.name === 'echo' && !e.paused))
    c.pause('echo', false)
    await Promise.all(resumed)
    expect(await held.done).toMatchObject({ n: 1, result: 'Yay!' })
    expect([a.pausedNames, b.pausedNames, c.pausedNames]).toEqual([[], [], []])
  })

  it('a push-back on one member pauses the name on the other too, counted from when it hears', async () => {
    const file = await tempFile()
    const [a, b] = await twoMembers({ concurrency: 3 })
    const heard = b.waitFor('member:paused', (e) => e.name === 'push-back')
    const pushed = a.waitFor('job:rate-limited', (e) => e.name === 'push-back')
    a.enqueue('push-back', { file, seconds: 30 })
    const sent = await pushed
    const paused = await heard
    expect(paused).toMatchObject({ name: 'push-back', key: '', seconds: 30 })
    expect(paused.until).toBeGreaterThanOrEqual(sent.until)
    // b holds its own job of the name back (as limited); another name goes on.
    const held = b.waitFor('job:limited', (e) => e.name === 'push-back')
    const waiting = b.enqueue('push-back', { file: `${file}-b`, seconds: 1 })
    await held
    await b.enqueue('span', { file: `${file}-span`, key: 'x', ms: 1 }).done
    expect(b.pendingCount).toBe(1)
    expect(await waiting.cancel()).toBe(true)
  })

  it('a concurrency of 3 holds for two members together: never more than 3 in flight, every job finishes', async () => {
    const file = await tempFile()
    const [a, b] = await twoMembers({ concurrency: 3 })
    const handles = [a, b].flatMap((d, m) =>
      Array.from({ length: 30 }, (_, i) => d.enqueue('span', { file, key: `${m}-${i}`, ms: 5 })),
    )
    await within(Promise.all(handles.map((h) => h.done)), 'every job of both members')
    const lines = (await readFile(file, 'utf8')).trim().split('\n')
    expect(lines).toHaveLength(120)
    expect(peakOf(lines)).toBeLessThanOrEqual(3)
  })

  it('per key: 2 per key across both members, and keys do not hold each other back', async () => {
    const file = await tempFile()
    const [a, b] = await twoMembers({ concurrency: 2, perKey: true })
    const handles = [a, b].flatMap((d) =>
      ['x', 'y'].flatMap((key) =>
        Array.from({ length: 10 }, () => d.enqueue('span', { file, key, ms: 5 }, { limitKey: key })),
      ),
    )
    await within(Promise.all(handles.map((h) => h.done)), 'every job of both members')
    const lines = (await readFile(file, 'utf8')).trim().split('\n')
    expect(lines).toHaveLength(80)
    for (const key of ['x', 'y']) expect(peakOf(lines.filter((l) => l.endsWith(` ${key}`)))).toBeLessThanOrEqual(2)
  })

  it('members share: one with a backlog gives slots back to another that waits, rather than keeping them until it drains', async () => {
    const file = await tempFile()
    const [a, b] = await twoMembers({ concurrency: 2 })
    const backlog = Array.from({ length: 40 }, (_, i) => a.enqueue('span', { file, key: `a-${i}`, ms: 20 }))
    await within(a.waitFor('job:limited'), 'a’s backlog held by the limit')
    const few = Array.from({ length: 4 }, (_, i) => b.enqueue('span', { file, key: `b-${i}`, ms: 1 }))
    await within(Promise.all([...backlog, ...few].map((h) => h.done)), 'every job of both members')
    const lines = (await readFile(file, 'utf8')).trim().split('\n')
    expect(peakOf(lines)).toBeLessThanOrEqual(2)
    const lastB = Math.max(...lines.map((l, i) => (l.startsWith('end b-') ? i : -1)))
    const lastAStart = Math.max(...lines.map((l, i) => (l.startsWith('start a-') ? i : -1)))
    expect(lastB).toBeLessThan(lastAStart)
  })

  it('a concurrency of 1 takes turns: a member with a backlog gives the slot back as its job ends while another waits', async () => {
    const file = await tempFile()
    const [a, b] = await twoMembers({ concurrency: 1 })
    const backlog = Array.from({ length: 30 }, (_, i) => a.enqueue('span', { file, key: `a-${i}`, ms: 10 }))
    await within(a.waitFor('job:limited'), 'a’s backlog held by the limit')
    const few = Array.from({ length: 3 }, (_, i) => b.enqueue('span', { file, key: `b-${i}`, ms: 1 }))
    await within(Promise.all([...backlog, ...few].map((h) => h.done)), 'every job of both members', 15_000)
    const lines = (await readFile(file, 'utf8')).trim().split('\n')
    expect(peakOf(lines)).toBeLessThanOrEqual(1)
    const lastB = Math.max(...lines.map((l, i) => (l.startsWith('end b-') ? i : -1)))
    const lastAStart = Math.max(...lines.map((l, i) => (l.startsWith('start a-') ? i : -1)))
    expect(lastB).toBeLessThan(lastAStart)
  })

  it('a rate of 5 per 0.5 s holds for two members together: no window of 0.5 s holds more than 5 dispatches', async () => {
    const [a, b] = await twoMembers({ rate: { max: 5, per: 0.5 } })
    const at: number[] = []
    for (const d of [a, b]) d.on('job:dispatch', (e) => at.push(e.at))
    const file = await tempFile()
    const handles = [a, b].flatMap((d, m) =>
      Array.from({ length: 10 }, (_, i) => d.enqueue('span', { file, key: `${m}-${i}`, ms: 0 })),
    )
    await within(Promise.all(handles.map((h) => h.done)), 'every job of both members')
    expect(at).toHaveLength(20)
    at.sort((x, y) => x - y)
    // Any 6 consecutive dispatches span at least the window: 5 at most in any 0.5 s.
    for (let i = 0; i + 5 < at.length; i++)
      expect((at[i + 5] as number) - (at[i] as number)).toBeGreaterThanOrEqual(500)
  })

  it('a member SIGKILLed while holding every slot gives them back once its lease ran out: the other member’s jobs then run', async () => {
    const group = unique('glimit-kill')
    const limits = { span: { concurrency: 3 } }
    const file = await tempFile()
    // a holds the 3 slots with jobs that run for a minute, on a node of its own.
    const a = await WebApp.start(res, {
      distributor: { group, name: 'a', storage: redis.url, leaseMs: 1000, limits },
    })
    const keeper = unique('keeper')
    spawnNode(res, nodeArgs(keeper, [a.port]))
    await a.until(() => a.events.some((e) => e.event === 'node:connect' && e['node'] === keeper), 'a’s node')
    a.enqueue({ count: 3, name: 'span', args: { file, key: 'a', ms: 60_000 } })
    await a.until(
      () => a.accepted.size === 3,
      'a’s 3 jobs accepted',
      () => a.accepted.size,
    )

    const b = await startDistributor(res, { group, name: 'b', storage: redis.url, leaseMs: 1000, limits })
    await startNode(res, b, { name: unique('n-b'), concurrency: 4 })
    let dispatchedBeforeKill = 0
    let killed = false
    b.on('job:dispatch', () => {
      if (!killed) dispatchedBeforeKill++
    })
    const held = b.waitFor('job:limited')
    const mine = Array.from({ length: 2 }, (_, i) => b.enqueue('span', { file, key: `b-${i}`, ms: 1 }))
    await within(held, 'b’s first job held by the group’s limit')
    // Waiting for the group's grant counts as held by the limit (metrics, admin overview).
    expect(sampleValue(parsePromText(await b.metrics.metrics()), 'jr_jobs_limited', { name: 'span' })).toBe(2)

    killed = true
    await a.kill()
    await within(Promise.all(mine.map((h) => h.done)), 'b’s jobs, once a’s lease ran out')
    expect(dispatchedBeforeKill).toBe(0)
    const lines = (await readFile(file, 'utf8')).trim().split('\n')
    // a's jobs never ended: their slots came back with a's lease, not with their ends.
    expect(lines.filter((l) => l === 'end a')).toEqual([])
    expect(lines.filter((l) => l.startsWith('end b-'))).toHaveLength(2)
  })
})

describe('the grant script', () => {
  async function storeOf(group: string): Promise<GroupStore> {
    const store = res.add(new GroupStore(redis.url, group), (s) => s.close())
    await store.connect()
    return store
  }

  async function lease(group: string, name: string, ms: number): Promise<void> {
    const client = new Redis(redis.url)
    await client.set(memberKeys(group, name).lease, `${name}#t`, 'PX', ms)
    client.disconnect()
  }

  it('drops the slots of a process whose lease is gone or taken by a restart, grants what is free, says when a holder’s lease may run out, and who waits', async () => {
    const group = unique('gscript')
    const store = await storeOf(group)
    await lease(group, 'm1', 10_000)
    await lease(group, 'm2', 10_000)
    const client = new Redis(redis.url)
    // Gone: a member without a lease, and m1's process before its restart (m1#t holds the lease now).
    await client.hset(
      `jr:group:{${group}}:slots:4:span`,
      'dead#x',
      '3',
      '{w}dead2#x',
      '1',
      'm1#old',
      '3',
      '{w}m1#old',
      '1',
    )
    client.disconnect()
    const ask = (member: string, target: number, wants = target) =>
      store.grantLimits(`${member}#t`, [{ kind: 'slots', scope: '4:span', concurrency: 3, target, wants }])

    expect(await ask('m1', 2)).toEqual([{ granted: 2, waitMs: -1, waiting: 0 }])
    const [refused] = await ask('m2', 3)
    expect(refused?.granted).toBe(1)
    expect(refused?.waitMs).toBeGreaterThan(0)
    expect(refused?.waitMs).toBeLessThanOrEqual(10_000)
    // Asked again (a retry that landed twice): the same answer, nothing more taken.
    expect((await ask('m2', 3))[0]?.granted).toBe(1)
    // m1 learns that m2 waits (and when m2's lease may run out).
    const [seen] = await ask('m1', 2)
    expect(seen?.waiting).toBe(1)
    expect(seen?.waitMs).toBeGreaterThan(0)
    expect(await ask('m1', 0)).toEqual(
      [{ granted: 0, waitMs: 0, waiting: 1 }].map((a) => ({ ...a, waitMs: expect.any(Number) })),
    )
    expect((await ask('m2', 3))[0]).toEqual({ granted: 3, waitMs: -1, waiting: 0 })
    expect((await ask('m1', 0))[0]?.waiting).toBe(0)
    // Holding its target but fewer than its jobs could use (its share): marked waiting all the same.
    expect((await ask('m1', 0, 2))[0]).toEqual({ granted: 0, waitMs: -1, waiting: 0 })
    expect((await ask('m2', 3))[0]?.waiting).toBe(1)
    const reader = new Redis(redis.url)
    const fields = await reader.hgetall(`jr:group:{${group}}:slots:4:span`)
    reader.disconnect()
    expect(fields).toEqual({ 'm2#t': '3', '{w}m1#t': '1' })
  })

  it('grants starts from one window in Redis time, says when it frees, and takes back starts given back', async () => {
    const group = unique('gscript')
    const store = await storeOf(group)
    const starts = (member: string, want: number, seq: number, giveBack: number[] = []) =>
      store.grantLimits(member, [
        { kind: 'starts', scope: '4:span', max: 3, perMs: 10_000, want, graceMs: 50, seq, giveBack },
      ])
    expect(await starts('m1', 2, 0)).toEqual([{ granted: 2, waitMs: -1, waiting: 0 }])
    const [short] = await starts('m2', 2, 0)
    expect(short?.granted).toBe(1)
    expect(short?.waitMs).toBeGreaterThan(9_000)
    expect(short?.waitMs).toBeLessThanOrEqual(10_050)
    // m1 gives one back unused: m2 gets it.
    expect((await starts('m1', 0, 2, [1]))[0]?.granted).toBe(0)
    expect((await starts('m2', 2, 1))[0]?.granted).toBe(1)
  })
})

describe('a member restarted under the same name (GroupLimits on the real script)', () => {
  /** One process of member `member`: its GroupLimits (holding the lease as `token`) and a limited name with `waiting` jobs. */
  async function processOf(group: string, member: string, token: string, limit: Limit, waiting: number) {
    const store = res.add(new GroupStore(redis.url, group), (s) => s.close())
    await store.connect()
    const client = new Redis(redis.url)
    await client.set(memberKeys(group, member).lease, token, 'PX', 60_000)
    client.disconnect()
    const timers = new Set<NodeJS.Timeout>()
    res.add(timers, (ts) => ts.forEach(clearTimeout))
    const limits = new GroupLimits(
      {
        log: new LogCapture().logger,
        after: (timer, ms) => void timers.add(setTimeout(() => timer.fire(), ms)),
        cancelTimer: () => {},
      },
      store,
      member,
      token,
    )
    const grants: (() => void)[] = []
    const name = new NameLimit(
      'span',
      limit,
      { wake: () => grants.shift()?.(), wakeAt: () => {}, cancelTimer: () => {} },
      limits,
    )
    const line = { waiting }
    name.routes.add({ wake: () => {}, wakeAll: () => {}, waiting: () => line.waiting })
    /** Resolves at the next grant; `use` runs first, in the same turn (starts not used go back the next turn). */
    const granted = (use: () => void = () => {}) =>
      new Promise<void>((resolve) =>
        grants.push(() => {
          use()
          resolve()
        }),
      )
    return { limits, name, line, granted }
  }

  it('the slots of the process before are not counted again once the new one holds the lease', async () => {
    const group = unique('grestart')
    const limit = { concurrency: 5, perKey: false, rate: undefined }
    const first = await processOf(group, 'a', 'a#p1', limit, 5)
    const held = first.granted()
    first.limits.start()
    first.name.mayStart('', Date.now())
    await within(held, 'a’s 5 slots')
    expect(first.limits.slots(first.name, '')).toBe(5)
    // SIGKILLed: nothing given back; its lease runs out and a restarted process takes the name.
    first.limits.close()
    await processOf(group, 'a', 'a#p2', limit, 0)
    const b = await processOf(group, 'b', 'b#p1', limit, 2)
    const bHeld = b.granted()
    b.limits.start()
    b.name.mayStart('', Date.now())
    await within(bHeld, 'b’s 2 slots')
    expect(b.limits.slots(b.name, '')).toBe(2)
    const client = new Redis(redis.url)
    const fields = await client.hgetall(`jr:group:{${group}}:slots:4:span`)
    client.disconnect()
    expect(fields).toEqual({ 'b#p1': '2' })
  })

  it('starts of the process before still count in the window: a restart adds its own', async () => {
    const group = unique('grestart')
    const limit = { concurrency: undefined, perKey: false, rate: { max: 10, per: 60 } }
    const first = await processOf(group, 'a', 'a#p1', limit, 5)
    const used = first.granted(() => {
      for (let i = 0; i < 5; i++) first.limits.started(first.name, '')
    })
    first.limits.start()
    first.name.mayStart('', Date.now())
    await within(used, 'a’s 5 starts')
    first.limits.close()
    const second = await processOf(group, 'a', 'a#p2', limit, 10)
    const granted = second.granted(() => {
      for (let i = 0; i < 5; i++) second.limits.started(second.name, '')
    })
    second.limits.start()
    second.name.mayStart('', Date.now())
    await within(granted, 'the restarted process’s starts')
    const client = new Redis(redis.url)
    const window = await client.zcard(`jr:group:{${group}}:rate:4:span`)
    client.disconnect()
    expect(window).toBe(10)
  })
})
