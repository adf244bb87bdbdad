import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { coerceError, ConnectionClosedError, deserializeError, JobFileError, type SerializedError } from '../errors.js'
import type { Logger, LogLevel } from '../logger.js'
import type { ProgressValue } from '../protocol/messages.js'
import type { ChainOutcome } from './chain-runner.js'
import type { JobContext } from './registry.js'

/** The plain-data part of a JobContext (functions and signals do not cross threads). */
export type WorkerContext = Omit<JobContext, 'signal' | 'log' | 'cancel' | 'rateLimit' | 'progress'>

export type ToWorker =
  | {
      type: 'run'
      id: string
      args: Uint8Array
      ctx: WorkerContext
      lastAttempt: boolean
      jobItself: Record<string, unknown> | undefined
    }
  | { type: 'abort'; id: string; reason: string }

export type FromWorker =
  | { type: 'ready' }
  | { type: 'failed'; error: SerializedError }
  /** The running chain of job `id` called ctx.progress (the value checked there). */
  | { type: 'progress'; id: string; value: ProgressValue }
  | {
      type: 'done'
      id: string
      kind: ChainOutcome['kind']
      cancelled: boolean
      error: SerializedError | undefined
      unrecoverable: boolean
      /** The pause of a rate-limited attempt. */
      seconds: number | undefined
      args: Uint8Array
    }

export type WorkerResult = Extract<FromWorker, { type: 'done' }>

interface Task {
  message: Extract<ToWorker, { type: 'run' }>
  resolve: (result: WorkerResult) => void
  reject: (err: Error) => void
  progress: (value: ProgressValue) => void
}

interface Slot {
  worker: Worker
  ready: boolean
  task: Task | undefined
}

function createWorker(workerData: unknown): Worker {
  const ext = extname(fileURLToPath(import.meta.url))
  const entry = new URL(`./defer-worker${ext}`, import.meta.url)
  if (ext !== '.ts') return new Worker(entry, { workerData })
  // Running from TypeScript sources (the test suite): the thread must register the
  // TypeScript loader before it imports its entry; Node 20 ignores `--import` for workers.
  const boot = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}) })`
  return new Worker(boot, { eval: true, workerData })
}

/**
 * Runs deferred chains in worker threads, one chain per thread at a time. A thread whose
 * chain was abandoned (timeout, shutdown) may still be burning CPU, so it is terminated and
 * replaced rather than reused.
 */
export class WorkerPool {
  private readonly slots: Slot[] = []
  private readonly queue: Task[] = []
  private closed = false

  constructor(
    private readonly size: number,
    private readonly settings: { jobDirectory: string; node: string; logLevel: LogLevel },
    private readonly log: Logger,
  ) {}

  /** Runs a chain in a thread; `progress` hears what it reports meanwhile. */
  run(message: Task['message'], signal: AbortSignal, progress: Task['progress']): Promise<WorkerResult> {
    if (this.closed) return Promise.reject(new ConnectionClosedError('worker pool closed'))
    return new Promise<WorkerResult>((resolve, reject) => {
      const task: Task = { message, resolve, reject, progress }
      signal.addEventListener(
        'abort',
        () => {
          const i = this.queue.indexOf(task)
          if (i >= 0) this.queue.splice(i, 1)
          const slot = this.slots.find((s) => s.task === task)
          if (slot !== undefined) this.replace(slot)
          reject(coerceError(signal.reason))
        },
        { once: true },
      )
      this.queue.push(task)
      this.pump()
    })
  }

  async close(): Promise<void> {
    this.closed = true
    for (const task of this.queue.splice(0)) task.reject(new ConnectionClosedError('worker pool closed'))
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()))
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const slot = this.slots.find((s) => s.ready && s.task === undefined)
      if (slot === undefined) {
        if (this.slots.length >= this.size) return
        this.spawn()
        return
      }
      const task = this.queue.shift() as Task
      slot.task = task
      slot.worker.postMessage(task.message)
    }
  }

  private spawn(): Slot {
    const worker = createWorker(this.settings)
    const slot: Slot = { worker, ready: false, task: undefined }
    this.slots.push(slot)
    worker.on('message', (message: FromWorker) => {
      if (message.type === 'ready') {
        slot.ready = true
        this.pump()
      } else if (message.type === 'failed') {
        this.log.error({ err: message.error.message }, 'defer worker could not load the job files')
        this.remove(slot)
        void worker.terminate()
        this.failAll(
          new JobFileError(`defer worker could not load the job files: ${message.error.message}`, {
            cause: deserializeError(message.error),
          }),
        )
      } else if (message.type === 'progress') {
        // Posted before the chain's 'done', so it reaches the runner before the attempt ends.
        if (slot.task?.message.id === message.id) slot.task.progress(message.value)
      } else {
        const task = slot.task
        slot.task = undefined
        task?.resolve(message)
        this.pump()
      }
    })
    worker.on('error', (err) => {
      this.log.error({ err }, 'defer worker crashed')
      slot.task?.reject(err)
      slot.task = undefined
      this.remove(slot)
      // A thread that cannot even start would be respawned forever: fail what waits instead.
      if (!slot.ready) this.failAll(err)
      this.pump()
    })
    worker.unref()
    return slot
  }

  private failAll(err: Error): void {
    for (const task of this.queue.splice(0)) task.reject(err)
  }

  private replace(slot: Slot): void {
    slot.task = undefined
    this.remove(slot)
    void slot.worker.terminate()
    this.pump()
  }

  private remove(slot: Slot): void {
    const i = this.slots.indexOf(slot)
    if (i >= 0) this.slots.splice(i, 1)
  }
}
