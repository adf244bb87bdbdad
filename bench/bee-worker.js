// A bee-queue worker process: `node bench/bee-worker.js <redisPort> <queue> <concurrency>`.
// Prints `ready` once the queue is connected.
import Queue from 'bee-queue'

const [port, queueName, concurrency] = process.argv.slice(2)
const queue = new Queue(queueName, {
  redis: { host: '127.0.0.1', port: Number(port) },
  isWorker: true,
  getEvents: false,
  sendEvents: true,
  storeJobs: false,
  removeOnSuccess: true,
  removeOnFailure: true,
})
queue.on('error', (err) => process.stderr.write(`bee-queue worker error: ${err.message}\n`))
queue.process(Number(concurrency), async () => {})
await queue.ready()
process.stdout.write('ready\n')

const stop = () => {
  queue.close(2_000).then(
    () => process.exit(0),
    () => process.exit(1),
  )
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
