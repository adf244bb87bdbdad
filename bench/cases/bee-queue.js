// Case 8: bee-queue on the same Redis. The producer (this process) counts completions from
// the queue's events (pub/sub); workers are child processes.
import Queue from 'bee-queue'
import { hrMs, latencySummary } from '../lib/stats.js'

const CHUNK = 1_000

async function setUp(ctx, redis, { queueName, workers, concurrency, storeJobs }) {
  await redis.command('FLUSHALL')
  const queue = new Queue(queueName, {
    redis: { host: '127.0.0.1', port: redis.port },
    isWorker: false,
    getEvents: true,
    sendEvents: false,
    storeJobs,
  })
  ctx.defer(() => queue.close(1_000))
  queue.on('error', (err) => ctx.progress(`bee-queue error: ${err.message}`))
  await queue.ready()
  await Promise.all(
    Array.from({ length: workers }, async (_, i) => {
      const worker = ctx.spawnNode(`bee-w${i + 1}`, [
        'bench/bee-worker.js',
        String(redis.port),
        queueName,
        String(concurrency),
      ])
      await worker.waitForLine((l) => l === 'ready')
    }),
  )
  return queue
}

function countSucceeded(queue, count) {
  let n = 0
  return new Promise((resolve) => {
    const onSucceeded = () => {
      if (++n < count) return
      queue.off('job succeeded', onSucceeded)
      resolve()
    }
    queue.on('job succeeded', onSucceeded)
  })
}

/** Saves jobs in chunks, all chunks in flight at once. */
function saveAll(queue, count) {
  const chunks = []
  for (let i = 0; i < count; i += CHUNK) {
    const n = Math.min(CHUNK, count - i)
    chunks.push(
      queue.saveAll(Array.from({ length: n }, () => queue.createJob({}))).then((errors) => {
        if (errors.size > 0)
          throw new Error(`bee-queue could not save ${errors.size} jobs: ${[...errors.values()][0].message}`)
      }),
    )
  }
  return Promise.all(chunks)
}

export async function runBeeThroughput(ctx, redis, { count, warmup, run }) {
  const queue = await setUp(ctx, redis, { queueName: `bench-tp-${run}`, workers: 2, concurrency: 50, storeJobs: false })
  let succeeded = countSucceeded(queue, warmup)
  await saveAll(queue, warmup)
  await succeeded
  succeeded = countSucceeded(queue, count)
  const start = process.hrtime.bigint()
  await saveAll(queue, count)
  const saveSeconds = hrMs(start) / 1000
  await succeeded
  const seconds = hrMs(start) / 1000
  ctx.progress(`bee-queue: ${count} jobs in ${seconds.toFixed(2)} s (saves done after ${saveSeconds.toFixed(2)} s)`)
  return { throughput: count / seconds }
}

export async function runBeeLatency(ctx, redis, { count, warmup, run }) {
  // Completions are matched by id from the queue-wide events: a job's own 'succeeded' event
  // is lost when the worker finishes it before save() has registered the job locally.
  const queue = await setUp(ctx, redis, {
    queueName: `bench-lat-${run}`,
    workers: 2,
    concurrency: 50,
    storeJobs: false,
  })
  const early = new Map()
  let waiting
  const onFinished = (ok) => (id, data) => {
    if (waiting !== undefined && waiting.id === id) waiting.settle(ok, data)
    else early.set(id, { ok, data })
  }
  queue.on('job succeeded', onFinished(true))
  queue.on('job failed', onFinished(false))
  const samples = []
  for (let i = 0; i < warmup + count; i++) {
    const start = process.hrtime.bigint()
    const job = await queue.createJob({}).save()
    await new Promise((resolve, reject) => {
      const settle = (ok, data) => {
        waiting = undefined
        if (ok) resolve()
        else reject(data)
      }
      const seen = early.get(job.id)
      if (seen !== undefined) {
        early.delete(job.id)
        settle(seen.ok, seen.data)
      } else waiting = { id: job.id, settle }
    })
    if (i >= warmup) samples.push(hrMs(start))
    if (i % 500 === 0) ctx.throwIfAborted()
  }
  const s = latencySummary(samples)
  return { p50: s.p50, p90: s.p90, p99: s.p99, max: s.max }
}
