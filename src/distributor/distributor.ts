import { createServer as createTcpServer, type Server, type Socket } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import { FRAME_ENVELOPE_BYTES } from '../config.js'
import {
  AcceptTimeoutError,
  ConnectionClosedError,
  DistributorClosedError,
  ErrorCode,
  FrameTooLargeError,
  HandshakeError,
  InvalidArgumentError,
  JobFailedError,
  JobsError,
  ProtocolError,
  QueueFullError,
  serializeError,
} from '../errors.js'
import { TypedEmitter } from '../events.js'
import { decodeArgs, encodeArgs, type JobArgsObject } from '../protocol/args.js'
import { ByteBudget } from '../protocol/byte-budget.js'
import { Connection } from '../protocol/connection.js'
import { HANDSHAKE_MAX_FRAME_SIZE } from '../protocol/frame.js'
import {
  MessageType,
  type CancelResultMessage,
  type Message,
  type WireFeedback,
  type WireJob,
} from '../protocol/messages.js'
import type { ArgsOf } from '../node/registry.js'
import { afterMicrotasks } from '../scheduling/clock.js'
import { Scheduler } from '../scheduling/scheduler.js'
import type { Timer } from '../scheduling/timer-heap.js'
import type { JobHandle } from './job-handle.js'
import { JobTable } from './job-table.js'
import { fits, NodePool } from './node-pool.js'
import { DELAYED_LOAD, INSTANT_LOAD, NodeSession } from './node-session.js'
import {
  resolveDistributorOptions,
  resolveEnqueueOptions,
  type DistributorOptions,
  type EnqueueOptions,
  type ResolvedDistributorOptions,
} from './options.js'
import { PendingQueue, routeKey, type Route } from './pending-queue.js'
import { holderOf, toWireJob, TrackedJob, wireSize, type FeedbackCallback } from './tracked-job.js'

export interface DistributorEventMap {
  listening: { host: string; port: number }
  'node:connect': { node: string; jobs: string[]; concurrency: number; durable: boolean }
  'node:disconnect': { node: string; reason: JobsError | undefined }
  /** A connection that failed the handshake (bad version, failed auth, timeout). */
  'node:rejected': { remote: string; code: string; message: string }
  'job:enqueue': { id: string; name: string }
  'job:dispatch': { id: string; name: string; node: string }
  'job:accepted': { id: string; name: string; node: string }
  /** No connected node knows the job's name: it waits until one that does connects. */
  'job:unroutable': { id: string; name: string }
  /** Back to the queue: its node dropped before finishing it, or did not accept it in time. */
  'job:requeue': { id: string; name: string; node: string }
  /** A node left jobs unaccepted past `acceptTimeoutMs`: they were taken back; it gets none until it answers. */
  'node:unresponsive': { node: string; jobs: number }
  'job:success': { id: string; name: string; run: number; node: string; args: JobArgsObject }
  'job:failed': { id: string; name: string; run: number; node: string; args: JobArgsObject }
  'job:cancelled': { id: string; name: string }
  /** Feedback for a job this distributor does not hold (it restarted since the enqueue). */
  'feedback:orphan': { id: string; run: number; kind: 'success' | 'error'; node: string; args: JobArgsObject }
  /** A feedback closure threw; the distributor goes on. */
  'feedback:error': { id: string; name: string; error: Error }
  close: Record<string, never>
}

/** Ids of jobs finished over links that dropped since, to tell a re-sent feedback from an orphan. */
const RECENT_LIMIT = 100_000

/**
 * A bounded "seen lately" set in two generations: when the young one fills, it becomes the
 * old one and the previous old one is dropped. O(1) per add, unlike evicting the oldest
 * entry of one Set, which makes V8 walk over deleted slots.
 */
class RecentIds {
  private young = new Set<string>()
  private old = new Set<string>()

  constructor(private readonly generation: number) {}

  add(id: string): void {
    this.young.add(id)
    if (this.young.size >= this.generation) {
      this.old = this.young
      this.young = new Set()
    }
  }

  has(id: string): boolean {
    return this.young.has(id) || this.old.has(id)
  }
}

/**
 * Holds pending jobs and the caller's feedback closures; pushes jobs to nodes over framed
 * TCP and runs feedback as it comes back.
 *
 * Lifecycle: NEW → LISTENING (start) → CLOSED (close). `enqueue` works from construction
 * (jobs wait until a node connects) until close.
 *
 * INVARIANTS: every job in `jobs` is in exactly one place: the pending queue, or a
 * session's `held` list (sent, or accepted by a memory node), or nowhere but its `owner`
 * name (accepted by a durable node, which keeps it across its own restarts). The dispatch pass runs only when something changed that could let a job move
 * (an enqueue, a node with room), never on a timer, so an idle distributor costs nothing.
 */
