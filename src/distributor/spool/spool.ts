import { StoreTimeoutError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { Timer } from '../../scheduling/timer-heap.js'
import type { GroupStore } from '../../storage/redis/group-store.js'
import { OpWriter } from '../../storage/redis/op-writer.js'
import type { ClaimAnswer } from '../../storage/redis/spool-script.js'
import type { TrackedJob } from '../tracked-job.js'
import { encodeSpooled } from './spooled-job.js'

/** What the spool needs of its distributor. */
export interface SpoolContext {
  readonly log: Logger
  /** Fires `timer` once, `ms` from now, on the distributor's scheduler. */
  after(timer: Timer, ms: number): void
  cancelTimer(timer: Timer): void
  /** A batch holding `job`'s record was written: it survives a crash of this process now. */
  persisted(job: TrackedJob): void
  /** Writes fail (`error`) or work again (undefined). */
  changed(error: Error | undefined): void
  /**
   * The claim of `job`'s unique key was written: undefined when it holds the key (and the
   * job is spooled), else what Redis answered (another job holds it, or the claim took it
   * from a schedule defined otherwise: then the job is spooled too).
   */
  claimed(job: TrackedJob, answer: ClaimAnswer | undefined): void
}

/** A batch of operations on its way to Redis, and the jobs it spools. */
interface Batch {
  ops: Buffer
  jobs: TrackedJob[]
  /** Jobs whose unique key the batch claims: they are spooled only if the claim holds. */
  claims: TrackedJob[]
  /** flush() calls made while this was the last batch: they resolve once it is written. */
  flushes: (() => void)[]
  /** The releases of unique keys it carries are written (see releaseKey). */
  released: (() => void) | undefined
}

/** A promise handed out for a batch not sealed yet, and what resolves it once the batch is written. */
interface Waiting {
  promise: Promise<void>
  resolve: () => void
}

function waiting(): Waiting {
  let resolve!: () => void
  const promise = new Promise<void>((done) => {
    resolve = done
  })
  return { promise, resolve }
}

const RETRY_MIN_MS = 100
const RETRY_MAX_MS = 5_000

/**
 * A distributor's durable spool (docs/architecture.md, "The spool"): every job from its
 * enqueue until a durable node accepted it or it ended, as a record in a Redis hash under
 * the member's name, so that a restart with that name, or the member that adopts a gone
 * one, dispatches it again.
 *
 * Writes of one event-loop turn go as one script call (one round trip for many jobs), one
 * batch at a time and in order: a job spooled and then removed is never left behind by a
 * retry that overtook. A failed or silent batch (no answer within `timeoutMs`) is retried
 * with capped backoff until it lands; the jobs of the batches behind it wait in memory
 * (bounded by maxPending, as every job), and their `persisted` with them.
 *
 * Nothing is written before `start()`: until this process holds the member's name, the
 * spool under that name may be a live process's (a second replica under its name, which
 * start() refuses), and a job enqueued meanwhile must not land there, reported persisted.
 */
export class Spool {
  private writer: OpWriter | undefined
  private writerJobs: TrackedJob[] = []
  private writerClaims: TrackedJob[] = []
  /** What landed() handed out for the operations gathered so far: resolved with their batch. */
  private writerLanded: Waiting | undefined = undefined
  /** What releaseKey() handed out for them: resolved with their batch, not on close. */
  private writerReleased: Waiting | undefined = undefined
  private flushQueued = false
  private readonly queue: Batch[] = []
  private inFlight = false
  private failures = 0
  private readonly retryTimer = new Timer(() => this.send())
  private closed = false
  private started = false

  constructor(
    private readonly ctx: SpoolContext,
    private readonly store: GroupStore,
    /** The member whose spool this writes. */
    private readonly member: string,
    private readonly timeoutMs: number,
  ) {}

  /** Spools `job` (or writes its record again: a periodic job's next run). */
  add(job: TrackedJob): void {
    job.spooled = true
    this.op().value('s').value(job.id).value(encodeSpooled(job))
    this.writerJobs.push(job)
  }

  /**
   * Claims unique scope `scope` (job name and key) for `job` and spools it if the claim
   * holds, in one step: `claimed` tells the outcome once the batch is written. `def`
   * identifies a schedule's definition ('' for a job that is not one); `ttlMs` > 0 makes
   * the key expire then rather than at the job's end.
   */
  claim(job: TrackedJob, scope: string, def: string, ttlMs: number, scheduled: boolean): void {
    this.op()
      .value('u')
      .value(job.id)
      .value(encodeSpooled(job))
      .value(scope)
      .value(def)
      .number(ttlMs)
      .number(scheduled ? 1 : 0)
    this.writerClaims.push(job)
  }

  /**
   * Job `id` ended: a unique key it holds until its end is released (by id: it may be a
   * job read back from a spool). Resolves once that is written: the feedback that ended
   * the job is acknowledged only then, so that a crash before it leaves the node to send
   * the result again, and whoever hears it releases the key. Never resolves if the spool
   * closes first (the acks it holds go with their links, and the node sends the result to
   * the member that takes over). Undefined while writes fail: the release is retried with
   * the spool, and holding every ack of the link meanwhile would stall the node's results.
   */
  releaseKey(id: string): Promise<void> | undefined {
    this.op().value('x').value(id)
    if (this.failures > 0) return undefined
    this.writerReleased ??= waiting()
    return this.writerReleased.promise
  }

  /** `job` left the spool: a durable node holds it, or it ended. */
  remove(job: TrackedJob): void {
    if (!job.spooled) return
    job.spooled = false
    this.op().value('r').value(job.id)
  }

  /** This process holds the member's name: writes go out (those made before it, first). */
  start(): void {
    this.started = true
    if (!this.inFlight) this.send()
  }

  /**
   * Resolves once every operation made so far is written (and the spool was started), or
   * the spool is closed.
   *
   * WHY it waits for the last batch queued now and not for an empty queue: under steady load
   * (enqueues, ends of jobs) a new batch is always queued behind the one in flight, and an
   * adoption waiting for the queue to empty outlasted its lease on the gone member.
   */
  flush(): Promise<void> {
    if (this.writer !== undefined) this.seal()
    return this.landed()
  }

  /**
   * Resolves once every operation made so far is written (or the spool is closed), as
   * flush() does, but without sending this turn's batch early: the operations of a turn
   * still go as one call, and share one promise.
   */
  landed(): Promise<void> {
    if (this.closed) return Promise.resolve()
    if (this.writer !== undefined) {
      this.writerLanded ??= waiting()
      return this.writerLanded.promise
    }
    const last = this.queue[this.queue.length - 1]
    if (last === undefined) return Promise.resolve()
    return new Promise((resolve) => last.flushes.push(resolve))
  }

  /** Stops retrying; what is not written stays unwritten (the caller flushed first if it could). */
  close(): void {
    this.closed = true
    for (const batch of this.queue) for (const resolve of batch.flushes.splice(0)) resolve()
    this.writerLanded?.resolve()
    this.writerLanded = undefined
  }

  private op(): OpWriter {
    if (this.writer === undefined) {
      this.writer = new OpWriter()
      if (!this.flushQueued) {
        this.flushQueued = true
        // The jobs enqueued in this turn share one write.
        setImmediate(this.sealLater)
      }
    }
    return this.writer
  }

  private readonly sealLater = (): void => {
    this.flushQueued = false
    this.seal()
  }

  /** The operations gathered so far become a batch, queued behind those before it. */
  private seal(): void {
    const writer = this.writer
    if (writer !== undefined) {
      this.writer = undefined
      const flushes = this.writerLanded === undefined ? [] : [this.writerLanded.resolve]
      const released = this.writerReleased?.resolve
      this.queue.push({ ops: writer.bytes(), jobs: this.writerJobs, claims: this.writerClaims, flushes, released })
      this.writerJobs = []
      this.writerClaims = []
      this.writerLanded = undefined
      this.writerReleased = undefined
    }
    if (!this.inFlight) this.send()
  }

  private send(): void {
    if (!this.started) return
    const batch = this.queue[0]
    if (batch === undefined || this.closed) return
    this.inFlight = true
    let settled = false
    const deadline = new Timer(() => {
      if (settled) return
      settled = true
      this.failed(new StoreTimeoutError(this.timeoutMs, 1))
    })
    this.ctx.after(deadline, this.timeoutMs)
    this.store.applySpool(this.member, batch.ops).then(
      (answers) => {
        if (settled) return
        settled = true
        this.ctx.cancelTimer(deadline)
        this.written(batch, answers)
      },
      (err: unknown) => {
        if (settled) return
        settled = true
        this.ctx.cancelTimer(deadline)
        this.failed(err instanceof Error ? err : new Error(String(err)))
      },
    )
  }

  private written(batch: Batch, answers: ClaimAnswer[]): void {
    this.queue.shift()
    this.inFlight = false
    if (this.failures > 0) {
      this.failures = 0
      this.ctx.log.info('the spool is written again')
      this.ctx.changed(undefined)
    }
    for (const job of batch.jobs) if (job.spooled) this.ctx.persisted(job)
    if (batch.claims.length > 0) {
      const byId = new Map(answers.map((answer) => [answer.id, answer]))
      for (const job of batch.claims) {
        const answer = byId.get(job.id)
        if (answer?.outcome !== 'deduplicated') job.spooled = true
        this.ctx.claimed(job, answer)
      }
    }
    for (const resolve of batch.flushes) resolve()
    batch.released?.()
    this.send()
  }

  private failed(error: Error): void {
    this.inFlight = false
    if (this.failures === 0) {
      this.ctx.log.warn({ err: error, batches: this.queue.length }, 'cannot write the spool; retrying')
      this.ctx.changed(error)
    }
    this.failures++
    if (this.closed) return
    this.inFlight = true
    this.ctx.after(this.retryTimer, Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (this.failures - 1)))
  }
}
