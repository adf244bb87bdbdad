// `npm run bench`: job-reactor end to end, side by side with a bare msgpack echo (the ceiling
// for this design), BullMQ and bee-queue on the same Redis. Prints one table on stdout and
// writes bench/results-<timestamp>.json; progress goes to stderr.
//
//   node --import tsx bench/run.js [--quick] [--only=case1,case2] [--runs=N]
//
// --quick: smaller counts, one run each, no million-job case. --only: case ids or their
// prefixes (e.g. --only=jr,echo). Numbers are reported, never asserted.
// JR_BENCH_NODE_FLAGS adds Node flags to the jr-node children (e.g. '--cpu-prof').
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runAdmin } from './cases/admin.js'
import { runBeeLatency, runBeeThroughput } from './cases/bee-queue.js'
import { runBullDelayed, runBullLatency, runBullThroughput } from './cases/bullmq.js'
import { runEcho } from './cases/echo.js'
import { runDelayed, runLatency, runThroughput } from './cases/job-reactor.js'
import { busyFraction } from './lib/load.js'
import { killAllChildren, spawnNode } from './lib/proc.js'
import { startRedisServer } from './lib/redis.js'
import { fmt, median, minMax, pad } from './lib/stats.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

// --- options -------------------------------------------------------------------------

const argv = process.argv.slice(2)
const quick = argv.includes('--quick')
const only = argv
  .find((a) => a.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',')
  .filter(Boolean)
const runsFlag = argv.find((a) => a.startsWith('--runs='))
for (const a of argv) {
  if (a !== '--quick' && !a.startsWith('--only=') && !a.startsWith('--runs=')) {
    process.stderr.write(
      `unknown option ${a}\nusage: node --import tsx bench/run.js [--quick] [--only=case1,case2] [--runs=N]\n`,
    )
    process.exit(2)
  }
}
const RUNS = runsFlag !== undefined ? Number(runsFlag.slice('--runs='.length)) : quick ? 1 : 3

const N = quick
  ? {
      echo: 20_000,
      rtt: 500,
      jobs: 10_000,
      warmup: 1_000,
      latency: 500,
      latWarmup: 100,
      delayed: 10_000,
      million: 0,
      probes: 100,
    }
  : {
      echo: 200_000,
      rtt: 5_000,
      jobs: 100_000,
      warmup: 20_000,
      latency: 5_000,
      latWarmup: 5_000,
      delayed: 100_000,
      million: 1_000_000,
      probes: 2_000,
    }

const METRICS = {
  throughput: { label: 'throughput', unit: '/s' },
  p50: { label: 'latency p50', unit: 'ms' },
  p90: { label: 'latency p90', unit: 'ms' },
  p99: { label: 'latency p99', unit: 'ms' },
  max: { label: 'latency max', unit: 'ms' },
  scheduleRate: { label: 'scheduling rate', unit: 'jobs/s' },
  lateP50: { label: 'fire lateness p50', unit: 'ms' },
  lateP99: { label: 'fire lateness p99', unit: 'ms' },
  lateMax: { label: 'fire lateness max', unit: 'ms' },
  nodeHeapPerJob: { label: 'node heap+external / job', unit: 'B' },
  nodeRssPerJob: { label: 'node RSS / job', unit: 'B' },
  distributorHeapPerJob: { label: 'distributor heap+ext / job', unit: 'B' },
  redisPerJob: { label: 'Redis used_memory / job', unit: 'B' },
  probeP50: { label: 'instant job latency p50', unit: 'ms' },
  probeP99: { label: 'instant job latency p99', unit: 'ms' },
  failed: { label: 'failed jobs', unit: '' },
  scrapeMs: { label: 'distributor scrape, CPU', unit: 'ms' },
  cpuPerJob: { label: 'CPU per job, distributor + nodes', unit: 'µs' },
  ...adminMetrics(),
}

