// Cases 2–6: job-reactor end to end. The distributor lives in this process; nodes are
// `jr-node` child processes started from the built CLI with the job files in bench/jobs.
import { createServer as createHttpServer } from 'node:http'
import { createServer } from 'node:net'
import { setTimeout as sleep, setImmediate as yieldToLoop } from 'node:timers/promises'
import { pino } from 'pino'
import { Distributor } from '../../dist/index.js'
import { collectAndMeasure } from '../lib/gc.js'
import { processCpuMs } from '../lib/load.js'
import { hrMs, latencySummary } from '../lib/stats.js'

const ENQUEUE_CHUNK = 1_000
/** Extra Node flags for every jr-node child, e.g. JR_BENCH_NODE_FLAGS='--cpu-prof' to profile. */
const EXTRA_NODE_FLAGS = (process.env.JR_BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean)

/** The distributor logs to stderr, so that stdout holds only the table. */
const distributorLog = pino({ name: 'job-reactor', level: 'warn' }, pino.destination(2)).child({ distributor: 'bench' })

/** A distributor on a free port plus one `jr-node` child per name, all connected. */
async function startCluster(
  ctx,
  names,
  { storage = 'memory', nodeFlags = [], nodeArgs = () => [], maxPending, spool, pids = [], limits } = {},
) {
  const options = { port: 0, logger: distributorLog }
  if (limits !== undefined) options.limits = limits
  if (maxPending !== undefined) options.maxPending = maxPending
  // The distributor's own durable spool (a Redis URL), under a group of its own per run.
  if (spool !== undefined) Object.assign(options, { storage: spool, group: `bench-${process.pid}-${Date.now()}` })
  const distributor = new Distributor(options)
  await distributor.start()
  try {
    await Promise.all(
      names.map(async (name) => {
        const connected = distributor.waitFor('node:connect', (e) => e.node === name)
        const node = ctx.spawnNode(name, [
          '--expose-gc',
          ...EXTRA_NODE_FLAGS,
          ...nodeFlags,
          'bin/jr-node.js',
          '--name',
          name,
          '--distributor',
          `127.0.0.1:${distributor.port}`,
          '--jobs',
          'bench/jobs',
          '--storage',
          storage,
          '--log-level',
          'warn',
          ...nodeArgs(name),
        ])
        pids.push(node.pid)
        await Promise.race([
          connected,
          node.exited.then(({ code, signal }) => {
            throw new Error(`${name} exited (code ${code}, signal ${signal}) before it connected`)
          }),
        ])
      }),
    )
  } finally {
    // Deferred after the nodes, so it runs before they are stopped: nodes that lose their
    // distributor just redial, while a distributor that loses nodes re-queues their jobs.
    ctx.defer(() => distributor.close())
  }
  return distributor
}

/** Enqueues `count` jobs in chunks, letting the loop turn between chunks; returns the done promises. */
async function enqueueMany(ctx, distributor, count, name, opts) {
  const dones = new Array(count)
  // An array of options: job i gets the (i mod length)th (a limitKey each, say); a function: job i gets opts(i).
  const many = Array.isArray(opts) ? opts : [opts]
  const optsOf = typeof opts === 'function' ? opts : (i) => many[i % many.length]
  for (let i = 0; i < count; ) {
    const end = Math.min(count, i + ENQUEUE_CHUNK)
    for (; i < end; i++) dones[i] = distributor.enqueue(name, {}, optsOf(i)).done
    ctx.throwIfAborted()
    await yieldToLoop()
  }
  return dones
}

/** Runs one 'mem' job on `node` and returns the memoryUsage() it reported. */
async function nodeMemory(distributor, node) {
  return distributor.enqueue('mem', {}, { node }).done
}

/** A TCP port free now on the loopback address (for a child to listen on). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/**
 * Serves the distributor's metrics as an application would (its handler on an HTTP server
 * in this process) and starts a scraper process that GETs them and each node's `/metrics`
 * every second, as Prometheus would.
 */
