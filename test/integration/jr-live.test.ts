import { existsSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import type {
  AdminFailure,
  AdminJob,
  AdminNode,
  AdminNodeJobsPage,
  AdminOverview,
  AdminPendingPage,
  AdminRoute,
} from '../../src/admin/admin-client.js'
import type { Distributor } from '../../src/distributor/distributor.js'
import { JobRegistry } from '../../src/node/registry.js'
import { allAccepted, Resources, startDistributor, startNode } from '../helpers/cluster.js'
import { DurableMemoryStore } from '../helpers/durable-memory-store.js'
import { serve } from '../helpers/http-server.js'
import { BUILT_CLI, type JrRun, jr, spawnJr } from '../helpers/jr-cli.js'
import { freePort } from '../helpers/redis-server.js'

const res = new Resources()
afterEach(() => res.releaseAll())

beforeAll(() => {
  expect(existsSync(BUILT_CLI), 'dist/cli/jr.js is missing: run npm run build').toBe(true)
})

const TOKEN = 'let-me-in'
const HOUR = 3600

interface Live {
  d: Distributor
  /** The mount point, without its trailing slash (jr adds it). */
  url: string
  /** Whether the authorize hook allows acting (reading needs the token only). */
  policy: { act: boolean }
}

/**
 * A distributor with its admin handler mounted under /jr of a node:http server, as an
 * application would mount it (stripping the prefix). The authorize hook wants the bearer
 * token for everything, and `policy.act` for acting.
 */
async function liveDistributor(): Promise<Live> {
  const d = await startDistributor(res)
  const policy = { act: true }
  const handler = d.adminHandler({
    authorize: (req, action) =>
      req.headers.authorization === `Bearer ${TOKEN}` && (action.kind === 'read' || policy.act),
  })
  const root = await serve(res, (req: IncomingMessage, out: ServerResponse) => {
    if (req.url?.startsWith('/jr/') !== true) {
      out.writeHead(404, { 'Content-Type': 'text/plain' })
      out.end('not here')
      return
    }
    req.url = req.url.slice('/jr'.length)
    handler(req, out)
  })
  return { d, url: `${root}jr`, policy }
}

/** The real `jr` executable against `live`, with the token. */
function live(at: Live, ...args: string[]): Promise<JrRun> {
  return spawnJr([...args, '--url', at.url, '--token', TOKEN])
}

/** `jr ... --json`, which must succeed; its output parsed. */
async function liveJson<T>(at: Live, ...args: string[]): Promise<T> {
  const run = await live(at, ...args, '--json')
  expect(run.stderr, `jr ${args.join(' ')}`).toBe('')
  expect(run.code, `jr ${args.join(' ')}`).toBe(0)
  return JSON.parse(run.stdout) as T
}

/** A table's rows split into cells (two or more spaces apart), the header first. */
function cells(stdout: string): string[][] {
  return stdout
    .trimEnd()
    .split('\n')
    .map((line) => line.split(/\s{2,}/))
}

describe('jr against a live distributor: reading', () => {
  it('nodes and overview show the connected nodes', async () => {
    const at = await liveDistributor()
    await startNode(res, at.d, { name: 'w1', concurrency: 4 })
    await startNode(res, at.d, { name: 'w2', concurrency: 2, storage: new DurableMemoryStore() })

    const { nodes } = await liveJson<{ nodes: AdminNode[] }>(at, 'nodes')
    const byName = new Map(nodes.map((n) => [n.name, n]))
    expect([...byName.keys()].sort()).toEqual(['w1', 'w2'])
    expect(byName.get('w1')).toMatchObject({ state: 'accepting', concurrency: 4, durable: false, inFlight: 0 })
    expect(byName.get('w2')).toMatchObject({ state: 'accepting', concurrency: 2, durable: true })
    expect(byName.get('w1')?.jobs).toContain('always_fail')

    const table = await live(at, 'nodes')
    expect(table.code).toBe(0)
    const [header, ...rows] = cells(table.stdout)
    expect(header?.slice(0, 4)).toEqual(['NAME', 'ADDRESS', 'STATE', 'IN FLIGHT'])
    expect(rows.map((r) => [r[0], r[2]]).sort()).toEqual([
      ['w1', 'accepting'],
      ['w2', 'accepting'],
    ])

    const overview = await liveJson<AdminOverview>(at, 'overview')
    expect(overview).toMatchObject({ nodes: 2, pending: 0 })
  })

  it('a job a node holds: its state and node; an unknown id is not found, exit 1', async () => {
    const at = await liveDistributor()
    await startNode(res, at.d, { name: 'w1' })
    const handle = at.d.enqueue('noop', { n: 1 }, { after: HOUR })
    await allAccepted(at.d, [handle])

    const { job } = await liveJson<{ job: AdminJob }>(at, 'job', handle.id)
    expect(job).toMatchObject({ id: handle.id, name: 'noop', state: 'accepted', node: 'w1', args: { n: 1 } })

    const text = await live(at, 'job', handle.id)
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(new RegExp(`^id\\s+${handle.id}\\n`))
    expect(text.stdout).toMatch(/^state\s+accepted$/m)

    const missing = await live(at, 'job', 'no-such-job')
    expect(missing.code).toBe(1)
    expect(missing.stdout).toBe('')
    expect(missing.stderr).toMatch(
      /^jr: the admin API answered 404 ERR_NOT_FOUND to GET .*\/jr\/api\/jobs\/no-such-job: .+\n$/,
    )
  })
})

describe('jr against a live distributor: acting', () => {
  it("held: a node's scheduled jobs, a page at a time, asked of the node", async () => {
    const at = await liveDistributor()
    await startNode(res, at.d, { name: 'w1' })
    const handles = [1, 2, 3].map((n) => at.d.enqueue('noop', { n }, { after: HOUR }))
    const yearly = at.d.enqueue('noop', {}, { cron: '0 0 1 1 *', tz: 'Europe/Paris' })
    await allAccepted(at.d, [...handles, yearly])

    const first = await liveJson<AdminNodeJobsPage>(at, 'held', 'w1', '--limit', '2')
    expect(first).toMatchObject({ node: 'w1', kind: 'scheduled' })
    expect(first.jobs).toHaveLength(2)
    expect(first.next).not.toBeNull()
    const rest = await liveJson<AdminNodeJobsPage>(at, 'held', 'w1', '--cursor', first.next ?? '', '--limit', '2')
    expect(rest.next).toBeNull()
    expect([...first.jobs, ...rest.jobs].map((j) => j.id).sort()).toEqual(handles.map((h) => h.id).sort())

    const text = await live(at, 'held', 'w1', '--limit', '2')
    expect(text.code).toBe(0)
    expect(cells(text.stdout)[0]).toEqual(['ID', 'NAME', 'STATUS', 'ATTEMPT', 'RUN', 'DUE AT', 'PERIOD', 'LAST ERROR'])
    expect(text.stdout).toContain(`2 scheduled on node 'w1'; next page: --cursor ${first.next}\n`)
    const periodic = await live(at, 'held', 'w1', '--kind', 'periodic')
    const [, row] = cells(periodic.stdout)
    expect([row?.[0], row?.[6]]).toEqual([yearly.id, 'cron 0 0 1 1 * (Europe/Paris)'])

    const bogus = await live(at, 'held', 'w1', '--kind', 'bogus')
    expect(bogus.code).toBe(2)
    expect(bogus.stderr).toMatch(/400 ERR_BAD_REQUEST .*'kind' must be one of running, scheduled, periodic, failed/)
  })

  it('cancel: a delayed job is cancelled and its done settles; a second cancel exits 1', async () => {
    const at = await liveDistributor()
    await startNode(res, at.d, { name: 'w1' })
    const handle = at.d.enqueue('noop', {}, { after: HOUR })
    await allAccepted(at.d, [handle])

    const notFailed = await live(at, 'retry', handle.id, '--node', 'w1')
    expect(notFailed.code).toBe(1)
    expect(notFailed.stderr).toMatch(/^jr: the admin API answered 409 ERR_CONFLICT to POST .*\/retry: /)

    const run = await live(at, 'cancel', handle.id)
    expect(run).toEqual({ code: 0, stdout: `job '${handle.id}' cancelled\n`, stderr: '' })
    await handle.done

    const again = await live(at, 'cancel', handle.id, '--json')
    expect(again.code).toBe(1)
    expect(JSON.parse(again.stdout)).toEqual({ id: handle.id, cancelled: false })
  })

  it('pause holds a name pending at the distributor, pending lists it by route and page, resume lets it run', async () => {
    const at = await liveDistributor()
    await startNode(res, at.d, { name: 'w1' })
    expect(await liveJson(at, 'pause', 'echo')).toEqual({ name: 'echo', paused: true })

    const handles = [1, 2, 3].map((n) => at.d.enqueue('echo', { n }))
    const preferring = at.d.enqueue('echo', { n: 4 }, { node: 'w1' })
    const { routes } = await liveJson<{ routes: AdminRoute[] }>(at, 'pending')
    expect(routes.map(({ name, node, notNode, pending }) => ({ name, node, notNode, pending }))).toEqual([
      { name: 'echo', node: null, notNode: null, pending: 3 },
      { name: 'echo', node: 'w1', notNode: null, pending: 1 },
    ])
    const table = await live(at, 'pending')
    expect(cells(table.stdout).map((row) => row.slice(0, 4))).toEqual([
      ['NAME', 'NODE', 'NOT NODE', 'PENDING'],
      ['echo', '-', '-', '3'],
      ['echo', 'w1', '-', '1'],
    ])

    const page = await liveJson<AdminPendingPage>(at, 'pending', '--route', 'echo', '--limit', '2')
    expect(page).toMatchObject({ total: 3, next: 2 })
    expect(page.jobs.map((j) => j.id)).toEqual(handles.slice(0, 2).map((h) => h.id))
    const rest = await liveJson<AdminPendingPage>(at, 'pending', '--route', 'echo', '--offset', '2', '--limit', '2')
    expect(rest).toMatchObject({ total: 3, next: null })
    expect(rest.jobs.map((j) => j.id)).toEqual([handles[2]?.id])

    const text = await live(at, 'pending', '--route', 'echo', '--limit', '2')
    expect(text.code).toBe(0)
    expect(text.stdout).toContain('2 of 3 pending; next page: --offset 2\n')
    const onW1 = await liveJson<AdminPendingPage>(at, 'pending', '--route', 'echo', '--node', 'w1')
    expect(onW1.jobs.map((j) => [j.id, j.args])).toEqual([[preferring.id, { n: 4 }]])
    const none = await live(at, 'pending', '--route', 'echo', '--node', 'w9')
    expect(none.code).toBe(1)
    expect(none.stderr).toBe(`jr: no jobs named 'echo', node 'w9' are pending at the distributor at ${at.url}/\n`)

    const overview = await liveJson<AdminOverview>(at, 'overview')
    expect(overview.names.find((n) => n.name === 'echo')).toMatchObject({ paused: true, pending: 4 })

    expect(await liveJson(at, 'resume', 'echo')).toEqual({ name: 'echo', paused: false })
    const done = await Promise.all([...handles, preferring].map((h) => h.done))
    expect(done.map((args) => args['result'])).toEqual(['Yay!', 'Yay!', 'Yay!', 'Yay!'])
  })

  it('quiet: the node takes no new jobs until --off', async () => {
    const at = await liveDistributor()
    await startNode(res, at.d, { name: 'w1' })
    await startNode(res, at.d, { name: 'w2' })

    expect(await liveJson(at, 'quiet', 'w2')).toEqual({ node: 'w2', quiet: true })
    const { nodes } = await liveJson<{ nodes: AdminNode[] }>(at, 'nodes')
    expect(nodes.find((n) => n.name === 'w2')).toMatchObject({ state: 'quiet', accepting: false })
    const ran = await Promise.all([1, 2, 3, 4].map(() => at.d.enqueue('where').done))
    expect(ran.map((args) => args['node'])).toEqual(['w1', 'w1', 'w1', 'w1'])

    const off = await live(at, 'quiet', 'w2', '--off')
    expect(off).toEqual({ code: 0, stdout: "node 'w2' takes new jobs again\n", stderr: '' })
    const after = await liveJson<{ nodes: AdminNode[] }>(at, 'nodes')
    expect(after.nodes.find((n) => n.name === 'w2')).toMatchObject({ state: 'accepting', accepting: true })

    // Not connected: nothing to ask, as when a node does not answer.
    const unknown = await live(at, 'quiet', 'no-such-node')
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/^jr: the admin API answered 502 ERR_NODE_UNAVAILABLE to POST .*no-such-node/)
  })

  it('failures list a final failure with its error; retry runs it again now on its durable node', async () => {
    const at = await liveDistributor()
    // Fails until the upstream it calls is back.
    const upstream = { up: false }
    const registry = new JobRegistry()
    registry.define('charge', (args) => {
      if (!upstream.up) throw new Error('upstream is down')
      args['charged'] = true
    })
    const node = await startNode(
      res,
      at.d,
      { name: 'w1', registry, storage: new DurableMemoryStore() },
      { maxAttempt: 1 },
    )
    const handle = at.d.enqueue('charge', { order: 42 })
    await expect(handle.done).rejects.toMatchObject({ code: 'ERR_JOB_FAILED' })

    const { failures } = await liveJson<{ failures: AdminFailure[] }>(at, 'failures')
    expect(failures).toHaveLength(1)
    expect(failures[0]).toMatchObject({ id: handle.id, name: 'charge', node: 'w1', args: { order: 42 } })
    expect(failures[0]?.error?.message).toBe('upstream is down')
    const table = await live(at, 'failures')
    expect(cells(table.stdout).map((row) => row.slice(1))).toEqual([
      ['ID', 'NAME', 'NODE', 'RUN', 'ERROR'],
      [handle.id, 'charge', 'w1', '1', 'Error: upstream is down'],
    ])

    // The distributor is done with it; the node keeps it, failed.
    const { job } = await liveJson<{ job: AdminJob }>(at, 'job', handle.id, '--node', 'w1')
    expect(job).toMatchObject({ id: handle.id, node: 'w1', status: 'failed', attempt: 1, args: { order: 42 } })
    const shown = await live(at, 'job', handle.id, '--node', 'w1')
    expect(shown.stdout).toMatch(/^status\s+failed$/m)

    const completed = node.waitFor('job:complete', (e) => e.id === handle.id)
    // A fast job on a fast store: its result must not overtake the retry's answer (the
    // distributor would take it for a copy of the failure it already delivered).
    const delivered = new Promise<Record<string, unknown>>((resolve) => at.d.onFeedback('charge', { success: resolve }))
    upstream.up = true
    expect(await liveJson(at, 'retry', handle.id)).toEqual({ id: handle.id, node: 'w1', retried: true })
    expect(await completed).toMatchObject({ run: 2, cancelled: false })
    await expect(delivered).resolves.toMatchObject({ order: 42, charged: true })
    // A job that runs again is no longer a failure to show.
    expect(await liveJson(at, 'failures')).toEqual({ failures: [] })

    const ghost = await live(at, 'retry', 'no-such-job')
    expect(ghost.code).toBe(1)
    expect(ghost.stderr).toMatch(/^jr: the admin API answered 404 ERR_NOT_FOUND to POST .*no-such-job/)
  })
})

