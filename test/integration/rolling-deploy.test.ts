/**
 * A rolling deploy under load (DESIGN.md, "Production topology"; docs/deployment.md, "What
 * survives what"): three members of one group, each a web-app child process
 * (test/fixtures/web-app.js) enqueueing jobs without pause, are restarted one after another
 * the way a deploy does it: SIGTERM (the app closes its distributor: with a spool, a hand-over),
 * then the same name started again at a new address. Two jr-node processes (memory and Redis
 * storage) find the members only through discovery: the group registry in Redis, or a DNS
 * name (the test's own server, which JR_DNS_SERVER points at) whose records follow the
 * members. No job whose `persisted` resolved, in any process, may be lost: each reaches a
 * closure or a named handler in some process. Jobs may run twice (at-least-once): duplicates
 * are counted and printed, not asserted.
 */
import { createServer, type Server } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import type { DistributorOptions } from '../../src/distributor/options.js'
import { FIXTURE_JOBS, Resources, spawnNode } from '../helpers/cluster.js'
import { startDnsServer } from '../helpers/dns-server.js'
import { unique, useRedis } from '../helpers/shared-redis.js'
import { LATE_JOBS, type ResultLine, WebApp } from '../helpers/web-app.js'
import { within } from '../helpers/within.js'

const res = new Resources()
afterEach(() => res.releaseAll())

const redis = useRedis()

const MEMBERS = ['web-1', 'web-2', 'web-3']
/** A short job that writes down where it ran; its named handler is registered in every process. */
const JOB = 'where'
/**
 * A job that only the node started at the end knows (test/fixtures/jobs-late): it waits at
 * the distributor through the whole deploy, so it reaches a result only if every hand-over
 * carried it on (the spool, resumed by the restarted member or adopted by another one). The
 * short jobs mostly run on a node as the member closes, and their results find the member's
 * name wherever it is by then: they would reach a handler even if no spool were handed over.
 */
const WAITING_JOB = 'late'
/** The load each member carries until told to stop: 10 short jobs every 10 ms, and a waiting one. */
const LOAD = [
  { count: 1_000_000_000, name: JOB, chunk: 10, everyMs: 10 },
  { count: 1_000_000_000, name: WAITING_JOB, chunk: 1, everyMs: 10 },
]
/** How long a SIGTERMed app may take to hand over and exit (its hand-over is bounded by a lease). */
const EXIT_MS = 15_000

/** Each member's placement: distributor options that differ per incarnation. */
type Placement = Pick<DistributorOptions, 'host' | 'port'>

interface RollingDeploy {
  group: string
  /** Node names: memory and Redis storage, then the node of the waiting jobs (memory). */
  nodes: [string, string, string]
  /** jr-node arguments that find the members (besides --name, --jobs, --storage). */
  discovery: string[]
  env?: NodeJS.ProcessEnv
  /** Where each member's first incarnation listens, and where its second does. */
  first(name: string): Placement
  second(name: string): Placement
  /** The member is about to get SIGTERM: take it out of discovery (DNS); the registry does it itself. */
  leaving?(name: string): void
  /** The member's new incarnation is up: put it into discovery. */
  arrived?(name: string, placement: Placement): void
}

interface Outcome {
  persisted: Set<string>
  /** Waiting jobs persisted by a process that was terminated: only a hand-over can carry them. */
  handedOver: string[]
  results: ResultLine[]
  /** Ids with more than one result, and how many each had. */
  duplicates: Map<string, number>
  lost: string[]
}

const connected = (app: WebApp, node: string): boolean =>
  app.events.some((e) => e.event === 'node:connect' && e['node'] === node)

/**
 * The ids that `apps` reported persisted and none of them reported a result of, kept up to
 * date as their tables grow: the wait for the last results re-checks it on every line.
 */
function lostJobs(apps: readonly WebApp[]): () => string[] {
  const delivered = new Set<string>()
  const missing = new Set<string>()
  const resultsRead = new Map<WebApp, number>()
  const persistedRead = new Map<WebApp, number>()
  return () => {
    for (const app of apps) {
      for (let i = resultsRead.get(app) ?? 0; i < app.results.length; i++) {
        const id = (app.results[i] as ResultLine).result
        delivered.add(id)
        missing.delete(id)
      }
      resultsRead.set(app, app.results.length)
      if (app.persisted.size !== persistedRead.get(app)) {
        for (const id of app.persisted) if (!delivered.has(id)) missing.add(id)
        persistedRead.set(app, app.persisted.size)
      }
    }
    return [...missing]
  }
}

