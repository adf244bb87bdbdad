import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { AdminAction, AdminHandlerOptions } from '../../src/admin/api/admin-handler.js'
import type { Distributor } from '../../src/distributor/distributor.js'
import { JobRegistry } from '../../src/node/registry.js'
import { Node } from '../../src/node/node.js'
import { config, FIXTURE_JOBS, Resources, startDistributor, startNode } from '../helpers/cluster.js'
import { startRedisServer } from '../helpers/redis-server.js'

/** A JSON answer: its shape is what the assertions check. */
// biome-ignore lint/suspicious/noExplicitAny: the assertions below are the type check
type Json = any

const res = new Resources()
afterEach(() => res.releaseAll())

interface Api {
  url: string
  get(path: string): Promise<{ status: number; body: Json }>
  post(path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: Json }>
}

/** The distributor's admin handler mounted at `/jr/` of a real HTTP server on a loopback port. */
async function serveAdmin(d: Distributor, options: AdminHandlerOptions = {}): Promise<Api> {
  const handler = d.adminHandler(options)
  const server = createServer((req, response) => {
    if (!req.url?.startsWith('/jr/')) {
      response.writeHead(404).end()
      return
    }
    req.url = req.url.slice('/jr'.length)
    handler(req, response)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  res.add(server, (s: Server) => new Promise((resolve) => s.close(resolve)))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jr/`
  const answer = async (response: Response) => ({ status: response.status, body: await response.json() })
  return {
    url,
    get: async (path) => answer(await fetch(url + path)),
    post: async (path, body = {}, headers = {}) =>
      answer(
        await fetch(url + path, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', ...headers },
          body: typeof body === 'string' ? body : JSON.stringify(body),
        }),
      ),
  }
}

const allowAll = { authorize: () => true }

/** A registry whose job `fragile` fails until `state.healthy` is set. */
function fragileJobs(state: { healthy: boolean }): JobRegistry {
  const registry = new JobRegistry()
  registry.define('fragile', (args) => {
    if (!state.healthy) throw new Error('upstream is down')
    args['done'] = true
  })
  return registry
}

/** Resolves after the dispatch pass a change queued (it runs after the microtasks). */
const afterPass = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

function expectError(answer: { status: number; body: Json }, status: number, code: string, fragment?: string): void {
  expect(answer.status).toBe(status)
  expect(answer.body.error.code).toBe(code)
  if (fragment !== undefined) expect(answer.body.error.message).toContain(fragment)
}

describe('admin API: reading', () => {
  it('lists the overview, nodes, routes of pending jobs in pages, and recent failures with their errors', async () => {
    const d = await startDistributor(res, { group: 'web', name: 'web-1' })
    await startNode(res, d, { name: 'w1', concurrency: 3 }, { maxAttempt: 1 })
    const api = await serveAdmin(d)
    await Promise.all([d.enqueue('noop').done, d.enqueue('noop').done])
    await d.enqueue('always_fail').done.catch(() => undefined)
    for (let i = 0; i < 120; i++) d.enqueue('nobody_runs_this', { i })

    const overview = await api.get('api/overview')
    expect(overview.status).toBe(200)
    expect(overview.body).toMatchObject({ group: 'web', member: 'web-1', pending: 120, nodes: 1, failures: 1 })
    const noop = overview.body.names.find((n: { name: string }) => n.name === 'noop')
    expect(noop).toMatchObject({ enqueued: 2, dispatched: 2, success: 2, failed: 0, paused: false })

    const nodes = await api.get('api/nodes')
    expect(nodes.body.nodes).toHaveLength(1)
    expect(nodes.body.nodes[0]).toMatchObject({ name: 'w1', durable: false, concurrency: 3, state: 'accepting' })
    expect(nodes.body.nodes[0].jobs).toContain('noop')
    expect(nodes.body.nodes[0].connectedSince).toBeGreaterThan(0)

    const routes = await api.get('api/pending')
    expect(routes.body.routes).toEqual([
      expect.objectContaining({ route: 'nobody_runs_this', name: 'nobody_runs_this', pending: 120 }),
    ])
    const first = await api.get('api/pending?route=nobody_runs_this&limit=50')
    expect(first.body.total).toBe(120)
    expect(first.body.jobs.map((j: { args: { i: number } }) => j.args.i)).toEqual([...Array(50).keys()])
    expect(first.body.next).toBe(50)
    const last = await api.get('api/pending?route=nobody_runs_this&offset=100&limit=50')
    expect(last.body.jobs).toHaveLength(20)
    expect(last.body.next).toBeNull()

    const failures = await api.get('api/failures')
    expect(failures.body.failures).toHaveLength(1)
    expect(failures.body.failures[0]).toMatchObject({ name: 'always_fail', node: 'w1', run: 1 })
    expect(failures.body.failures[0].error.message).toBe('boom 1')
    expect(failures.body.failures[0].error.stack).toContain('boom 1')
  })

  it("shows a job as the distributor and its node know it, and pages a node's scheduled and periodic jobs", async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const api = await serveAdmin(d)
    const delayed = Array.from({ length: 120 }, (_, i) => d.enqueue('stamp', { i }, { after: 3600 }))
    const periodic = d.enqueue('stamp', {}, { period: 3600, after: 3600 })
    await new Promise<void>((resolve) => {
      let accepted = 0
      d.on('job:accepted', () => {
        if (++accepted === 121) resolve()
      })
    })

    const one = await api.get(`api/jobs/${delayed[7]?.id}`)
    expect(one.body.job).toMatchObject({ id: delayed[7]?.id, name: 'stamp', state: 'accepted', node: 'w1' })
    expect(one.body.job).toMatchObject({ status: 'new', attempt: 0, args: { i: 7 } })

    const seen: string[] = []
    let cursor: string | null = null
    do {
      const page: { body: Json } = await api.get(
        `api/nodes/w1/jobs?kind=scheduled&limit=50${cursor === null ? '' : `&cursor=${cursor}`}`,
      )
      expect(page.body.jobs.length).toBeLessThanOrEqual(50)
      seen.push(...page.body.jobs.map((j: { id: string }) => j.id))
      cursor = page.body.next
    } while (cursor !== null)
    expect(seen.sort()).toEqual(delayed.map((h) => h.id).sort())

    const periodicPage = await api.get('api/nodes/w1/jobs?kind=periodic')
    expect(periodicPage.body.jobs).toEqual([expect.objectContaining({ id: periodic.id, period: 3600 })])

    const hung = d.enqueue('hang', { stuck: true })
    await new Promise((resolve) => d.once('job:accepted', resolve))
    const running = await api.get('api/nodes/w1/jobs?kind=running')
    expect(running.body.jobs).toEqual([expect.objectContaining({ id: hung.id, name: 'hang' })])
  })
})

describe('admin API: acting', () => {
  it('cancels a delayed job (its done settles) and refuses actions without an authorize hook', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const readOnly = await serveAdmin(d)
    const api = await serveAdmin(d, allowAll)
    const handle = d.enqueue('stamp', { keep: 1 }, { after: 3600 })
    await new Promise((resolve) => d.once('job:accepted', resolve))

    expectError(await readOnly.post(`api/jobs/${handle.id}/cancel`), 403, 'ERR_FORBIDDEN', 'authorize')
    expect(d.activeCount).toBe(1)

    const answer = await api.post(`api/jobs/${handle.id}/cancel`)
    expect(answer).toEqual({ status: 200, body: { id: handle.id, cancelled: true } })
    await expect(handle.done).resolves.toMatchObject({ keep: 1 })
    expect((await api.post(`api/jobs/${handle.id}/cancel`)).body.cancelled).toBe(false)
  })

  it('retries a failed job now on its durable node; the result reaches the named handler', async () => {
    const redis = await startRedisServer()
    res.add(redis, (r) => r.stop())
    const state = { healthy: false }
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1', registry: fragileJobs(state), storage: redis.url }, { maxAttempt: 1 })
    const api = await serveAdmin(d, allowAll)
    const handle = d.enqueue('fragile', { order: 42 })
    await expect(handle.done).rejects.toMatchObject({ code: 'ERR_JOB_FAILED' })
    expectError(
      await api.post(`api/jobs/${handle.id}/retry`, { node: 'nobody' }),
      502,
      'ERR_NODE_UNAVAILABLE',
      'nobody',
    )

    // The node keeps it, failed, with the error that ended it.
    const failed = await api.get('api/nodes/w1/jobs?kind=failed')
    expect(failed.body.jobs).toEqual([expect.objectContaining({ id: handle.id, status: 'failed', attempt: 1 })])
    expect(failed.body.jobs[0].lastError.message).toBe('upstream is down')
    const delivered = new Promise<Record<string, unknown>>((resolve) => d.onFeedback('fragile', { success: resolve }))
    state.healthy = true
    const answer = await api.post(`api/jobs/${handle.id}/retry`)
    expect(answer).toEqual({ status: 200, body: { id: handle.id, node: 'w1', retried: true } })
    await expect(delivered).resolves.toMatchObject({ order: 42, done: true })
    expect((await api.get('api/failures')).body.failures).toEqual([])
    // Done now, and removed (removeDoneJobs): a second retry finds nothing.
    expectError(await api.post(`api/jobs/${handle.id}/retry`, { node: 'w1' }), 404, 'ERR_NOT_FOUND', handle.id)
  })

  it("pages a durable node's failed jobs by the store's cursor, each once", async () => {
    const redis = await startRedisServer()
    res.add(redis, (r) => r.stop())
    const d = await startDistributor(res)
    await startNode(
      res,
      d,
      { name: 'w1', registry: fragileJobs({ healthy: false }), storage: redis.url },
      { maxAttempt: 1 },
    )
    const api = await serveAdmin(d, allowAll)
    const handles = Array.from({ length: 5 }, (_, i) => d.enqueue('fragile', { order: i }))
    for (const handle of handles) await expect(handle.done).rejects.toMatchObject({ code: 'ERR_JOB_FAILED' })

    const listed: string[] = []
    const sizes: number[] = []
    let cursor: string | null = null
    do {
      const query: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`
      const page: { status: number; body: Json } = await api.get(`api/nodes/w1/jobs?kind=failed&limit=2${query}`)
      expect(page.status).toBe(200)
      sizes.push(page.body.jobs.length)
      listed.push(...page.body.jobs.map((j: Json) => j.id))
      cursor = page.body.next
    } while (cursor !== null)
    expect(sizes).toEqual([2, 2, 1])
    expect(listed.sort()).toEqual(handles.map((h) => h.id).sort())
  })

  it('a retry asked through another distributor of the node runs there: the result comes to the one that asked', async () => {
    const redis = await startRedisServer()
    res.add(redis, (r) => r.stop())
    const state = { healthy: false }
    const d1 = await startDistributor(res, { name: 'd1' })
    const d2 = await startDistributor(res, { name: 'd2' })
    const node = new Node(
      {
        name: 'w1',
        distributors: [`127.0.0.1:${d1.port}`, `127.0.0.1:${d2.port}`],
        jobDirectory: FIXTURE_JOBS,
        registry: fragileJobs(state),
        storage: redis.url,
      },
      config({ maxAttempt: 1 }),
    )
    res.add(node, (n) => n.close({ force: true }))
    const both = Promise.all([d1, d2].map((d) => d.waitFor('node:connect', (e) => e.node === 'w1')))
    await node.start()
    await both
    const api2 = await serveAdmin(d2, allowAll)
    const handle = d1.enqueue('fragile', { order: 7 })
    await expect(handle.done).rejects.toMatchObject({ code: 'ERR_JOB_FAILED' })
    const atD1 = vi.fn()
    d1.onFeedback('fragile', { success: atD1 })
    d1.on('feedback:orphan', atD1)
    const atD2 = new Promise<Record<string, unknown>>((resolve) => d2.onFeedback('fragile', { success: resolve }))
    state.healthy = true
    expect((await api2.post(`api/jobs/${handle.id}/retry`, { node: 'w1' })).body).toEqual({
      id: handle.id,
      node: 'w1',
      retried: true,
    })
    await expect(atD2).resolves.toMatchObject({ order: 7, done: true })
    expect(d2.activeCount).toBe(0)
    expect(atD1).not.toHaveBeenCalled()
  })

  it('quiets a node (it takes no new jobs until lifted) and pauses a job name at the distributor', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const api = await serveAdmin(d, allowAll)

    expect((await api.post('api/nodes/w1/quiet')).body).toEqual({ node: 'w1', quiet: true })
    expect((await api.get('api/nodes')).body.nodes[0]).toMatchObject({ state: 'quiet', accepting: false })
    const held = d.enqueue('noop')
    await afterPass()
    expect(d.pendingCount).toBe(1)
    expect((await api.post('api/nodes/w1/quiet', { quiet: false })).body).toEqual({ node: 'w1', quiet: false })
    await held.done

    expect((await api.post('api/names/noop/pause')).body).toEqual({ name: 'noop', paused: true })
    const paused = d.enqueue('noop')
    const other = d.enqueue('echo')
    await other.done
    expect(d.pendingCount).toBe(1)
    const overview = await api.get('api/overview')
    expect(overview.body.names.find((n: { name: string }) => n.name === 'noop')).toMatchObject({
      paused: true,
      pending: 1,
    })
    expect((await api.post('api/names/noop/resume')).body).toEqual({ name: 'noop', paused: false })
    await paused.done
  })

  it('passes each request to authorize, telling reading from acting', async () => {
    const d = await startDistributor(res)
    const seen: AdminAction[] = []
    const api = await serveAdmin(d, {
      authorize: (req: IncomingMessage, action) => {
        seen.push(action)
        return req.headers.authorization === 'Bearer s3cret'
      },
    })
    expectError(await api.get('api/overview'), 403, 'ERR_FORBIDDEN', 'read overview')
    const ok = await fetch(`${api.url}api/overview`, { headers: { Authorization: 'Bearer s3cret' } })
    expect(ok.status).toBe(200)
    expectError(await api.post('api/names/noop/pause'), 403, 'ERR_FORBIDDEN', 'pause noop')
    expect(d.pausedNames).toEqual([])
    expect(seen).toEqual([
      { kind: 'read', what: 'overview' },
      { kind: 'read', what: 'overview' },
      { kind: 'act', name: 'pause', target: 'noop' },
    ])
    await d.close()
    const closed = await fetch(`${api.url}api/overview`, { headers: { Authorization: 'Bearer s3cret' } })
    expect(closed.status).toBe(503)
    expect(((await closed.json()) as { error: { code: string } }).error.code).toBe('ERR_DISTRIBUTOR_CLOSED')
  })
})

