// The admin API under load: a distributor in this process holding a million jobs for 100
// nodes, its adminHandler() mounted on a node:http server, read as a dashboard reads it.
// Everything shares this one process and its event loop: the distributor, the nodes (99
// light protocol peers and one real Node with memory storage) and the HTTP client, so every
// latency here includes the client's side too.
import { createServer, get, Agent } from 'node:http'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep, setImmediate as yieldToLoop } from 'node:timers/promises'
import { pino } from 'pino'
import { Distributor, JobRegistry, Node, DEFAULT_CONFIG } from '../../dist/index.js'
import { overviewView, toJson } from '../../dist/admin/api/views.js'
import { connectLightPeer } from '../lib/light-peer.js'
import { countAccepted } from './job-reactor.js'
import { hrMs, latencySummary } from '../lib/stats.js'

const CHUNK = 1_000
const log = pino({ name: 'job-reactor', level: 'warn' }, pino.destination(2))

/** Enqueues `count` jobs of `name`, a chunk per loop turn; returns the first handle's id. */
async function enqueueMany(ctx, distributor, count, name, opts = {}) {
  let first
  for (let i = 0; i < count; ) {
    const end = Math.min(count, i + CHUNK)
    for (; i < end; i++) {
      const handle = distributor.enqueue(name, { i }, opts)
      first ??= handle.id
    }
    ctx.throwIfAborted()
    await yieldToLoop()
  }
  return first
}

/** GET `path` of the admin API: ms to the last byte of the answer (the body is not parsed). */
function timedGet(base, agent, path) {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint()
    get(base + path, { agent }, (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => {
        const ms = hrMs(start)
        const body = Buffer.concat(chunks).toString()
        if (res.statusCode !== 200) reject(new Error(`GET ${path}: ${res.statusCode} ${body.slice(0, 200)}`))
        else resolve({ ms, body, bytes: body.length })
      })
    }).on('error', reject)
  })
}

/** `times` GETs of `path` after 2 unrecorded: median and max ms, and the answer's size. */
async function measure(ctx, base, agent, path, times) {
  for (let i = 0; i < 2; i++) await timedGet(base, agent, path)
  const samples = []
  let bytes = 0
  for (let i = 0; i < times; i++) {
    const r = await timedGet(base, agent, path)
    samples.push(r.ms)
    bytes = r.bytes
    ctx.throwIfAborted()
  }
  const s = latencySummary(samples)
  ctx.progress(`GET ${path}: median ${s.p50.toFixed(2)} ms, max ${s.max.toFixed(2)} ms, ${bytes} B`)
  return s
}

/** Opens api/events: ms to its first `overview` event; `close()` ends the stream. */
function openEvents(base) {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint()
    let seen = ''
    let overviews = 0
    let firstMs
    const req = get(`${base}api/events`, (res) => {
      res.setEncoding('utf8')
      res.on('data', (chunk) => {
        // Only the count of overview events matters: the tail kept is enough to find the next.
        seen = (seen + chunk).slice(-64 * 1024)
        const n = seen.split('event: overview\n').length - 1
        if (n > 0 && firstMs === undefined) {
          firstMs = hrMs(start)
          resolve({ firstMs, overviews: () => overviews, close: () => req.destroy() })
        }
        overviews += n
        seen = seen.slice(seen.lastIndexOf('event: overview\n') + 1)
      })
    })
    req.on('error', (err) => {
      if (firstMs === undefined) reject(err)
    })
  })
}

const SAMPLE_MS = 1

/**
 * The loop delay of this process over `ms`: p50, p99 and max in ms, beyond the sampling
 * interval (the histogram records the whole time between two samples, interval included).
 */
async function loopDelay(ms) {
  const h = monitorEventLoopDelay({ resolution: SAMPLE_MS })
  h.enable()
  await sleep(ms)
  h.disable()
  const late = (ns) => Math.max(0, ns / 1e6 - SAMPLE_MS)
  return { p50: late(h.percentile(50)), p99: late(h.percentile(99)), max: late(h.max) }
}

/**
 * A distributor holding `pending + peers × perPeer + delayed` jobs (a million by default)
 * with `peers + 1` nodes connected: `pending` jobs of a name no node runs, `perPeer` instant
 * jobs held by each light peer (they never finish), `delayed` jobs (due in an hour) held by
 * one real in-process Node with memory storage, which also failed `failures` jobs for good.
 * Then each read of the admin API, `times` times.
 */