/** The admin case's reads: a median and a max of each. */
function adminMetrics() {
  const reads = {
    overview: 'GET api/overview',
    nodes: 'GET api/nodes',
    routes: 'GET api/pending',
    pageFirst: 'GET pending route, first 50',
    pageLate: 'GET pending route, last 50',
    pageMax: 'GET pending route, 500 mid-way',
    jobPending: 'GET api/jobs/ID, pending',
    jobOnNode: 'GET api/jobs/ID, asks its node',
    failures: 'GET api/failures (100)',
    nodeJobsFirst: "GET a node's scheduled, first 50",
    nodeJobsLate: "GET a node's scheduled, last 50",
    eventsFirst: 'api/events to first overview',
  }
  const out = {}
  for (const [key, label] of Object.entries(reads)) {
    out[`${key}P50`] = { label: `${label}, median`, unit: 'ms' }
    out[`${key}Max`] = { label: `${label}, max`, unit: 'ms' }
  }
  return {
    ...out,
    loopIdleP99: { label: 'loop delay idle p99', unit: 'ms' },
    loopIdleMax: { label: 'loop delay idle max', unit: 'ms' },
    loopStreamP50: { label: 'loop delay, stream open, p50', unit: 'ms' },
    loopStreamP99: { label: 'loop delay, stream open, p99', unit: 'ms' },
    loopStreamMax: { label: 'loop delay, stream open, max', unit: 'ms' },
    overviewCpuMs: { label: 'CPU per overview snapshot', unit: 'ms' },
  }
}

const k = (n) => (n >= 1_000_000 ? `${n / 1_000_000}M` : n >= 1000 ? `${n / 1000}k` : String(n))

/** A job-reactor throughput case on an emptied Redis; `options(ctx)` says what keeps its state there. */
function jrRedisThroughputCase(id, title, options) {
  return {
    id,
    system: 'job-reactor',
    title,
    redis: true,
    timeoutMs: 180_000,
    run: async (ctx) => {
      await ctx.redis.command('FLUSHALL')
      return runThroughput(ctx, { count: N.jobs, warmup: N.warmup, ...options(ctx) })
    },
  }
}

/** A job-reactor throughput case with memory nodes named `names`; `options` adds to what runThroughput is given. */
function jrMemoryThroughputCase(id, title, names, options = {}) {
  return {
    id,
    system: 'job-reactor',
    title,
    timeoutMs: 120_000,
    run: (ctx) => runThroughput(ctx, { count: N.jobs, warmup: N.warmup, storage: 'memory', names, ...options }),
  }
}

/** The throughput and latency cases of a queue library on the shared Redis, run alike for each library. */
function queueCases(prefix, system, throughput, latency) {
  return [
    {
      id: `${prefix}-throughput`,
      system,
      title: `throughput, 2 workers x 50 (${k(N.jobs)} no-op)`,
      redis: true,
      timeoutMs: 180_000,
      run: (ctx) => throughput(ctx, ctx.redis, { count: N.jobs, warmup: N.warmup, run: ctx.run }),
    },
    {
      id: `${prefix}-latency`,
      system,
      title: `latency, one in flight (${k(N.latency)})`,
      redis: true,
      timeoutMs: 120_000,
      run: (ctx) => latency(ctx, ctx.redis, { count: N.latency, warmup: N.latWarmup, run: ctx.run }),
    },
  ]
}

