// Case 7: BullMQ on the same Redis. The producer (this process) sees completions through
// QueueEvents, as an application would; workers are child processes.
import { Queue, QueueEvents } from 'bullmq'
import { infoField } from '../lib/redis.js'
import { hrMs, latencySummary } from '../lib/stats.js'

const BULK = 1_000

function connection(redis) {
  return { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null }
}

/**
 * A queue, its QueueEvents and `workers` worker processes. The events stream keeps far more
 * than BullMQ's default of 10,000 entries, so that QueueEvents cannot miss completions when
 * it lags behind a burst (with the default it would, and the run would never finish).
 */
async function setUp(ctx, redis, { queueName, workers, concurrency, eventsMaxLen, removeOnComplete = true }) {
  await redis.command('FLUSHALL')
  const queue = new Queue(queueName, {
    connection: connection(redis),
    streams: { events: { maxLen: eventsMaxLen } },
    defaultJobOptions: { removeOnComplete, removeOnFail: true },
  })
  ctx.defer(() => queue.close())
  queue.on('error', (err) => ctx.progress(`bullmq queue error: ${err.message}`))
  await queue.waitUntilReady()
  const events = new QueueEvents(queueName, { connection: connection(redis) })
  ctx.defer(() => events.close())
  await events.waitUntilReady()
  await Promise.all(
    Array.from({ length: workers }, async (_, i) => {
      const worker = ctx.spawnNode(`bullmq-w${i + 1}`, [
        'bench/bullmq-worker.js',
        String(redis.port),
        queueName,
        String(concurrency),
      ])
      await worker.waitForLine((l) => l === 'ready')
    }),
  )
  return { queue, events }
}

/** Adds jobs in bulks of BULK, all bulks in flight at once; resolves when Redis holds them all. */
function addAll(queue, count, name, opts = {}) {
  const bulks = []
  for (let i = 0; i < count; i += BULK) {
    const n = Math.min(BULK, count - i)
    bulks.push(queue.addBulk(Array.from({ length: n }, () => ({ name, data: {}, opts }))))
  }
  return Promise.all(bulks)
}

/**
 * Resolves with the return values once `count` 'completed' events were seen. With `ctx`,
 * says every 10 s how many were seen, so that a run that times out shows where it stalled.
 */
function collectCompleted(events, count, keepValues = false, ctx = undefined) {
  const values = []
  let n = 0
  let ticker
  if (ctx !== undefined) {
    ticker = setInterval(() => ctx.progress(`bullmq: ${n} of ${count} completions seen`), 10_000).unref()
    ctx.defer(() => clearInterval(ticker))
  }
  return new Promise((resolve) => {
    const onCompleted = ({ returnvalue }) => {
      if (keepValues) values.push(typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue)
      if (++n < count) return
      events.off('completed', onCompleted)
      clearInterval(ticker)
      resolve(values)
    }
    events.on('completed', onCompleted)
  })
}

export async function runBullThroughput(ctx, redis, { count, warmup, run }) {
  const { queue, events } = await setUp(ctx, redis, {
    queueName: `bench-tp-${run}`,
    workers: 2,
    concurrency: 50,
    eventsMaxLen: 10 * (count + warmup),
  })
  let completed = collectCompleted(events, warmup)
  await addAll(queue, warmup, 'noop')
  await completed
  completed = collectCompleted(events, count)
  const start = process.hrtime.bigint()
  await addAll(queue, count, 'noop')
  const addSeconds = hrMs(start) / 1000
  await completed
  const seconds = hrMs(start) / 1000
  ctx.progress(`bullmq: ${count} jobs in ${seconds.toFixed(2)} s (adds done after ${addSeconds.toFixed(2)} s)`)
  return { throughput: count / seconds }
}

export async function runBullLatency(ctx, redis, { count, warmup, run }) {
  const { queue, events } = await setUp(ctx, redis, {
    queueName: `bench-lat-${run}`,
    workers: 2,
    concurrency: 50,
    eventsMaxLen: 10_000,
    // waitUntilFinished looks the job up when it starts waiting: a job already removed
    // on completion makes it throw ('Missing key for job'), so completed jobs stay here.
    removeOnComplete: false,
  })
  const samples = []
  for (let i = 0; i < warmup + count; i++) {
    const start = process.hrtime.bigint()
    const job = await queue.add('noop', {})
    await job.waitUntilFinished(events)
    if (i >= warmup) samples.push(hrMs(start))
    if (i % 500 === 0) ctx.throwIfAborted()
  }
  const s = latencySummary(samples)
  return { p50: s.p50, p90: s.p90, p99: s.p99, max: s.max }
}

/**
 * Delayed jobs: Redis memory per held job (a separate queue, delay 1 h, BullMQ's default
 * events stream), then scheduling rate and fire lateness of `count` jobs due after `delayMs`.
 */
export async function runBullDelayed(ctx, redis, { count, delayMs, run }) {
  const { queue, events } = await setUp(ctx, redis, {
    // Room for every event of every job (added, delayed, waiting, active, completed, removed
    // and more), with a margin: a trimmed stream loses completions and the run never ends.
    queueName: `bench-delay-${run}`,
    workers: 2,
    concurrency: 50,
    eventsMaxLen: 20 * count,
  })

  const hold = new Queue(`bench-hold-${run}`, { connection: connection(redis) })
  ctx.defer(() => hold.close())
  await hold.waitUntilReady()
  const before = await infoField(redis.port, 'memory', 'used_memory')
  await addAll(hold, count, 'stamp', { delay: 3_600_000 })
  const after = await infoField(redis.port, 'memory', 'used_memory')
  await hold.obliterate({ force: true })

  const completed = collectCompleted(events, count, true, ctx)
  const start = process.hrtime.bigint()
  await addAll(queue, count, 'stamp', { delay: delayMs })
  const scheduleSeconds = hrMs(start) / 1000
  ctx.progress(`bullmq delayed: ${count} jobs (delay ${delayMs} ms) added in ${scheduleSeconds.toFixed(2)} s`)
  const values = await completed
  const s = latencySummary(values.map((v) => v.late))
  return {
    scheduleRate: count / scheduleSeconds,
    redisPerJob: (after - before) / count,
    lateP50: s.p50,
    lateP99: s.p99,
    lateMax: s.max,
  }
}
