// A BullMQ worker process: `node bench/bullmq-worker.js <redisPort> <queue> <concurrency>`.
// 'noop' jobs return nothing; 'stamp' jobs return how late they started, as the worker sees it.
// Prints `ready` once the worker is connected.
import { Worker } from 'bullmq'

const [port, queueName, concurrency] = process.argv.slice(2)
const worker = new Worker(
  queueName,
  async (job) => {
    if (job.name === 'stamp') return { late: Date.now() - (job.timestamp + job.opts.delay) }
    return undefined
  },
  {
    connection: { host: '127.0.0.1', port: Number(port), maxRetriesPerRequest: null },
    concurrency: Number(concurrency),
  },
)
worker.on('error', (err) => process.stderr.write(`bullmq worker error: ${err.message}\n`))
await worker.waitUntilReady()
process.stdout.write('ready\n')

const stop = () => {
  worker.close().then(
    () => process.exit(0),
    () => process.exit(1),
  )
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
