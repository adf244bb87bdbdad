/**
 * A worker thread of the defer pool: loads the node's job files into its own registry and
 * runs one chain at a time, so CPU-heavy work stays off the node's event loop.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { CancelJob, RateLimited, serializeError } from '../errors.js'
import { createLogger, type LogLevel } from '../logger.js'
import { decodeArgs } from '../protocol/args.js'
import { pack } from '../protocol/msgpack.js'
import { checkProgress } from '../protocol/progress-value.js'
import { runChain } from './chain-runner.js'
import { loadJobDirectory } from './job-loader.js'
import { JobRegistry, type JobContext } from './registry.js'
import type { ToWorker, FromWorker } from './worker-pool.js'

const { jobDirectory, node, logLevel } = workerData as { jobDirectory: string; node: string; logLevel: LogLevel }
const port = parentPort
if (port === null) throw new Error('defer-worker must run in a worker thread')

const registry = new JobRegistry()
const log = createLogger(logLevel).child({ node, thread: 'defer' })
const controllers = new Map<string, AbortController>()

function post(message: FromWorker): void {
  port?.postMessage(message)
}

port.on('message', (message: ToWorker) => {
  if (message.type === 'abort') {
    controllers.get(message.id)?.abort(new Error(message.reason))
    return
  }
  void run(message)
})

async function run(task: Extract<ToWorker, { type: 'run' }>): Promise<void> {
  const args = decodeArgs(task.args)
  if (task.jobItself !== undefined) args['jobItself'] = task.jobItself
  const controller = new AbortController()
  controllers.set(task.id, controller)
  const ctx: JobContext = {
    ...task.ctx,
    signal: controller.signal,
    log: log.child({ jobId: task.id, jobName: task.ctx.name }),
    cancel: () => {
      throw new CancelJob()
    },
    rateLimit: (seconds) => {
      throw new RateLimited(seconds)
    },
    // Checked here, so that the step that reported a bad value is the one that throws.
    progress: (value) => post({ type: 'progress', id: task.id, value: checkProgress(value) }),
  }
  const def = registry.get(task.ctx.name)
  try {
    if (def === undefined) throw new Error(`job '${task.ctx.name}' is not defined in the worker's job files`)
    const outcome = await runChain(def, args, ctx, task.lastAttempt)
    post({
      type: 'done',
      id: task.id,
      kind: outcome.kind,
      cancelled: outcome.cancelled,
      error: outcome.kind === 'error' ? serializeError(outcome.error) : undefined,
      unrecoverable: outcome.kind === 'error' && outcome.unrecoverable,
      seconds: outcome.kind === 'rate-limited' ? outcome.seconds : undefined,
      args: pack(args),
    })
  } catch (err) {
    const error = serializeError(err)
    args['error'] = error
    post({
      type: 'done',
      id: task.id,
      kind: 'error',
      cancelled: false,
      error,
      unrecoverable: false,
      seconds: undefined,
      args: pack(args),
    })
  } finally {
    controllers.delete(task.id)
  }
}

loadJobDirectory(jobDirectory, registry).then(
  () => post({ type: 'ready' }),
  (err: unknown) => post({ type: 'failed', error: serializeError(err) }),
)