describe('jr against a live distributor: refusals and errors', () => {
  it('a refused action exits 1 naming the refusal, and changes nothing', async () => {
    const at = await liveDistributor()
    at.policy.act = false
    await startNode(res, at.d, { name: 'w1' })
    const handle = at.d.enqueue('noop', {}, { after: HOUR })
    await allAccepted(at.d, [handle])

    const run = await live(at, 'cancel', handle.id)
    expect(run.code).toBe(1)
    expect(run.stdout).toBe('')
    expect(run.stderr).toMatch(
      new RegExp(`^jr: the admin API answered 403 ERR_FORBIDDEN to POST .*/jr/api/jobs/${handle.id}/cancel: .*cancel`),
    )
    const { job } = await liveJson<{ job: AdminJob }>(at, 'job', handle.id)
    expect(job.state).toBe('accepted')

    for (const args of [
      ['pause', 'noop'],
      ['quiet', 'w1'],
      ['retry', handle.id],
    ]) {
      const refused = await live(at, ...args)
      expect(refused.code, args.join(' ')).toBe(1)
      expect(refused.stderr, args.join(' ')).toContain('403 ERR_FORBIDDEN')
    }
    const { nodes } = await liveJson<{ nodes: AdminNode[] }>(at, 'nodes')
    expect(nodes[0]?.state).toBe('accepting')
  })

  it('a wrong token is refused, reading too; JR_URL and JR_TOKEN stand for the flags', async () => {
    const at = await liveDistributor()
    const wrong = await spawnJr(['nodes', '--url', at.url, '--token', 'guess'])
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/^jr: the admin API answered 403 ERR_FORBIDDEN to GET .*\/jr\/api\/nodes: /)

    const fromEnv = await spawnJr(['nodes', '--json'], { JR_URL: at.url, JR_TOKEN: TOKEN })
    expect(fromEnv.code).toBe(0)
    expect(JSON.parse(fromEnv.stdout)).toEqual({ nodes: [] })
  })

  it('an unreachable URL, or one where no admin handler answers, exits 2 saying so', async () => {
    const port = await freePort()
    const down = await spawnJr(['nodes', '--url', `http://127.0.0.1:${port}/jr/`])
    expect(down).toEqual({
      code: 2,
      stdout: '',
      stderr: `jr: cannot reach the admin API at http://127.0.0.1:${port}/jr/: connect ECONNREFUSED 127.0.0.1:${port} (ERR_ADMIN_UNREACHABLE)\n`,
    })

    const at = await liveDistributor()
    const elsewhere = await spawnJr(['nodes', '--url', at.url.replace(/jr$/, 'other')])
    expect(elsewhere.code).toBe(2)
    expect(elsewhere.stderr).toContain("text/plain rather than the admin API's JSON")

    const notUrl = await spawnJr(['nodes', '--url', 'localhost:3000'])
    expect(notUrl.code).toBe(2)
    expect(notUrl.stderr).toMatch(/^jr: admin URL 'localhost:3000' must start with http:\/\/ or https:\/\//)
  })

  it('cancel and retry keep to one way: storage flags with a URL, or a URL-less cancel without --node, are usage errors', async () => {
    const url = 'http://127.0.0.1:1/jr/'
    for (const args of [
      ['cancel', 'j1', '--url', url, '--remove'],
      ['cancel', 'j1', '--url', url, '--node', 'w1'],
      ['retry', 'j1', '--url', url, '--redis', 'redis://127.0.0.1:6379'],
      ['cancel', 'j1'],
      ['cancel', 'j1', '--node', 'w1', '--token', 't'],
      ['nodes'],
    ]) {
      const run = await jr(...args)
      expect(run.code, args.join(' ')).toBe(2)
      expect(run.stderr, args.join(' ')).toMatch(/^error: /)
    }
    const help = await jr('cancel', '--help')
    expect(help.stdout).toContain('With --url: the distributor cancels the job')
    expect(help.stdout).toContain('With --node, on storage only')
  })
})