/**
 * Resolves once `condition` holds after a line of any of `apps` (each re-checks only on its
 * own lines); fails as `WebApp.until` does. The waits of the other apps end with their
 * processes (the condition holds by then) or time out unheard.
 */
function untilAny(apps: WebApp[], condition: () => boolean, what: string, progress: () => unknown): Promise<void> {
  const waits = apps.map((app) => app.until(condition, what, progress))
  for (const wait of waits) wait.catch(() => {})
  return Promise.any(waits).catch((err: AggregateError) => {
    throw err.errors[0]
  })
}

async function rollingDeploy(plan: RollingDeploy): Promise<Outcome> {
  const incarnations: WebApp[] = []
  const live = new Map<string, WebApp>()
  const start = async (name: string, placement: Placement): Promise<WebApp> => {
    const app = await WebApp.start(res, {
      distributor: { group: plan.group, name, storage: redis.url, leaseMs: 1000, logLevel: 'warn', ...placement },
      handlers: [JOB, WAITING_JOB],
    })
    incarnations.push(app)
    live.set(name, app)
    // Ready (listening, holding its name, its spool resumed): into discovery, as a pod's IP joins its Service.
    plan.arrived?.(name, placement)
    return app
  }
  const nodesConnected = (app: WebApp): Promise<void> =>
    app.until(
      () => [memory, durable].every((node) => connected(app, node)),
      `both nodes to connect to ${app.name} at ${app.port}`,
    )

  const [memory, durable] = plan.nodes
  for (const name of MEMBERS) await start(name, plan.first(name))
  const node = (name: string, extra: string[], jobs = FIXTURE_JOBS): void => {
    spawnNode(res, ['--name', name, ...plan.discovery, '--jobs', jobs, ...extra], plan.env)
  }
  node(memory, [])
  node(durable, ['--storage', redis.url])
  for (const app of live.values()) await nodesConnected(app)

  // Load on every member, and results flowing at each, before the first restart.
  for (const app of live.values()) for (const load of LOAD) app.enqueue(load)
  for (const app of live.values()) {
    await app.until(
      () => app.results.length >= 100,
      `results at ${app.name}`,
      () => app.results.length,
    )
  }

  for (const name of MEMBERS) {
    const old = live.get(name) as WebApp
    plan.leaving?.(name)
    expect(await within(old.terminate(), `${name} to hand over and exit`, EXIT_MS), old.logs).toBe(0)
    const fresh = await start(name, plan.second(name))
    for (const load of LOAD) fresh.enqueue(load)
    await nodesConnected(fresh)
  }

  for (const app of live.values()) await app.stopEnqueuing()
  const apps = [...live.values()]
  // The waiting jobs' node, at last.
  node(plan.nodes[2], [], LATE_JOBS)
  const lost = lostJobs(incarnations)
  // Every job the live members enqueued gets persisted (its spool write lands), and every
  // job persisted anywhere gets a result somewhere; with a job lost this wait times out,
  // and the assertions below say which.
  await untilAny(
    apps,
    () => apps.every((app) => app.persisted.size === app.enqueued.length) && lost().length === 0,
    'every persisted job to reach a closure or a handler',
    () => `(${lost().length} persisted jobs without a result)`,
  ).catch(() => {})

  const persisted = new Set(incarnations.flatMap((app) => [...app.persisted]))
  const results = incarnations.flatMap((app) => app.results)
  const counts = new Map<string, number>()
  for (const r of results) counts.set(r.result, (counts.get(r.result) ?? 0) + 1)
  const duplicates = new Map([...counts].filter(([, n]) => n > 1))
  const closed = incarnations.filter((app) => !apps.includes(app))
  const handedOver = closed.flatMap((app) => [...app.persisted].filter((id) => app.names.get(id) === WAITING_JOB))
  const outcome = { persisted, handedOver, results, duplicates, lost: lost() }

  const via = (v: ResultLine['via']): number => results.filter((r) => r.via === v).length
  const on = (n: string): number => results.filter((r) => r.node === n).length
  const adoptions = incarnations.flatMap((app) => app.events.filter((e) => e.event === 'member:adopted'))
  console.log(
    `rolling deploy ${plan.group}: ${incarnations.reduce((n, a) => n + a.enqueued.length, 0)} enqueued, ` +
      `${persisted.size} persisted, ${results.length} results for ${counts.size} jobs ` +
      `(${via('closure')} through closures, ${via('handler')} through handlers; ` +
      `${on(memory)} on the memory node, ${on(durable)} on the Redis node), ` +
      `${duplicates.size} jobs with duplicate results (${[...duplicates.values()].reduce((n, c) => n + c - 1, 0)} extra), ` +
      `${outcome.lost.length} lost; ${handedOver.length} waiting jobs handed over, ${adoptions.length} adoptions of a closed member ` +
      `(${adoptions.reduce((n, e) => n + (e.jobs ?? 0), 0)} jobs)`,
  )

  for (const app of apps) expect(app.persisted, app.name).toEqual(new Set(app.enqueued))
  for (const app of incarnations) expect(app.enqueueErrors, app.name).toEqual([])
  for (const app of incarnations) {
    expect(
      app.events.filter((e) => e.event === 'feedback:orphan'),
      app.name,
    ).toEqual([])
  }
  // The live members finished all they hold: nothing waits, nothing runs.
  for (const app of apps) expect(await app.status(), app.name).toMatchObject({ active: 0, pending: 0 })
  return outcome
}