describe('admin API: bad requests get a 4xx naming what is wrong, and change nothing', () => {
  it('refuses bad ids, paths, methods, parameters, bodies and cross-site actions', async () => {
    const d = await startDistributor(res)
    await startNode(res, d, { name: 'w1' })
    const api = await serveAdmin(d, allowAll)
    const handle = d.enqueue('stamp', {}, { after: 3600 })
    await new Promise((resolve) => d.once('job:accepted', resolve))
    const id = handle.id

    expectError(await api.get('api/jobs/no-such-id'), 404, 'ERR_NOT_FOUND', 'no-such-id')
    expectError(await api.post(`api/jobs/${id}/explode`), 404, 'ERR_NOT_FOUND', 'explode')
    expectError(await api.get('api/nope'), 404, 'ERR_NOT_FOUND', 'api/nope')
    expectError(await api.get(`api/jobs/${id}/cancel`), 405, 'ERR_METHOD_NOT_ALLOWED', 'POST')
    expectError(await api.post('api/overview'), 405, 'ERR_METHOD_NOT_ALLOWED', 'GET')
    expectError(await api.get('api/failures?limit=0'), 400, 'ERR_BAD_REQUEST', "'limit'")
    expectError(await api.get('api/pending?route=x&offset=-1'), 400, 'ERR_BAD_REQUEST', "'offset'")
    expectError(await api.get('api/pending?route=nothing-here'), 404, 'ERR_NOT_FOUND', 'nothing-here')
    expectError(await api.get('api/nodes/w1/jobs?kind=done'), 400, 'ERR_BAD_REQUEST', "'kind'")
    expectError(await api.get('api/nodes/ghost/jobs'), 502, 'ERR_NODE_UNAVAILABLE', 'ghost')
    expectError(await api.get('api/jobs/%E0%A4%A'), 400, 'ERR_BAD_REQUEST', 'percent-encoding')
    expectError(await api.post(`api/jobs/${id}/cancel`, '{"unterminated'), 400, 'ERR_BAD_REQUEST', 'not JSON')
    expectError(await api.post(`api/jobs/${id}/cancel`, '[1]'), 400, 'ERR_BAD_REQUEST', 'JSON object')
    expectError(await api.post(`api/jobs/${id}/cancel`, { force: true }), 400, 'ERR_BAD_REQUEST', "'force'")
    expectError(await api.post('api/nodes/w1/quiet', { quiet: 'yes' }), 400, 'ERR_BAD_REQUEST', "'quiet'")
    expectError(
      await api.post(`api/jobs/${id}/cancel`, {}, { 'Content-Type': 'text/plain' }),
      415,
      'ERR_UNSUPPORTED_MEDIA_TYPE',
    )
    expectError(
      await api.post(`api/jobs/${id}/cancel`, {}, { Origin: 'https://evil.example' }),
      403,
      'ERR_CROSS_SITE',
      'evil.example',
    )
    expectError(await api.post(`api/jobs/${id}/cancel`, {}, { 'Sec-Fetch-Site': 'cross-site' }), 403, 'ERR_CROSS_SITE')
    expectError(await api.post(`api/jobs/${id}/retry`), 404, 'ERR_NOT_FOUND', 'node')
    expectError(await api.post(`api/jobs/${id}/retry`, { node: 'w1' }), 409, 'ERR_CONFLICT', 'not failed')

    expect(d.activeCount).toBe(1)
    expect((await api.get(`api/jobs/${id}`)).body.job.state).toBe('accepted')
    expect((await api.get('api/nodes')).body.nodes[0].state).toBe('accepting')
    expect(() => d.adminHandler({ authorize: 'yes' } as never)).toThrow("'authorize' must be a function")
    expect(() => d.adminHandler({ eventIntervalMs: 5 })).toThrow("'eventIntervalMs'")
    expect(() => d.adminHandler({ token: 'x' } as never)).toThrow("unknown admin handler option 'token'")
  })
})