const CASES = [
  {
    id: 'echo',
    system: 'echo',
    title: `ceiling: msgpack TCP echo (${k(N.echo)} pipelined; ${k(N.rtt)} sequential)`,
    timeoutMs: 120_000,
    run: (ctx) => runEcho(ctx, { messages: N.echo, roundTrips: N.rtt }),
  },
  jrMemoryThroughputCase('jr-throughput-memory', `throughput, memory storage, 2 nodes (${k(N.jobs)} no-op)`, [
    'b1',
    'b2',
  ]),
  jrMemoryThroughputCase(
    'jr-throughput-metrics',
    `throughput, memory storage, 2 nodes, metrics served and scraped every second (${k(N.jobs)} no-op)`,
    ['m1', 'm2'],
    { scrape: true },
  ),
  jrMemoryThroughputCase(
    'jr-throughput-limited',
    `throughput, memory storage, 2 nodes, a limit of 100 per key over 1,000 keys (${k(N.jobs)} no-op)`,
    ['l1', 'l2'],
    { limited: { concurrency: 100, keys: 1000 } },
  ),
  jrRedisThroughputCase('jr-throughput-redis', `throughput, Redis storage, 2 nodes (${k(N.jobs)} no-op)`, (ctx) => ({
    storage: ctx.redis.url,
    names: [`r${ctx.run}a`, `r${ctx.run}b`],
  })),
  jrMemoryThroughputCase(
    'jr-progress-memory',
    `throughput, memory storage, 2 nodes, each job reporting progress 10 times (${k(N.jobs)})`,
    ['p1', 'p2'],
    { job: 'progress10' },
  ),
  jrRedisThroughputCase(
    'jr-progress-redis',
    `throughput, Redis storage, 2 nodes, each job reporting progress 10 times (${k(N.jobs)})`,
    (ctx) => ({ storage: ctx.redis.url, names: [`q${ctx.run}a`, `q${ctx.run}b`], job: 'progress10' }),
  ),
  jrRedisThroughputCase(
    'jr-throughput-spool',
    `throughput, distributor spool on Redis, 2 memory nodes (${k(N.jobs)} no-op)`,
    (ctx) => ({ storage: 'memory', spool: ctx.redis.url, names: [`s${ctx.run}a`, `s${ctx.run}b`] }),
  ),
  jrRedisThroughputCase(
    'jr-throughput-spool-unique',
    `throughput, distributor spool on Redis, a unique key per job, 2 memory nodes (${k(N.jobs)} no-op)`,
    (ctx) => ({ storage: 'memory', spool: ctx.redis.url, names: [`u${ctx.run}a`, `u${ctx.run}b`], keyed: true }),
  ),
  jrRedisThroughputCase(
    'jr-throughput-spool-limited',
    `throughput, distributor spool on Redis, 2 memory nodes, a limit of 100 per key over 1,000 keys held across the group (${k(N.jobs)} no-op)`,
    (ctx) => ({
      storage: 'memory',
      spool: ctx.redis.url,
      names: [`sl${ctx.run}a`, `sl${ctx.run}b`],
      limited: { concurrency: 100, keys: 1000 },
    }),
  ),
  {
    id: 'jr-latency',
    system: 'job-reactor',
    title: `latency, one in flight, memory storage, 1 node (${k(N.latency)})`,
    timeoutMs: 120_000,
    run: (ctx) => runLatency(ctx, { count: N.latency, warmup: N.latWarmup }),
  },
  {
    id: 'jr-delayed',
    system: 'job-reactor',
    title: `delayed, after 5 s, memory storage, 1 node (${k(N.delayed)})`,
    timeoutMs: 180_000,
    run: (ctx) => runDelayed(ctx, { count: N.delayed, after: 5, warmup: N.warmup }),
  },
  {
    id: 'jr-million',
    system: 'job-reactor',
    title: `${k(N.million)} delayed (after 1 h) held by 1 node; ${N.probes} instant jobs meanwhile`,
    skip: N.million === 0,
    timeoutMs: 600_000,
    run: (ctx) =>
      runDelayed(ctx, {
        count: N.million,
        after: 3600,
        probes: N.probes,
        warmup: N.warmup,
        nodeFlags: ['--max-old-space-size=8192'],
      }),
  },
  {
    id: 'admin-1m',
    system: 'job-reactor',
    title:
      'admin API, 1M held (701k pending, 99k on 99 light protocol peers, 200k delayed on 1 real in-process node), 100 nodes; all in one process',
    skip: N.million === 0,
    timeoutMs: 600_000,
    run: (ctx) => runAdmin(ctx),
  },
  ...queueCases('bullmq', 'BullMQ', runBullThroughput, runBullLatency),
  {
    id: 'bullmq-delayed',
    system: 'BullMQ',
    title: `delayed, 5 s, 2 workers x 50 (${k(N.delayed)})`,
    redis: true,
    timeoutMs: 180_000,
    run: (ctx) => runBullDelayed(ctx, ctx.redis, { count: N.delayed, delayMs: 5_000, run: ctx.run }),
  },
  ...queueCases('bee', 'bee-queue', runBeeThroughput, runBeeLatency),
]