async function scrapeEverySecond(ctx, distributor, nodePorts) {
  const server = createHttpServer(distributor.metricsHandler())
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  ctx.defer(() => new Promise((resolve) => server.close(resolve)))
  const urls = [server.address().port, ...nodePorts].map((port) => `http://127.0.0.1:${port}/metrics`)
  const scraper = ctx.spawnNode('scraper', ['bench/scraper.js', ...urls])
  await scraper.waitForLine((line) => line === 'scraping')
}

/**
 * CPU time, in ms, used so far by this process (the distributor) and the nodes `pids`:
 * steadier than throughput when other work shares the machine. Undefined off Linux.
 */
function cpuOf(pids) {
  const own = process.cpuUsage()
  let ms = (own.user + own.system) / 1000
  for (const pid of pids) {
    const used = processCpuMs(pid)
    if (used === undefined) return undefined
    ms += used
  }
  return ms
}

/** CPU time of one scrape of the distributor's metrics, in ms: the median of `count`, taken while idle. */
async function scrapeCost(distributor, count = 50) {
  const samples = []
  for (let i = 0; i < count; i++) {
    const start = process.cpuUsage()
    await distributor.metrics.metrics()
    const used = process.cpuUsage(start)
    samples.push((used.user + used.system) / 1000)
  }
  return latencySummary(samples).p50
}

/**
 * Throughput: `count` no-op jobs, first enqueue until every done resolved. With `scrape`,
 * the nodes serve their metrics (`--metrics-port`), the distributor's are served over HTTP,
 * and a scraper process reads them all every second; then the CPU time of one scrape of the
 * distributor's metrics is measured, idle.
 */
export async function runThroughput(
  ctx,
  { count, warmup, storage, names, spool, scrape = false, limited, keyed = false, job = 'noop' },
) {
  const ports = new Map()
  if (scrape) for (const name of names) ports.set(name, await freePort())
  const nodeArgs = (name) => (ports.has(name) ? ['--metrics-port', String(ports.get(name))] : [])
  const pids = []
  // `limited`: { concurrency, keys }: 'noop' limited per key, the jobs spread over `keys` keys.
  const limits = limited === undefined ? undefined : { noop: { concurrency: limited.concurrency, perKey: true } }
  let opts = limited === undefined ? {} : Array.from({ length: limited.keys }, (_, i) => ({ limitKey: `k${i}` }))
  // `keyed`: every job with a unique key of its own (claimed with the spool write, when spooled).
  let keys = 0
  if (keyed) opts = () => ({ unique: { key: `u${keys++}` } })
  const distributor = await startCluster(ctx, names, { storage, spool, nodeArgs, pids, limits })
  if (scrape) await scrapeEverySecond(ctx, distributor, [...ports.values()])
  await Promise.all(await enqueueMany(ctx, distributor, warmup, job, opts))
  const cpuBefore = cpuOf(pids)
  const start = process.hrtime.bigint()
  const dones = await enqueueMany(ctx, distributor, count, job, opts)
  const enqueueSeconds = hrMs(start) / 1000
  await Promise.all(dones)
  const seconds = hrMs(start) / 1000
  const cpuPerJob = cpuBefore === undefined ? undefined : ((cpuOf(pids) - cpuBefore) * 1000) / count
  ctx.progress(
    `job-reactor ${storage === 'memory' ? 'memory' : 'redis'}${spool === undefined ? '' : ' nodes, spooled distributor'}${keyed ? ', a unique key per job' : ''}${scrape ? ', metrics scraped' : ''}${limited === undefined ? '' : `, limited ${limited.concurrency} per key over ${limited.keys} keys`}${job === 'noop' ? '' : `, ${job}`}: ${count} jobs in ${seconds.toFixed(2)} s (enqueue loop ${enqueueSeconds.toFixed(2)} s)`,
  )
  const result = { throughput: count / seconds }
  if (cpuPerJob !== undefined) result.cpuPerJob = cpuPerJob
  if (scrape) result.scrapeMs = await scrapeCost(distributor)
  return result
}

/** Latency: `count` jobs one at a time, enqueue → done. */
export async function runLatency(ctx, { count, warmup }) {
  const distributor = await startCluster(ctx, ['lat1'])
  for (let i = 0; i < warmup; i++) await distributor.enqueue('noop').done
  const samples = new Array(count)
  for (let i = 0; i < count; i++) {
    const start = process.hrtime.bigint()
    await distributor.enqueue('noop').done
    samples[i] = hrMs(start)
    if (i % 1000 === 0) ctx.throwIfAborted()
  }
  const s = latencySummary(samples)
  return { p50: s.p50, p90: s.p90, p99: s.p99, max: s.max }
}