export class Distributor extends TypedEmitter<DistributorEventMap> {
  readonly options: ResolvedDistributorOptions
  private readonly log
  private server: Server | undefined
  private readonly connections = new Set<Connection>()
  /** Nodes told to stop a second copy of a job (see reportedByOther); rare, and gone with the job. */
  private readonly stoppedCopies = new WeakMap<TrackedJob, Set<string>>()
  /** TLS: the TCP socket under every open connection, those still in the handshake too (no Connection owns them yet). */
  private readonly tcpSockets = new Set<Socket>()
  private readonly pool = new NodePool()
  /** Bytes buffered for connections still in their handshake, all together (see maxHandshakeBytes). */
  private readonly handshakeBytes: ByteBudget
  /** Every timer of the distributor but the per-connection ones: acceptance deadlines. */
  private readonly timers = new Scheduler<Timer>((timer) => timer.fire(), undefined, {
    onError: (err) => this.log.error({ err }, 'timer callback failed'),
  })
  private readonly queue = new PendingQueue()
  private readonly jobs = new JobTable()
  private readonly recent = new RecentIds(RECENT_LIMIT)
  /** Sessions given jobs by the dispatch pass under way. */
  private readonly given: NodeSession[] = []
  private readonly unroutableNames = new Set<string>()
  /** Jobs a cancel was sent for, not answered yet, with the `cancel()` calls waiting on it. */
  private readonly cancelRequests = new Map<TrackedJob, ((cancelled: boolean) => void)[]>()
  private seq = 0
  private dispatchQueued = false
  private closed = false
  private boundPort = 0

  constructor(options: DistributorOptions = {}, defaults = { alwaysUseSpecifiedNode: false }) {
    super()
    this.options = resolveDistributorOptions(options, defaults)
    this.log = this.options.logger
    this.handshakeBytes = new ByteBudget(this.options.maxHandshakeBytes)
  }

  /** The bound port (the real one when listening on port 0). */
  get port(): number {
    return this.boundPort
  }

  get listening(): boolean {
    return this.server?.listening === true
  }

  /** Jobs waiting for a node (counted against maxPending). */
  get pendingCount(): number {
    return this.queue.size
  }

  /** Jobs enqueued and not yet finished. */
  get activeCount(): number {
    return this.jobs.size
  }

  /** Names of the nodes connected now. */
  get nodes(): string[] {
    return this.pool.all().map((s) => s.name)
  }