function selected(c) {
  if (c.skip) return false
  if (only === undefined) return true
  return only.some((o) => c.id === o || c.id.startsWith(`${o}-`))
}

// --- running -------------------------------------------------------------------------

const progress = (line) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`)

class TimeoutError extends Error {}

/** The suite's redis-server, if started: killed on any way out. */
let redis

async function withDeadline(promise, ms) {
  let timer
  const deadline = new Promise((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))
  try {
    return await Promise.race([promise.then(() => undefined), deadline])
  } finally {
    clearTimeout(timer)
  }
}

/** One run of one case: its own children and resources, all released at the end. */
async function runOnce(c, run, redis) {
  const cleanups = []
  const controller = new AbortController()
  const ctx = {
    run,
    quick,
    redis,
    progress: (line) => progress(`  ${line}`),
    defer: (fn) => cleanups.push(fn),
    spawnNode: (label, args, opts = {}) => {
      const child = spawnNode(label, args, { cwd: ROOT, ...opts })
      cleanups.push(() => child.stop())
      return child
    },
    throwIfAborted: () => {
      if (controller.signal.aborted) throw new TimeoutError('case timed out')
    },
  }
  let timer
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => {
      controller.abort()
      resolve('timeout')
    }, c.timeoutMs)
  })
  const work = c.run(ctx)
  // A run left behind by the timeout must not crash the suite when it fails later.
  work.catch(() => {})
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
    controller.abort()
    for (const fn of cleanups.reverse()) {
      await withDeadline(
        Promise.resolve()
          .then(fn)
          .catch((err) => progress(`  cleanup: ${err.message}`)),
        10_000,
      )
    }
  }
}

async function main() {
  const cases = CASES.filter(selected)
  if (cases.length === 0) {
    process.stderr.write(`no case selected; ids: ${CASES.map((c) => c.id).join(', ')}\n`)
    process.exit(2)
  }
  const startedAt = new Date()
  let redisVersion
  const results = []
  try {
    if (cases.some((c) => c.redis)) {
      redis = await startRedisServer()
      const info = await redis.command('INFO server')
      redisVersion = /redis_version:(\S+)/.exec(info)?.[1]
      progress(`redis-server ${redisVersion} on port ${redis.port}`)
    }
    // Rounds, not one case after another: a machine's speed drifts within minutes, and a
    // ratio between systems is only fair when every system's median samples the same drift.
    for (const c of cases) {
      results.push({ id: c.id, system: c.system, title: c.title, runs: [], status: 'ok', busyBefore: [] })
    }
    for (let run = 1; run <= RUNS; run++) {
      for (const [i, c] of cases.entries()) {
        const result = results[i]
        // A case that failed or timed out once is not run again.
        if (result.status !== 'ok') continue
        progress(`${c.id} (run ${run}/${RUNS}): ${c.title}`)
        // Other work on the machine skews every number: record it, and say so.
        const busy = await busyFraction()
        if (busy !== undefined) {
          result.busyBefore.push(Math.round(busy * 100) / 100)
          if (busy > 0.2) progress(`  note: CPUs ${Math.round(busy * 100)}% busy with other work before run ${run}`)
        }
        const t0 = Date.now()
        let outcome
        try {
          outcome = await runOnce(c, run, redis)
        } catch (err) {
          progress(`  run ${run}: error: ${err.stack ?? err}`)
          result.status = 'error'
          result.error = String(err.message ?? err)
          continue
        }
        if (outcome === 'timeout') {
          progress(`  run ${run}: timeout after ${c.timeoutMs / 1000} s`)
          result.status = 'timeout'
          continue
        }
        result.runs.push(outcome)
        progress(
          `  ${((Date.now() - t0) / 1000).toFixed(1)} s: ${Object.entries(outcome)
            .map(([m, v]) => `${m}=${fmt(v)}`)
            .join(' ')}`,
        )
      }
    }
  } finally {
    await redis?.stop()
  }

  for (const r of results) {
    r.metrics = {}
    const keys = new Set(r.runs.flatMap((run) => Object.keys(run)))
    for (const key of keys) {
      const values = r.runs.map((run) => run[key]).filter((v) => v !== undefined)
      const [min, max] = minMax(values)
      r.metrics[key] = { median: median(values), min, max, values, unit: METRICS[key]?.unit ?? '' }
    }
  }
  const summary = summarize(results)
  printTable(results, summary)

  const pkg = (name) => JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-')
  const file = join('bench', `results-${stamp}.json`)
  const cpu = cpus()
  writeFileSync(
    join(ROOT, file),
    `${JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        options: { quick, only, runs: RUNS, counts: N },
        environment: {
          node: process.version,
          platform: `${process.platform} ${process.arch}`,
          cpus: cpu.length,
          cpuModel: cpu[0]?.model,
          totalMemoryBytes: totalmem(),
          redis: redisVersion,
          git: gitState(),
          versions: {
            'job-reactor': JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version,
            bullmq: pkg('bullmq'),
            'bee-queue': pkg('bee-queue'),
          },
        },
        summary,
        cases: results,
      },
      null,
      2,
    )}\n`,
  )
  progress(`results written to ${file}`)
}

/** The commit measured, and whether the library's sources differed from it. */
function gitState() {
  const git = (...args) => spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' })
  const head = git('rev-parse', 'HEAD')
  if (head.status !== 0) return undefined
  const dirty = git('status', '--porcelain', '--', 'src', 'bin', 'package.json').stdout.trim()
  return { commit: head.stdout.trim(), sourcesModified: dirty.length > 0 }
}

// --- report --------------------------------------------------------------------------

function metric(results, id, key) {
  return results.find((r) => r.id === id)?.metrics?.[key]?.median
}

function summarize(results) {
  const m = (id, key) => metric(results, id, key)
  const ratio = (a, b) => (a === undefined || b === undefined ? undefined : a / b)
  const jrMem = m('jr-throughput-memory', 'throughput')
  const jrRedis = m('jr-throughput-redis', 'throughput')
  const jrSpool = m('jr-throughput-spool', 'throughput')
  const jrMetrics = m('jr-throughput-metrics', 'throughput')
  const jrLimited = m('jr-throughput-limited', 'throughput')
  const ratios = {
    'job-reactor memory ÷ BullMQ (throughput)': ratio(jrMem, m('bullmq-throughput', 'throughput')),
    'job-reactor memory ÷ bee-queue (throughput)': ratio(jrMem, m('bee-throughput', 'throughput')),
    'job-reactor memory ÷ echo round trips/s': ratio(jrMem, m('echo', 'throughput')),
    'job-reactor Redis ÷ BullMQ (throughput)': ratio(jrRedis, m('bullmq-throughput', 'throughput')),
    'job-reactor Redis ÷ bee-queue (throughput)': ratio(jrRedis, m('bee-throughput', 'throughput')),
    'job-reactor spooled ÷ BullMQ (throughput)': ratio(jrSpool, m('bullmq-throughput', 'throughput')),
    'job-reactor metrics scraped ÷ memory (throughput)': ratio(jrMetrics, jrMem),
    'BullMQ p50 ÷ job-reactor p50 (latency)': ratio(m('bullmq-latency', 'p50'), m('jr-latency', 'p50')),
  }
  // The performance issue's goals (absolute figures for a 2-core machine); a case not run
  // leaves its goals out.
  const target = (label, value, op, goal) => ({
    label,
    value,
    goal: `${op} ${fmt(goal)}`,
    met: op === '≥' ? value >= goal : value <= goal,
  })
  return {
    targets: [
      target('memory throughput, jobs/s', jrMem, '≥', 150_000),
      target('memory throughput ÷ BullMQ', ratios['job-reactor memory ÷ BullMQ (throughput)'], '≥', 20),
      target('memory throughput ÷ bee-queue', ratios['job-reactor memory ÷ bee-queue (throughput)'], '≥', 8),
      target('memory throughput ÷ echo', ratios['job-reactor memory ÷ echo round trips/s'], '≥', 0.4),
      target('Redis throughput, jobs/s', jrRedis, '≥', 40_000),
      target(
        'metrics scraped ÷ memory throughput',
        ratios['job-reactor metrics scraped ÷ memory (throughput)'],
        '≥',
        0.97,
      ),
      target('limited name (limit not the bottleneck) throughput, jobs/s', jrLimited, '≥', 50_000),
      target('spooled distributor throughput, jobs/s', jrSpool, '≥', 60_000),
      target('spooled distributor ÷ BullMQ', ratios['job-reactor spooled ÷ BullMQ (throughput)'], '≥', 8),
      target('latency p50, ms', m('jr-latency', 'p50'), '≤', 0.15),
      target('latency p99, ms', m('jr-latency', 'p99'), '≤', 0.5),
      target('delayed: fire lateness p99, ms', m('jr-delayed', 'lateP99'), '≤', 50),
      target('delayed: scheduling, jobs/s', m('jr-delayed', 'scheduleRate'), '≥', 200_000),
      target('1M delayed: node memory per job, B', m('jr-million', 'nodeHeapPerJob'), '≤', 300),
    ].filter((t) => t.value !== undefined),
    ratios,
    latency: {
      'echo round trip': [m('echo', 'p50'), m('echo', 'p99')],
      'job-reactor (memory, 1 node)': [m('jr-latency', 'p50'), m('jr-latency', 'p99')],
      'job-reactor, 1M delayed held': [m('jr-million', 'probeP50'), m('jr-million', 'probeP99')],
      BullMQ: [m('bullmq-latency', 'p50'), m('bullmq-latency', 'p99')],
      'bee-queue': [m('bee-latency', 'p50'), m('bee-latency', 'p99')],
    },
    delayed: {
      'job-reactor': {
        scheduleRate: m('jr-delayed', 'scheduleRate'),
        late: [m('jr-delayed', 'lateP50'), m('jr-delayed', 'lateP99'), m('jr-delayed', 'lateMax')],
        memoryPerJob: `node heap ${fmt(m('jr-delayed', 'nodeHeapPerJob'))} B, RSS ${fmt(m('jr-delayed', 'nodeRssPerJob'))} B; distributor ${fmt(m('jr-delayed', 'distributorHeapPerJob'))} B`,
      },
      'job-reactor 1M': {
        scheduleRate: m('jr-million', 'scheduleRate'),
        late: [undefined, undefined, undefined],
        memoryPerJob: `node heap ${fmt(m('jr-million', 'nodeHeapPerJob'))} B, RSS ${fmt(m('jr-million', 'nodeRssPerJob'))} B; distributor ${fmt(m('jr-million', 'distributorHeapPerJob'))} B`,
      },
      BullMQ: {
        scheduleRate: m('bullmq-delayed', 'scheduleRate'),
        late: [m('bullmq-delayed', 'lateP50'), m('bullmq-delayed', 'lateP99'), m('bullmq-delayed', 'lateMax')],
        memoryPerJob: `Redis ${fmt(m('bullmq-delayed', 'redisPerJob'))} B`,
      },
    },
  }
}

function printTable(results, summary) {
  const rows = [['case', 'system', 'metric', 'median', 'min–max', 'unit']]
  for (const r of results) {
    if (r.status !== 'ok' && r.runs.length === 0) {
      rows.push([r.id, r.system, r.status, '', '', ''])
      continue
    }
    let first = true
    for (const [key, v] of Object.entries(r.metrics)) {
      const label = METRICS[key]?.label ?? key
      const range = r.runs.length > 1 ? `${fmt(v.min)}–${fmt(v.max)}` : ''
      rows.push([first ? r.id : '', first ? r.system : '', label, fmt(v.median), range, v.unit])
      first = false
    }
    if (r.status !== 'ok') rows.push(['', '', `(${r.status} after ${r.runs.length} runs)`, '', '', ''])
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => String(row[i]).length)))
  const line = (row) =>
    row
      .map((cell, i) => pad(cell, widths[i], i === 3 || i === 4))
      .join('  ')
      .trimEnd()
  const out = []
  out.push('')
  out.push(`job-reactor benchmarks: ${RUNS} run(s) per case, median and min–max${quick ? ' (quick)' : ''}`)
  for (const r of results) out.push(`  ${pad(r.id, 22)} ${r.title}`)
  out.push('')
  out.push(line(rows[0]))
  out.push(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const row of rows.slice(1)) out.push(line(row))
  for (const r of results) if (r.error !== undefined) out.push(`${r.id}: ${r.error}`)
  const busy = results.flatMap((r) => r.busyBefore ?? [])
  if (busy.length > 0) {
    const [lo, hi] = minMax(busy)
    out.push(
      `CPU busy with other work just before each run: ${Math.round(lo * 100)}–${Math.round(hi * 100)}% of ${cpus().length} CPUs`,
    )
  }
  out.push('')
  out.push('Ratios (medians)')
  for (const [label, v] of Object.entries(summary.ratios))
    if (v !== undefined) out.push(`  ${pad(label, 46)} ${fmt(v)}`)
  if (summary.targets.length > 0) {
    out.push('')
    out.push(
      `Targets (medians; absolute figures are for a 2-core machine${quick ? '; --quick counts are smaller' : ''})`,
    )
    for (const t of summary.targets)
      out.push(`  ${t.met ? 'met    ' : 'MISSED '} ${pad(t.label, 36)} ${pad(fmt(t.value), 9, true)}  goal ${t.goal}`)
  }
  out.push('')
  out.push('Latency, one job in flight: p50 / p99 ms')
  for (const [label, [p50, p99]] of Object.entries(summary.latency)) {
    if (p50 !== undefined) out.push(`  ${pad(label, 32)} ${pad(fmt(p50), 8, true)} / ${fmt(p99)}`)
  }
  out.push('')
  out.push('Delayed jobs: scheduling rate, fire lateness p50 / p99 / max ms, memory per held job')
  for (const [label, d] of Object.entries(summary.delayed)) {
    if (d.scheduleRate === undefined) continue
    const late = d.late[0] === undefined ? '-' : d.late.map(fmt).join(' / ')
    out.push(
      `  ${pad(label, 16)} ${pad(fmt(d.scheduleRate), 9, true)} jobs/s   late ${pad(late, 24)}  ${d.memoryPerJob}`,
    )
  }
  out.push('')
  process.stdout.write(`${out.join('\n')}\n`)
}

// --- process hygiene -----------------------------------------------------------------

process.on('exit', () => {
  killAllChildren()
  redis?.killNow()
})
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killAllChildren()
    redis?.killNow()
    process.exit(130)
  })
}
process.on('unhandledRejection', (err) => progress(`unhandled rejection: ${err?.stack ?? err}`))

main().catch((err) => {
  progress(`bench failed: ${err?.stack ?? err}`)
  killAllChildren()
  process.exit(1)
})
