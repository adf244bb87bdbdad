import { ErrorCode, StoreError } from '../errors.js'
import type { Logger } from '../logger.js'
import { ownArgs } from '../protocol/args.js'
import { MessageType, type WireJob } from '../protocol/messages.js'
import { ownString } from '../protocol/msgpack.js'
import { JobStatus, type Store } from '../storage/store.js'
import type { DistributorLink } from './distributor-link.js'
import type { LiveJob, LiveJobs } from './live-jobs.js'
import type { NodeEvents } from './node-events.js'
import type { JobRegistry } from './registry.js'
import type { StoreOutage } from './store-outage.js'

/** What the intake needs of its node. */
export interface IntakeContext {
  /** The node's own store, where jobs that arrive are saved. */
  store(): Store
  readonly log: Logger
  /** Why dispatch frames are refused now ('node is shutting down', ...); undefined while the node takes jobs. */
  refusal(): string | undefined
  /** Puts a stored job on its timer, or in the ready queue when it is due. */
  schedule(job: LiveJob): void
  /** The node's clock, epoch ms. */
  now(): number
}

const RESOLVED = Promise.resolve()

/**
 * Takes the jobs of dispatch frames: files them, saves them in one batch, and answers the
 * frame `accepted` only once the store holds them (see docs/architecture.md#dispatch-is-acknowledged).
 *
 * A job that arrives again while it is held (its `accepted` crossed a reconnect) is ours
 * already; while its first save runs (`saving`), the frame that brought it again is answered
 * only after that save, and a save that failed makes it `rejected` there too.
 */
export class JobIntake {
  /** Jobs being saved on arrival, by id: a frame that brings one again waits for that save. */
  private readonly saving = new Map<string, Promise<void>>()

  constructor(
    private readonly ctx: IntakeContext,
    private readonly live: LiveJobs<LiveJob>,
    private readonly registry: JobRegistry,
    private readonly outage: StoreOutage,
    private readonly events: NodeEvents,
  ) {}

  /** Every dispatch frame gets one `accepted`, after any `rejected` for it (see DispatchMessage). */
  onDispatch(link: DistributorLink, seq: number, jobs: WireJob[]): void {
    const generation = link.generation
    const refusal = this.ctx.refusal()
    if (refusal !== undefined) {
      link.send({
        type: MessageType.REJECTED,
        seq,
        ids: jobs.map((j) => j.id),
        code: ErrorCode.DISTRIBUTOR_CLOSED,
        message: refusal,
      })
      link.send({ type: MessageType.ACCEPTED, seq })
      return
    }
    const store = this.ctx.store()
    const now = this.ctx.now()
    const fresh: LiveJob[] = []
    // Known jobs whose first save is still running: the frame's answer waits for it.
    let earlier: Promise<void>[] | undefined
    let earlierIds: string[] | undefined
    for (const wire of jobs) {
      // What a held job keeps is copied out of the frame.
      const held = wire.dueAt > now
      const id = held ? ownString(wire.id) : wire.id
      // The same job again (its acceptance crossed a reconnect): already ours, and accepted
      // with the rest of the frame once it is stored.
      const known = this.live.get(id)
      if (known !== undefined) {
        // Sent back while an attempt its distributor had taken back still runs: ours again.
        // And a cancel heard for it meanwhile was meant for another copy: a job the
        // application cancelled is not sent again.
        if (known.released === true) known.released = false
        if (known.cancelRequested) known.cancelRequested = false
        const save = this.saving.get(id)
        if (save !== undefined) {
          ;(earlier ??= []).push(save)
          ;(earlierIds ??= []).push(id)
        }
        continue
      }
      const job: LiveJob = {
        id,
        // The definition's copy of the name: one string for all jobs of a kind, not one each.
        name: this.registry.get(wire.name)?.name ?? wire.name,
        args: held ? ownArgs(wire.args) : wire.args,
        status: JobStatus.NEW,
        attempt: 0,
        run: wire.run,
        dueAt: wire.dueAt,
        runDueAt: wire.dueAt,
        defer: wire.defer ?? false,
        distributor: link.identity,
        createdAt: now,
        phase: 'saving',
        cancelRequested: false,
        store,
        timerIndex: -1,
      }
      if (wire.period !== undefined) job.period = wire.period
      if (wire.cron !== undefined) job.cron = wire.cron
      if (wire.tz !== undefined) job.tz = wire.tz
      if (wire.maxAttempt !== undefined) job.maxAttempt = wire.maxAttempt
      if (wire.retry !== undefined) job.retry = wire.retry
      if (wire.timeout !== undefined) job.timeout = wire.timeout
      this.live.add(job)
      fresh.push(job)
    }
    // `live` is all the storage a memory node has (see StoreOutage.persist): held as of now.
    if (earlier === undefined && (fresh.length === 0 || !store.durable)) {
      this.onStored(link, generation, seq, fresh)
      return
    }
    const own = fresh.length === 0 || !store.durable ? RESOLVED : store.saveJobs(fresh)
    if (own !== RESOLVED) {
      for (const job of fresh) this.saving.set(job.id, own)
    }
    void Promise.allSettled([own, ...(earlier ?? [])]).then(([mine, ...before]) => {
      for (const job of fresh) if (this.saving.get(job.id) === own) this.saving.delete(job.id)
      // A known job whose first save failed was dropped with it: not ours after all.
      const rejected = (earlierIds ?? []).filter((_, i) => before[i]?.status === 'rejected')
      const error =
        mine?.status === 'rejected'
          ? mine.reason instanceof Error
            ? mine.reason
            : new StoreError(String(mine.reason))
          : undefined
      if (error !== undefined) {
        for (const job of fresh) {
          this.live.delete(job)
          rejected.push(job.id)
        }
        this.ctx.log.error({ err: error, jobs: fresh.length }, 'cannot store jobs; rejecting them')
        // A save that timed out (or failed with its connection) may still be carried out
        // when the store wakes up: these jobs must not be found there after a restart, since
        // they go elsewhere now. Replayed with the other writes, after that save.
        const ids = fresh.map((job) => job.id)
        this.outage.replayLater(() => Promise.all(ids.map((id) => store.removeJob(id))))
      }
      if (rejected.length > 0) {
        link.sendOn(generation, {
          type: MessageType.REJECTED,
          seq,
          ids: rejected,
          code: ErrorCode.STORE,
          message: error?.message ?? 'node storage unavailable',
        })
      }
      if (error === undefined) {
        this.onStored(link, generation, seq, fresh)
        return
      }
      link.sendOn(generation, { type: MessageType.ACCEPTED, seq })
      this.outage.failed(error)
    })
  }

  private onStored(link: DistributorLink, generation: number, seq: number, fresh: LiveJob[]): void {
    link.sendOn(generation, { type: MessageType.ACCEPTED, seq })
    const announce = this.events.wants('job:accepted')
    for (const job of fresh) {
      if (announce) this.events.emit('job:accepted', { id: job.id, name: job.name })
      if (job.phase === 'saving') {
        job.phase = 'scheduled'
        this.ctx.schedule(job)
      } else if (job.phase === 'done') {
        // Cancelled while it was being saved: the record goes, through the outage's order
        // like any write (dropped, it would run again at the next start).
        void this.outage.persist(job.store, () => job.store.removeJob(job.id))
      }
    }
  }
}