  async start(): Promise<this> {
    if (this.server !== undefined) return this
    const onSocket = (socket: Socket): void => this.onSocket(socket)
    let server: Server
    if (this.options.tls === undefined) {
      server = createTcpServer(onSocket)
    } else {
      // Node's own TLS handshake timeout is 120 s: a client that never starts TLS would
      // hold a connection slot that long. Ours bounds the TLS handshake too (the wait for
      // the hello starts once TLS is up).
      const tlsServer = createTlsServer({ handshakeTimeout: this.options.handshakeTimeoutMs, ...this.options.tls }, onSocket)
      // A failed TLS handshake (unknown CA, missing client certificate, plaintext client)
      // would otherwise leave no trace here, and Node does not close the socket after a
      // handshake timeout: we do.
      tlsServer.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
        const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`
        // A client certificate that fails verification shows only here (err is a bare hang-up).
        const authorizationError = socket.authorizationError === undefined ? undefined : String(socket.authorizationError)
        this.log.warn({ peer, code: err.code, err: err.message, authorizationError }, 'TLS handshake with a client failed')
        socket.destroy()
      })
      tlsServer.on('connection', (socket: Socket) => {
        this.tcpSockets.add(socket)
        socket.once('close', () => this.tcpSockets.delete(socket))
      })
      server = tlsServer
    }
    server.maxConnections = this.options.maxConnections
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.options.port, this.options.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    server.on('error', (err) => this.log.error({ err }, 'server error'))
    const address = server.address()
    this.boundPort = typeof address === 'object' && address !== null ? address.port : this.options.port
    this.log.info({ host: this.options.host, port: this.boundPort, tls: this.options.tls !== undefined }, 'distributor listening')
    this.safeEmit('listening', { host: this.options.host, port: this.boundPort })
    return this
  }

  /**
   * Adds a job. Throws at once (nothing enqueued) on a bad name, args or option, a full
   * queue, or a closed distributor.
   */
  enqueue<N extends string>(
    name: N,
    args: ArgsOf<N> = {} as ArgsOf<N>,
    opts: EnqueueOptions = {},
    onSuccess?: FeedbackCallback<ArgsOf<N>>,
    onError?: FeedbackCallback<ArgsOf<N>>,
  ): JobHandle<ArgsOf<N>> {
    if (this.closed) throw new DistributorClosedError('distributor is closed: enqueue refused')
    if (typeof name !== 'string' || name.length === 0) {
      throw new InvalidArgumentError(`'name' must be a non-empty string, got ${typeof name}`)
    }
    if (onSuccess !== undefined && typeof onSuccess !== 'function') throw new InvalidArgumentError(`'onSuccess' must be a function`)
    if (onError !== undefined && typeof onError !== 'function') throw new InvalidArgumentError(`'onError' must be a function`)
    const resolved = resolveEnqueueOptions(opts, Date.now())
    const bytes = encodeArgs(args, this.options.maxFrameSize - FRAME_ENVELOPE_BYTES)
    if (this.queue.size >= this.options.maxPending) throw new QueueFullError(this.options.maxPending)

    const job = new TrackedJob(
      this.jobs.newId(),
      this,
      name,
      bytes,
      resolved.dueAt,
      resolved.job,
      routeKey(name, resolved.job.node, resolved.job.notNode),
      this.seq++,
      onSuccess as FeedbackCallback | undefined,
      onError as FeedbackCallback | undefined,
    )
    this.jobs.add(job)
    this.queue.push(job)
    if (this.listenerCount('job:enqueue') > 0) this.safeEmit('job:enqueue', { id: job.id, name })
    if (!this.pool.knows(name)) this.reportUnroutable(job)
    this.scheduleDispatch()
    return job as unknown as JobHandle<ArgsOf<N>>
  }

  /**
   * Cancels a job by id: a job not yet run never runs, a periodic job stops. Resolves true
   * when it was cancelled before finishing, false when it had finished (or is unknown here).
   * Neither feedback closure runs for it; `done` resolves with the args as last known.
   */
  cancel(id: string): Promise<boolean> {
    const job = this.jobs.get(id)
    // Closed (or closing: a closure that close() runs may cancel another job): every job
    // ended with close(), and nothing would answer a cancel sent now.
    if (job === undefined || this.closed) return Promise.resolve(false)
    if (job.state === 'pending') {
      this.finishCancelled(job)
      return Promise.resolve(true)
    }
    return new Promise<boolean>((resolve) => {
      const waiters = this.cancelRequests.get(job)
      if (waiters !== undefined) waiters.push(resolve)
      else this.cancelRequests.set(job, [resolve])
      this.sendCancel(job)
    })
  }

  /**
   * Stops taking enqueues, rejects every unfinished job's `done` with
   * DistributorClosedError (their error closures get it as `args.error`), and closes every
   * connection. Nodes keep the feedback of jobs they accepted and deliver it to whichever
   * distributor next listens at this address (as `feedback:orphan` there).
   */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const err = new DistributorClosedError('distributor closed before the job finished')
    for (const job of this.jobs.values()) {
      const args = { ...decodeArgs(job.args), error: serializeError(err) }
      this.runClosure(job, job.onError, args)
      job.state = 'cancelled'
      job.reject(err)
      this.answerCancels(job, false)
    }
    this.jobs.clear()
    this.queue.clear()
    this.timers.close()
    const server = this.server
    for (const connection of this.connections) connection.close()
    if (server !== undefined) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const connection of this.connections) connection.socket.destroy()
        // The server waits for every open socket: one in a TLS handshake would hold close()
        // for as long as handshakeTimeoutMs.
        for (const socket of this.tcpSockets) socket.destroy()
      })
    }
    this.safeEmit('close', {})
  }

  // --- connections -------------------------------------------------------------------

  private onSocket(socket: Socket): void {
    if (this.closed) {
      socket.destroy()
      return
    }
    const session = new NodeSession(this.onAcceptDeadline)
    const connection = new Connection(
      socket,
      {
        maxFrameSize: this.options.maxFrameSize,
        stallTimeoutMs: this.options.stallTimeoutMs,
        log: this.log,
        // Until it has proven itself, a stranger may make us hold little (see maxHandshakeBytes).
        handshake: { maxFrameSize: Math.min(HANDSHAKE_MAX_FRAME_SIZE, this.options.maxFrameSize), budget: this.handshakeBytes },
      },
      {
        onMessage: (message) => this.onMessage(session, message),
        onDrain: () => this.scheduleDispatch(),
        onClose: (reason) => this.onSessionClose(session, reason),
      },
    )
    session.connection = connection
    session.maxFrameSize = this.options.maxFrameSize
    this.connections.add(connection)
    const timer = setTimeout(() => {
      if (session.state === 'handshake') {
        this.rejectSession(session, new HandshakeError(`no hello within ${this.options.handshakeTimeoutMs} ms`, ErrorCode.HANDSHAKE_TIMEOUT))
      }
    }, this.options.handshakeTimeoutMs)
    timer.unref()
    socket.once('close', () => clearTimeout(timer))
    session.sendChallenge(this.options.secret !== undefined)
  }

  private rejectSession(session: NodeSession, err: JobsError): void {
    this.log.warn({ peer: session.connection.remote, node: session.name || undefined, code: err.code }, err.message)
    this.safeEmit('node:rejected', { remote: session.connection.remote, code: err.code, message: err.message })
    session.connection.close(err)
  }

  private onMessage(session: NodeSession, message: Message): void {
    if (session.state === 'handshake') {
      if (message.type !== MessageType.HELLO) {
        this.rejectSession(session, new ProtocolError(`expected 'hello', got '${message.type}'`))
        return
      }
      try {
        session.acceptHello(message, this.options.secret, this.options.name, this.options.heartbeatMs, this.options.maxFrameSize)
      } catch (err) {
        this.rejectSession(session, err instanceof JobsError ? err : new HandshakeError(String(err)))
        return
      }
      this.onSessionReady(session)
      return
    }
    switch (message.type) {
      case MessageType.PING:
        return
      case MessageType.ACCEPTED:
        return this.onAccepted(session, message.seq)
      case MessageType.REJECTED:
        this.log.warn({ node: session.name, code: message.code, count: message.ids.length }, `node rejected jobs: ${message.message}`)
        return this.onRejected(session, message.seq, message.ids)
      case MessageType.STATE:
        session.accepting = message.accepting
        if (message.accepting) this.scheduleDispatch()
        return
      case MessageType.FEEDBACK:
        return this.onFeedback(session, message.seq, message.items)
      case MessageType.CANCEL_RESULT:
        return this.onCancelResult(session, message)
      case MessageType.WAITING:
        return this.onWaiting(session, message.ids)
      case MessageType.ERROR:
        this.log.warn({ node: session.name, code: message.code }, `node reported: ${message.message}`)
        session.connection.close()
        return
      case MessageType.HELLO:
      case MessageType.CHALLENGE:
      case MessageType.WELCOME:
      case MessageType.DISPATCH:
      case MessageType.FEEDBACK_ACK:
      case MessageType.CANCEL:
        session.connection.close(new ProtocolError(`unexpected '${message.type}' from a node`))
        return
      default: {
        const never: never = message
        throw new ProtocolError(`unhandled message ${String(never)}`)
      }
    }
  }

  private onSessionReady(session: NodeSession): void {
    // A restarted node may reconnect before its old connection is noticed dead: the new one wins.
    const previous = this.pool.get(session.name)
    if (previous !== undefined) {
      this.log.warn({ node: session.name }, 'node reconnected; dropping its previous connection')
      previous.connection.close(new ConnectionClosedError('replaced by a newer connection from the same node'))
      this.releaseSession(previous, undefined)
    }
    this.pool.add(session)
    this.log.info({ node: session.name, jobs: session.jobs.size, concurrency: session.concurrency, durable: session.durable }, 'node connected')
    this.safeEmit('node:connect', {
      node: session.name,
      jobs: [...session.jobs],
      concurrency: session.concurrency,
      durable: session.durable,
    })
    for (const name of session.jobs) this.unroutableNames.delete(name)
    if (session.durable) this.adoptOwnedJobs(session)
    for (const job of this.cancelRequests.keys()) if (job.owner === session.name) this.sendCancel(job)
    this.scheduleDispatch()
  }

  /**
   * A durable node that reconnects still runs the instant jobs it accepted before: count
   * them against its new session's window, and let their feedback release it there. A scan
   * of every held job, but only when a durable node connects.
   */
  private adoptOwnedJobs(session: NodeSession): void {
    for (const job of this.jobs.values()) {
      if (job.state !== 'accepted' || job.owner !== session.name || job.load === 0 || job.session === session) continue
      job.session = session
      session.load += job.load
    }
  }

  private onSessionClose(session: NodeSession, reason: JobsError | undefined): void {
    this.connections.delete(session.connection)
    if (session.state !== 'ready') {
      session.state = 'closed'
      return
    }
    this.releaseSession(session, reason)
  }

  /** Takes a session out of routing and puts back in the queue what it did not keep. */
  private releaseSession(session: NodeSession, reason: JobsError | undefined): void {
    if (session.state === 'closed') return
    session.state = 'closed'
    this.pool.remove(session)
    this.timers.cancel(session.acceptTimer)
    // After close() every job was settled already: nothing goes back anywhere.
    if (this.closed) return
    // Our last acks on this link may be lost with it, and the node will send those results
    // again: remember them so that they are dropped as duplicates, not reported as orphans.
    for (const id of session.finished.drain()) this.recent.add(id)
    const back: TrackedJob[] = []
    for (const job of session.held.drain()) {
      if (this.cancelRequests.has(job)) {
        if (session.durable) {
          // It may be stored there (its `accepted` lost with the link), and a durable node
          // runs what it stored: the cancel goes again when that node is back, and its
          // answer (cancelled, finished, or unknown there) settles the job.
          job.state = 'accepted'
          job.owner = session.name
          job.session = undefined
          job.load = 0
          continue
        }
        // A memory node drops every job of a lost link (Node.dropJobsOf): it is cancelled.
        this.finishCancelled(job)
        continue
      }
      back.push(job)
      job.state = 'pending'
      job.session = undefined
      job.owner = undefined
      job.load = 0
      this.safeEmit('job:requeue', { id: job.id, name: job.name, node: session.name })
    }
    if (back.length > 0) {
      this.log.warn({ node: session.name, jobs: back.length }, 'node dropped; its unfinished jobs go back to the queue')
      this.queue.requeue(back)
    }
    this.log.info({ node: session.name, reason: reason?.message }, 'node disconnected')
    this.safeEmit('node:disconnect', { node: session.name, reason })
    this.scheduleDispatch()
  }

  // --- dispatch ------------------------------------------------------------------------

  private scheduleDispatch(): void {
    if (this.dispatchQueued || this.queue.size === 0 || this.closed) return
    this.dispatchQueued = true
    afterMicrotasks(this.dispatchLater)
  }

  // One function for the distributor's lifetime: a pass is queued per enqueue burst.
  private readonly dispatchLater = (): void => this.dispatchPending()

  /** One pass over the routes: moves every job that has an eligible node with room. */
  private dispatchPending(): void {
    this.dispatchQueued = false
    // Each session's jobs of this pass gather in its `outgoing` (which becomes the frame's
    // record of its jobs); `given` lists the sessions that got some: no Map per pass.
    const given = this.given
    const now = Date.now()
    for (const route of this.queue.routes.values()) {
      if (route.asideRoute !== undefined && route.asideRoute.length > 0) this.dispatchAside(route.asideRoute, now)
      this.dispatchRoute(route, now)
      this.queue.dropEmpty(route)
    }
    for (const session of given) {
      const batch = session.outgoing
      session.outgoing = []
      this.sendBatch(session, batch, now)
    }
    given.length = 0
  }

  /** Moves the jobs of one route, in order, while nodes with room take them. */
  private dispatchRoute(route: Route, now: number): void {
    const strict = this.options.alwaysUseSpecifiedNode
    for (;;) {
      const job = route.peek()
      if (job === undefined) return
      const bytes = wireSize(job)
      const session = this.pool.pick(route.name, route.node, route.notNode, strict, bytes)
      if (session === undefined) {
        // No node with room takes it now. It fails if no connected node that runs it could
        // ever take a frame that large. It waits if every node with room is too small for
        // it: aside, so that the jobs behind it go on. Otherwise no node has room at all.
        const roomiest = this.pool.roomiest(route.name, route.node, route.notNode, strict)
        if (roomiest === undefined) return
        if (fits(roomiest, bytes)) {
          if (this.pool.pick(route.name, route.node, route.notNode, strict, 0) === undefined) return
          route.shift()
          this.queue.setAside(job, route)
          continue
        }
        route.shift()
        // Still 'pending': finishing it takes it off the queue's count.
        this.failOversized(job, roomiest)
        continue
      }
      route.shift()
      this.give(job, session, now)
    }
  }

  /**
   * Jobs set aside for their size: each is looked at, in order, since each may wait for
   * other nodes (a job that only a node whose store is down takes must not hold back one a
   * smaller node with room takes); those that still wait keep their order.
   */
  private dispatchAside(route: Route, now: number): void {
    const strict = this.options.alwaysUseSpecifiedNode
    const jobs = route.takeAll()
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i] as TrackedJob
      // A closure run by a failure below may have cancelled it, or closed the distributor.
      if (job.state !== 'pending' || this.closed) continue
      const bytes = wireSize(job)
      const session = this.pool.pick(route.name, route.node, route.notNode, strict, bytes)
      if (session !== undefined) {
        this.give(job, session, now)
        continue
      }
      const roomiest = this.pool.roomiest(route.name, route.node, route.notNode, strict)
      if (roomiest !== undefined && !fits(roomiest, bytes)) {
        this.failOversized(job, roomiest)
        continue
      }
      route.push(job)
      // No node has room for any job: the rest wait, in order, without a look each.
      if (this.pool.pick(route.name, route.node, route.notNode, strict, 0) === undefined) {
        for (let k = i + 1; k < jobs.length; k++) route.push(jobs[k] as TrackedJob)
        return
      }
    }
  }

  /** A job leaves the queue for `session`'s next dispatch frame. */
  private give(job: TrackedJob, session: NodeSession, now: number): void {
    this.queue.taken()
    this.assign(job, session, now)
    if (session.outgoing.length === 0) this.given.push(session)
    session.outgoing.push(job)
  }

  /** `job`, out of the queue, is `session`'s: counted against its window, and held for a drop. */
  private assign(job: TrackedJob, session: NodeSession, now: number): void {
    job.state = 'sent'
    job.session = session
    job.load = job.opts.period !== undefined || job.dueAt > now ? DELAYED_LOAD : INSTANT_LOAD
    session.load += job.load
    session.held.add(job)
  }

  /** Sends a batch as dispatch frames that each stay under the frame limit. */
  private sendBatch(session: NodeSession, batch: TrackedJob[], now: number): void {
    // wireSize is an estimate: keep batches to half the limit so that no sum of estimates
    // can produce a frame over it (a lone job always fits: its size was checked).
    const limit = (session.maxFrameSize - FRAME_ENVELOPE_BYTES) / 2
    let jobs: TrackedJob[] = []
    let frame: WireJob[] = []
    let bytes = 0
    for (const job of batch) {
      const size = wireSize(job)
      if (frame.length > 0 && bytes + size > limit) {
        session.dispatch(jobs, frame, now)
        jobs = []
        frame = []
        bytes = 0
      }
      jobs.push(job)
      frame.push(toWireJob(job))
      bytes += size
      if (this.listenerCount('job:dispatch') > 0) this.safeEmit('job:dispatch', { id: job.id, name: job.name, node: session.name })
    }
    if (frame.length > 0) session.dispatch(jobs, frame, now)
    if (session.acceptTimer.timerIndex === -1) this.timers.schedule(session.acceptTimer, now + this.options.acceptTimeoutMs)
  }

  private onAccepted(session: NodeSession, seq: number): void {
    const frame = session.answered(seq)
    if (frame === undefined) {
      session.connection.close(new ProtocolError(`'accepted' for dispatch frame ${seq}, which awaits no answer`))
      return
    }
    if (session.unresponsive) {
      session.unresponsive = false
      this.log.info({ node: session.name }, 'node answers again; dispatching to it')
    }
    const now = Date.now()
    if (frame.late) this.onLateAccepted(session, frame.jobs, now)
    else {
      for (const job of frame.jobs) {
        // Rejected, or back in the queue after a cancel: not this answer's to take.
        if (job === undefined || job.state !== 'sent' || job.session !== session) continue
        this.acceptedBy(session, job, now)
      }
    }
    this.scheduleDispatch()
  }

  private acceptedBy(session: NodeSession, job: TrackedJob, now: number): void {
    job.state = 'accepted'
    job.owner = session.name
    // A durable node owns it now; a memory node's drop would still send it back.
    if (session.durable) session.held.remove(job)
    // A job that will wait on the node's timer does not hold a slot of its window; one that
    // was delayed when sent but is due by now runs at once, and counts whole.
    if (job.opts.period !== undefined || job.dueAt > now) this.releaseLoad(job)
    else if (job.load === DELAYED_LOAD) this.setLoad(job, INSTANT_LOAD)
    if (this.listenerCount('job:accepted') > 0) this.safeEmit('job:accepted', { id: job.id, name: job.name, node: session.name })
  }

  /**
   * `session`'s node stored the jobs of a frame after all, past the acceptance deadline
   * that took them back. One still waiting here is its again; one that went elsewhere
   * meanwhile (or ended) runs there, and this node's copy is stopped, as any second copy.
   */
  private onLateAccepted(session: NodeSession, jobs: readonly (TrackedJob | undefined)[], now: number): void {
    for (const job of jobs) {
      if (job === undefined) continue
      if (job.state === 'pending') {
        this.queue.taken()
        this.assign(job, session, now)
        this.acceptedBy(session, job, now)
      } else if (job.state === 'sent' && job.session === session) {
        this.acceptedBy(session, job, now)
      } else if (job.state === 'done' || job.state === 'cancelled') {
        this.stopCopy(session, job.id)
      } else if (holderOf(job) !== session.name) {
        this.stopCopy(session, job.id, job)
      }
    }
  }

  /**
   * The acceptance deadline of `session`'s oldest frame passed: the jobs of every frame
   * that old go back to the queue, for other nodes, and the node gets no more until it
   * answers. A node that answers late is handled by onLateAccepted.
   */
  private readonly onAcceptDeadline = (session: NodeSession): void => {
    if (session.state !== 'ready' || this.closed) return
    const now = Date.now()
    const timeoutMs = this.options.acceptTimeoutMs
    const back: TrackedJob[] = []
    for (const job of session.expire(now - timeoutMs)) {
      // Rejected or cancelled meanwhile; or a cancel waits on it, which the node's answer settles.
      if (job === undefined || job.state !== 'sent' || job.session !== session || this.cancelRequests.has(job)) continue
      session.held.remove(job)
      this.releaseLoad(job)
      job.session = undefined
      job.state = 'pending'
      back.push(job)
      this.safeEmit('job:requeue', { id: job.id, name: job.name, node: session.name })
    }
    if (back.length > 0) {
      session.unresponsive = true
      this.log.warn({ node: session.name, jobs: back.length }, new AcceptTimeoutError(session.name, back.length, timeoutMs).message)
      this.safeEmit('node:unresponsive', { node: session.name, jobs: back.length })
      this.queue.requeue(back)
      this.scheduleDispatch()
    }
    const oldest = session.oldestUnansweredAt()
    if (oldest !== undefined) this.timers.schedule(session.acceptTimer, oldest + timeoutMs)
  }

  /** Jobs of `session`'s node wait out a retry backoff there: they leave its window. */
  private onWaiting(session: NodeSession, ids: string[]): void {
    for (const id of ids) {
      const job = this.jobs.get(id)
      if (job !== undefined && job.state === 'accepted' && job.session === session) this.releaseLoad(job)
    }
    this.scheduleDispatch()
  }

  private onRejected(session: NodeSession, seq: number, ids: string[]): void {
    const back: TrackedJob[] = []
    for (const id of ids) {
      const job = this.sentTo(session, id)
      if (job === undefined) continue
      session.held.remove(job)
      this.releaseLoad(job)
      job.session = undefined
      // Not stored there, and a cancel is waiting: it ends here instead of going elsewhere
      // (still 'sent': it is not in the queue, nor counted there).
      if (this.cancelRequests.has(job)) {
        this.finishCancelled(job)
        continue
      }
      job.state = 'pending'
      back.push(job)
    }
    session.forget(seq, ids)
    // A node that refuses work is not a candidate until it says it accepts again.
    session.accepting = false
    this.queue.requeue(back)
    this.scheduleDispatch()
  }

  /** The job `id` if it is in a dispatch to `session` that was not answered yet. */
  private sentTo(session: NodeSession, id: string): TrackedJob | undefined {
    const job = this.jobs.get(id)
    return job !== undefined && job.state === 'sent' && job.session === session ? job : undefined
  }

  /**
   * A node with a smaller frame limit than ours would drop the link on this job and get it
   * again after redialling, forever. A job too large for every connected node that runs it
   * fails instead, naming the one with the largest limit (`session`).
   */
  private failOversized(job: TrackedJob, session: NodeSession): void {
    const err = new FrameTooLargeError(
      wireSize(job),
      session.maxFrameSize - FRAME_ENVELOPE_BYTES,
      `job '${job.name}' (${job.id}) is too large for every connected node that runs it (the largest limit is node '${session.name}')`,
    )
    this.log.error({ id: job.id, job: job.name, node: session.name }, err.message)
    this.finish(job)
    const args = { ...decodeArgs(job.args), error: serializeError(err) }
    this.runClosure(job, job.onError, args)
    this.safeEmit('job:failed', { id: job.id, name: job.name, run: job.run, node: session.name, args })
    job.reject(new JobFailedError(job.name, job.id, args))
  }

  private releaseLoad(job: TrackedJob): void {
    this.setLoad(job, 0)
  }

  private setLoad(job: TrackedJob, units: number): void {
    if (job.session !== undefined) job.session.load += units - job.load
    job.load = units
  }

  private reportUnroutable(job: TrackedJob): void {
    this.safeEmit('job:unroutable', { id: job.id, name: job.name })
    if (!this.unroutableNames.has(job.name)) {
      // One line per name until a node that knows it connects: a burst must not flood the log.
      this.unroutableNames.add(job.name)
      this.log.warn({ job: job.name }, `no connected node knows job '${job.name}'; jobs wait until one connects`)
    }
  }

  // --- feedback ------------------------------------------------------------------------

  private onFeedback(session: NodeSession, seq: number, items: WireFeedback[]): void {
    for (const item of items) {
      // A closure closed the distributor: the rest stays with the node (unacknowledged), for
      // whichever distributor listens here next.
      if (this.closed) return
      const job = this.jobs.get(item.id)
      if (job === undefined) {
        if (!this.recent.has(item.id) && !session.finished.has(item.id)) {
          this.safeEmit('feedback:orphan', { id: item.id, run: item.run, kind: item.kind, node: session.name, args: argsOf(item) })
        } else if (!item.final) {
          // It ended here, yet this node still runs a schedule of it: a second copy (see below).
          this.stopCopy(session, item.id)
        }
        continue
      }
      const holder = holderOf(job)
      // At-least-once: a feedback re-sent after a reconnect is delivered once. Except that
      // the holder's final result of a run a second copy reported first still ends the job
      // (dropped, no node would hold it), though it is not delivered again.
      const stale = item.run < job.run
      if (holder !== session.name) this.reportedByOther(session, job, holder, item.final, stale)
      if (stale && !(item.final && holder === session.name)) continue
      const args = argsOf(item)
      if (item.final) {
        // Out of the table before its closure runs: a closure that closes the distributor
        // must not find the job unfinished and fail it a second time.
        this.finish(job)
        session.finished.push(job.id)
      }
      if (!stale) {
        const event = item.kind === 'success' ? 'job:success' : 'job:failed'
        this.runClosure(job, item.kind === 'success' ? job.onSuccess : job.onError, args)
        if (this.listenerCount(event) > 0) this.safeEmit(event, { id: job.id, name: job.name, run: item.run, node: session.name, args })
      }
      if (item.final) {
        if (item.kind === 'success') job.resolve(args)
        else job.reject(new JobFailedError(job.name, job.id, args))
      } else if (job.opts.period !== undefined) {
        // Runs are due at fixed steps from the first (no drift): step from this run's due time.
        job.dueAt += (item.run + 1 - job.run) * job.opts.period * 1000
        job.run = item.run + 1
      }
    }
    session.connection.send({ type: MessageType.FEEDBACK_ACK, seq })
    this.scheduleDispatch()
  }

  private runClosure(job: TrackedJob, closure: FeedbackCallback | undefined, args: JobArgsObject): void {
    if (closure === undefined) return
    try {
      const result = closure(args)
      if (result instanceof Promise) result.catch((err: unknown) => this.closureFailed(job, err))
    } catch (err) {
      this.closureFailed(job, err)
    }
  }

  private closureFailed(job: TrackedJob, thrown: unknown): void {
    const error = thrown instanceof Error ? thrown : new Error(String(thrown))
    this.log.error({ err: error, job: job.name, id: job.id }, 'feedback closure threw')
    this.safeEmit('feedback:error', { id: job.id, name: job.name, error })
  }

  /** The job leaves every table, no more feedback expected; `cancelled`: what waiting `cancel()` calls learn. */
  private finish(job: TrackedJob, cancelled = false): void {
    // A durable node may finish a job the distributor had put back in the queue (its
    // acceptance was lost with the connection): the queue slot is dropped lazily.
    if (job.state === 'pending') this.queue.taken()
    job.state = 'done'
    this.releaseLoad(job)
    job.list?.remove(job)
    this.jobs.delete(job)
    this.answerCancels(job, cancelled)
  }

  /** Settles the `cancel()` calls waiting on `job`: true when it ended cancelled. */
  private answerCancels(job: TrackedJob, cancelled: boolean): void {
    const waiters = this.cancelRequests.get(job)
    if (waiters === undefined) return
    this.cancelRequests.delete(job)
    for (const waiter of waiters) waiter(cancelled)
  }

  // --- cancel --------------------------------------------------------------------------

  private sendCancel(job: TrackedJob): void {
    const target = job.state === 'sent' ? job.session : job.owner === undefined ? undefined : this.pool.get(job.owner)
    // Not reachable now: the request stays in `cancelRequests` and goes out when the node is back.
    target?.connection.send({ type: MessageType.CANCEL, id: job.id })
  }

  /**
   * A node that does not hold `job` as we see it reports on it. With its holder away and the
   * job stored there, it is a peer that adopted the holder's jobs (takeover): it holds the
   * job now, and a cancel goes to it. Otherwise it is a second copy: a durable node's
   * `accepted` was lost with its link, and the job went to another node too. Both would run
   * on (a periodic one forever) and a cancel would reach one, so the copy that would go on
   * stops: the reporting one, or, if the job ends with this result, its holder's. A stale
   * result (a run already reported) ends nothing, and a copy told to stop never takes over.
   */
  private reportedByOther(session: NodeSession, job: TrackedJob, holder: string | undefined, final: boolean, stale: boolean): void {
    const holding = holder === undefined ? undefined : this.pool.get(holder)
    const stopping = this.stoppedCopies.get(job)?.has(session.name) === true
    if (holder !== undefined && holding === undefined && job.state === 'accepted' && !stale && !stopping) {
      job.owner = session.name
      if (this.cancelRequests.has(job)) this.sendCancel(job)
    } else if (!final) this.stopCopy(session, job.id, job)
    else if (!stale && holding !== undefined) this.stopCopy(holding, job.id, job)
  }

  /**
   * Cancels `id` on that node for a copy nobody asked it to run. Its answer settles nothing:
   * answers count only for a job with a `cancel()` waiting, from the node holding it.
   */
  private stopCopy(session: NodeSession, id: string, job?: TrackedJob): void {
    this.log.warn({ id, node: session.name }, 'a node runs a second copy of a job; cancelling that copy')
    session.connection.send({ type: MessageType.CANCEL, id })
    if (job === undefined) return
    let nodes = this.stoppedCopies.get(job)
    if (nodes === undefined) this.stoppedCopies.set(job, (nodes = new Set()))
    nodes.add(session.name)
  }

  private onCancelResult(session: NodeSession, message: CancelResultMessage): void {
    const job = this.jobs.get(message.id)
    if (job === undefined || !this.cancelRequests.has(job)) return
    // Only the node holding it speaks for it: not one it was sent to before, nor a second copy.
    const holder = holderOf(job)
    if (holder !== undefined && holder !== session.name) return
    if (message.outcome === 'cancelled') {
      this.finishCancelled(job)
      return
    }
    if (message.outcome === 'unknown') {
      // The node neither holds it nor has a result of it waiting (a node that restarted
      // without it, a cancel whose answer was lost with a link, a job back in our queue
      // meanwhile): nothing will run it or report on it any more. It ends here.
      this.finishCancelled(job)
    }
    // 'finished': its final feedback is on the way and settles the waiters.
  }

  private finishCancelled(job: TrackedJob): void {
    this.finish(job, true)
    // A result a node sent before it heard of the cancel (a periodic run's, re-sent after a
    // reconnect) may still come: it is dropped, not reported as an orphan.
    this.recent.add(job.id)
    job.state = 'cancelled'
    this.safeEmit('job:cancelled', { id: job.id, name: job.name })
    job.resolve(decodeArgs(job.args))
  }

  protected override onListenerError(event: string, err: unknown): void {
    this.log.error({ err, event }, 'event listener threw')
  }
}

/** A feedback's args as an object: decoded with its frame when it came over the wire. */
function argsOf(item: WireFeedback): JobArgsObject {
  return item.args instanceof Uint8Array ? decodeArgs(item.args) : item.args
}