/** Resolves once `count` jobs named `name` were accepted by a node. */
export function countAccepted(distributor, name, count) {
  return new Promise((resolve) => {
    let n = 0
    const onAccepted = (e) => {
      if (e.name !== name || ++n < count) return
      distributor.off('job:accepted', onAccepted)
      resolve()
    }
    distributor.on('job:accepted', onAccepted)
  })
}

/**
 * Delayed jobs on one node: scheduling rate (enqueue → all accepted), the node's and the
 * distributor's memory per held job, then either the fire lateness of every job (`after`
 * short) or the latency of instant jobs while all of them are held (`after` long).
 */
export async function runDelayed(ctx, { count, after, probes = 0, warmup, nodeFlags = [] }) {
  const node = 'delay1'
  const distributor = await startCluster(ctx, [node], { nodeFlags, maxPending: Math.max(1_000_000, count * 2) })
  await Promise.all(await enqueueMany(ctx, distributor, warmup, 'noop', {}))
  // The timer path too (schedule, hold, fire): a node fresh from start runs its first few
  // thousand firings unoptimised, which would put its JIT warm-up, not its steady state,
  // into the lateness of the first jobs due.
  await Promise.all(await enqueueMany(ctx, distributor, warmup, 'stamp', { after: 0.5 }))
  // A closed connection stays reachable (through its 2 s destroy timer) for a moment after
  // the previous run's distributor closed, and with it every job that run held: wait until
  // it is released, or this run's baseline would include it.
  await sleep(2_500)
  const nodeBefore = await nodeMemory(distributor, node)
  const distBefore = collectAndMeasure()

  const lateness = []
  let failed = 0
  let finished = 0
  let allDone
  const done = new Promise((resolve) => (allDone = resolve))
  // Shared closures: nothing per job in this process beyond what the distributor keeps.
  const onSuccess = (args) => {
    lateness.push(args.late)
    if (++finished === count) allDone()
  }
  const onError = () => {
    failed++
    if (++finished === count) allDone()
  }
  const accepted = countAccepted(distributor, 'stamp', count)
  const start = process.hrtime.bigint()
  for (let i = 0; i < count; ) {
    const end = Math.min(count, i + ENQUEUE_CHUNK)
    for (; i < end; i++) distributor.enqueue('stamp', {}, { after }, onSuccess, onError)
    ctx.throwIfAborted()
    await yieldToLoop()
  }
  await accepted
  const scheduleSeconds = hrMs(start) / 1000
  ctx.progress(`job-reactor delayed: ${count} jobs (after ${after} s) accepted in ${scheduleSeconds.toFixed(2)} s`)

  const nodeAfter = await nodeMemory(distributor, node)
  const distAfter = collectAndMeasure()
  const result = {
    scheduleRate: count / scheduleSeconds,
    nodeHeapPerJob: (nodeAfter.heapUsed + nodeAfter.external - nodeBefore.heapUsed - nodeBefore.external) / count,
    nodeRssPerJob: (nodeAfter.rss - nodeBefore.rss) / count,
    distributorHeapPerJob:
      (distAfter.heapUsed + distAfter.external - distBefore.heapUsed - distBefore.external) / count,
  }
  if (probes > 0) {
    // The node holds every delayed job: how responsive is it for instant work? As many probes
    // again go first, unrecorded: right after the burst both processes are still collecting
    // it, and the latency case measures warm too.
    const samples = []
    for (let i = 0; i < 2 * probes; i++) {
      const t = process.hrtime.bigint()
      await distributor.enqueue('noop', {}, { node }).done
      if (i >= probes) samples.push(hrMs(t))
    }
    const s = latencySummary(samples)
    result.probeP50 = s.p50
    result.probeP99 = s.p99
    return result
  }
  await done
  const s = latencySummary(lateness)
  result.lateP50 = s.p50
  result.lateP99 = s.p99
  result.lateMax = s.max
  if (failed > 0) result.failed = failed
  return result
}