export async function runAdmin(
  ctx,
  { pending = 701_000, peers = 99, perPeer = 1_000, delayed = 200_000, failures = 150, times = 20 } = {},
) {
  const distributor = new Distributor({ port: 0, logger: log, maxPending: 2_000_000 })
  await distributor.start()
  ctx.defer(() => distributor.close())

  const registry = new JobRegistry()
  registry.define('later', () => {})
  registry.define('boom', () => {
    throw new Error('boom')
  })
  const node = new Node(
    {
      name: 'real-1',
      distributors: [`127.0.0.1:${distributor.port}`],
      registry,
      storage: 'memory',
      // Its jobs that fail on purpose would log each failure.
      logLevel: 'error',
    },
    DEFAULT_CONFIG,
  )
  // Deferred after the distributor, so it closes first: a node that loses its distributor redials.
  ctx.defer(() => node.close({ force: true }))
  const nodeUp = distributor.waitFor('node:connect', (e) => e.node === 'real-1')
  await node.start()
  await nodeUp

  const t0 = process.hrtime.bigint()
  const light = []
  for (let i = 0; i < peers; i++) {
    light.push(await connectLightPeer(distributor.port, { name: `peer-${i}`, jobs: ['held'], window: perPeer }))
  }
  ctx.defer(() => {
    for (const p of light) p.close()
  })
  ctx.progress(`${peers} light peers and 1 real node connected in ${(hrMs(t0) / 1000).toFixed(1)} s`)

  const heldIn = countAccepted(distributor, 'held', peers * perPeer)
  await enqueueMany(ctx, distributor, peers * perPeer, 'held')
  await heldIn
  const delayedIn = countAccepted(distributor, 'later', delayed)
  const delayedId = await enqueueMany(ctx, distributor, delayed, 'later', { after: 3600 })
  await delayedIn
  const failed = []
  for (let i = 0; i < failures; i++)
    failed.push(distributor.enqueue('boom', { i }, { maxAttempt: 1 }).done.catch(() => {}))
  await Promise.all(failed)
  const pendingId = await enqueueMany(ctx, distributor, pending, 'nobody')
  ctx.progress(
    `holding ${(pending + peers * perPeer + delayed).toLocaleString('en-US')} jobs after ${(hrMs(t0) / 1000).toFixed(1)} s`,
  )
  // The burst of setup leaves garbage and unoptimised code behind: let both settle.
  globalThis.gc?.()
  await sleep(2_000)

  const admin = distributor.adminHandler()
  const server = createServer((req, res) => {
    if (!req.url?.startsWith('/jr/')) return res.writeHead(404).end()
    req.url = req.url.slice('/jr'.length)
    admin(req, res)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  ctx.defer(() => new Promise((resolve) => server.close(resolve)))
  // A dashboard's browser keeps its connection.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  ctx.defer(() => agent.destroy())
  const base = `http://127.0.0.1:${server.address().port}/jr/`

  const overview = JSON.parse((await timedGet(base, agent, 'api/overview')).body)
  ctx.progress(
    `overview: pending ${overview.pending}, active ${overview.active}, inFlight ${overview.inFlight}, nodes ${overview.nodes}, failures ${overview.failures}`,
  )
  const route = JSON.parse((await timedGet(base, agent, 'api/pending')).body).routes.find((r) => r.name === 'nobody')
  const r = encodeURIComponent(route.route)
  const m = async (path) => measure(ctx, base, agent, path, times)

  const result = {}
  const put = (key, s) => {
    result[`${key}P50`] = s.p50
    result[`${key}Max`] = s.max
  }
  put('overview', await m('api/overview'))
  put('nodes', await m('api/nodes'))
  put('routes', await m('api/pending'))
  put('pageFirst', await m(`api/pending?route=${r}&offset=0&limit=50`))
  put('pageLate', await m(`api/pending?route=${r}&offset=${pending - 100}&limit=50`))
  put('pageMax', await m(`api/pending?route=${r}&offset=${pending >> 1}&limit=500`))
  put('jobPending', await m(`api/jobs/${pendingId}`))
  put('jobOnNode', await m(`api/jobs/${delayedId}`))
  put('failures', await m('api/failures?limit=100'))
  put('nodeJobsFirst', await m('api/nodes/real-1/jobs?kind=scheduled&limit=50'))
  put('nodeJobsLate', await m(`api/nodes/real-1/jobs?kind=scheduled&cursor=${delayed - 100}&limit=50`))

  const firsts = []
  for (let i = 0; i < times; i++) {
    const stream = await openEvents(base)
    firsts.push(stream.firstMs)
    stream.close()
  }
  const f = latencySummary(firsts)
  ctx.progress(`api/events, first overview: median ${f.p50.toFixed(2)} ms, max ${f.max.toFixed(2)} ms`)
  put('eventsFirst', f)

  // The distributor's loop, idle and then with a dashboard's live stream open.
  const idle = await loopDelay(5_000)
  const stream = await openEvents(base)
  const streamed = await loopDelay(10_000)
  const overviewsSeen = stream.overviews()
  stream.close()
  ctx.progress(
    `loop delay idle p50/p99/max ${idle.p50.toFixed(1)}/${idle.p99.toFixed(1)}/${idle.max.toFixed(1)} ms; with the stream open ${streamed.p50.toFixed(1)}/${streamed.p99.toFixed(1)}/${streamed.max.toFixed(1)} ms (${overviewsSeen} overviews received)`,
  )
  result.loopIdleP99 = idle.p99
  result.loopIdleMax = idle.max
  result.loopStreamP50 = streamed.p50
  result.loopStreamP99 = streamed.p99
  result.loopStreamMax = streamed.max

  // What the live stream's timer does per tick, once for all its clients (the context is
  // the distributor's private view: read here as the handler reads it).
  const context = distributor.adminContext()
  const cpu = []
  for (let i = 0; i < 200; i++) {
    const start = process.cpuUsage()
    toJson(overviewView(context, Date.now()))
    const used = process.cpuUsage(start)
    cpu.push((used.user + used.system) / 1000)
  }
  result.overviewCpuMs = latencySummary(cpu).p50
  return result
}