function expectNothingLost(outcome: Outcome, nodes: readonly string[]): void {
  expect(outcome.lost).toEqual([])
  // Jobs waited at each member as it closed, and came back through the named handlers.
  expect(outcome.handedOver.length).toBeGreaterThan(0)
  const viaHandler = new Set(outcome.results.filter((r) => r.via === 'handler').map((r) => r.result))
  expect(outcome.handedOver.filter((id) => !viaHandler.has(id))).toEqual([])
  // Both nodes ran the short jobs; the waiting jobs ran on their own node.
  for (const node of nodes.slice(0, 2)) {
    expect(outcome.results.some((r) => r.node === node && r.name === JOB)).toBe(true)
  }
  expect(outcome.results.filter((r) => r.name === WAITING_JOB && r.node !== nodes[2])).toEqual([])
  expect(outcome.results.filter((r) => r.kind !== 'success')).toEqual([])
}

describe('a rolling deploy of a group under load', () => {
  it('nodes that find the members through the Redis registry: every persisted job reaches a closure or a handler', async () => {
    const group = unique('rolling')
    const nodes: [string, string, string] = [unique('memory'), unique('durable'), unique('waiting')]
    const outcome = await rollingDeploy({
      group,
      nodes,
      discovery: ['--group', group, '--discover', redis.url],
      // Port 0: every incarnation gets a new port.
      first: () => ({ port: 0 }),
      second: () => ({ port: 0 }),
    })
    expectNothingLost(outcome, nodes)
  })

  it('nodes that find the members through DNS, each restart moving a member to another IP: every persisted job reaches a closure or a handler', async () => {
    const first = new Map(MEMBERS.map((name, i) => [name, `127.0.0.${i + 1}`]))
    const second = new Map(MEMBERS.map((name, i) => [name, `127.0.0.${i + 4}`]))
    const port = await portFreeOn([...first.values(), ...second.values()])
    const dns = res.add(await startDnsServer(), (d) => d.close())
    const record = 'web-jr.rolling.test'
    const ips = new Set<string>()
    const publish = (): void => dns.set(record, { a: [...ips].sort(), ttl: 1 })

    const group = unique('rolling-dns')
    const nodes: [string, string, string] = [unique('memory'), unique('durable'), unique('waiting')]
    const outcome = await rollingDeploy({
      group,
      nodes,
      discovery: ['--distributor', `dns:${record}:${port}`],
      env: { JR_DNS_SERVER: dns.address },
      first: (name) => ({ host: first.get(name) as string, port }),
      second: (name) => ({ host: second.get(name) as string, port }),
      leaving: (name) => {
        ips.delete(first.get(name) as string)
        publish()
      },
      arrived: (_name, placement) => {
        ips.add(placement.host as string)
        publish()
      },
    })
    expectNothingLost(outcome, nodes)
  })
})

/**
 * A TCP port that can be bound on every one of `hosts` now (a DNS name has one port for
 * all its records). Each candidate is the one the OS gave the first host; tried a few times.
 */
async function portFreeOn(hosts: string[]): Promise<number> {
  for (let attempt = 1; attempt <= 10; attempt++) {
    const servers: Server[] = []
    try {
      let port = 0
      for (const host of hosts) {
        const server = createServer()
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject)
          server.listen(port, host, () => resolve())
        })
        servers.push(server)
        const address = server.address()
        if (port === 0 && typeof address === 'object' && address !== null) port = address.port
      }
      return port
    } catch {
      // Taken on one of them: another candidate.
    } finally {
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))))
    }
  }
  throw new Error(`no port free on all of ${hosts.join(', ')}`)
}