describe('admin API: live events', () => {
  it('streams the overview and nodes at once, a node that connects, and each failure', async () => {
    const d = await startDistributor(res)
    const api = await serveAdmin(d, { eventIntervalMs: 100 })
    const controller = new AbortController()
    res.add(controller, (c) => c.abort())
    const response = await fetch(`${api.url}api/events`, { signal: controller.signal })
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    const events = sseEvents(response)

    expect((await nextEvent(events, 'overview')).nodes).toBe(0)
    expect((await nextEvent(events, 'nodes')).nodes).toEqual([])
    await startNode(res, d, { name: 'w1' }, { maxAttempt: 1 })
    const nodes = await nextEvent(events, 'nodes', (data) => data.nodes.length === 1)
    expect(nodes.nodes[0].name).toBe('w1')
    await d.enqueue('always_fail').done.catch(() => undefined)
    const failure = await nextEvent(events, 'failure')
    expect(failure).toMatchObject({ name: 'always_fail', node: 'w1', error: { message: 'boom 1' } })
    expect((await nextEvent(events, 'overview', (data) => data.failures === 1)).nodes).toBe(1)
  })
})

type SseEvent = { event: string; data: Json }

/** The events of a Server-Sent Events response, parsed as they arrive. */
async function* sseEvents(response: Response): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder()
  let buffer = ''
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true })
    for (let end = buffer.indexOf('\n\n'); end !== -1; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message'
      const data = /^data: (.*)$/m.exec(block)?.[1]
      if (data !== undefined) yield { event, data: JSON.parse(data) }
    }
  }
}

async function nextEvent(
  events: AsyncGenerator<SseEvent>,
  name: string,
  until: (data: Json) => boolean = () => true,
): Promise<Json> {
  for (;;) {
    const { value, done } = await events.next()
    if (done === true) throw new Error(`the stream ended before a '${name}' event`)
    if (value.event === name && until(value.data)) return value.data
  }
}
