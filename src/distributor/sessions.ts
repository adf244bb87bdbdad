import { ConnectionClosedError, ProtocolError, type JobsError } from '../errors.js'
import type { Logger } from '../logger.js'
import { MessageType, type Message } from '../protocol/messages.js'
import type { Acceptance } from './acceptance.js'
import type { Cancels } from './cancels.js'
import type { Dispatcher } from './dispatcher.js'
import type { DistributorEvents } from './events.js'
import type { FeedbackAcks } from './feedback-acks.js'
import type { FeedbackRouter } from './feedback-router.js'
import type { JobTable } from './job-table.js'
import { keyOf, type Limits } from './limits.js'
import type { NodePool } from './node-pool.js'
import type { NodeSession } from './node-session.js'
import type { Operations } from './operations.js'
import type { ProgressRouter } from './progress-router.js'

/** What the sessions reach of the distributor: the parts of its helpers that a node's link moves. */
export interface SessionsContext {
  readonly log: Logger
  readonly events: DistributorEvents
  readonly pool: NodePool
  readonly jobs: Pick<JobTable, 'get'>
  readonly acceptance: Pick<Acceptance, 'onAccepted' | 'onRejected' | 'onWaiting' | 'adopt' | 'disarm' | 'takeBack'>
  readonly feedback: Pick<FeedbackRouter, 'onFeedback' | 'linkLost'>
  readonly progress: Pick<ProgressRouter, 'onProgress'>
  readonly cancels: Pick<Cancels, 'onResult' | 'resend'>
  readonly ops: Pick<Operations, 'onResult' | 'nodesChanged' | 'linkLost'>
  readonly acks: Pick<FeedbackAcks, 'drop'>
  readonly dispatcher: Pick<Dispatcher, 'known' | 'schedule'>
  readonly limits: Pick<Limits, 'pushBack' | 'of'>
  /** close() began: every job was settled already, a lost link gives nothing back. */
  isClosed(): boolean
  /** A job of `name` and `key` pushed back for `seconds`: with a group, the other members pause it too. */
  pushedBack(name: string, key: string, seconds: number): void
}

/**
 * The lifecycle of the distributor's node sessions and the routing of their messages
 * (past the handshake, which the Server does) to the helper each concerns.
 *
 * A session is READY (in the pool, routed to) from `ready` until `release`, then CLOSED:
 * what its node did not keep goes back to the queue, once.
 */
export class Sessions {
  constructor(private readonly ctx: SessionsContext) {}

  ready(session: NodeSession): void {
    const { ctx } = this
    // A restarted node may reconnect before its old connection is noticed dead: the new one wins.
    const previous = ctx.pool.get(session.name)
    if (previous !== undefined) {
      ctx.log.warn({ node: session.name }, 'node reconnected; dropping its previous connection')
      previous.connection.close(new ConnectionClosedError('replaced by a newer connection from the same node'))
      this.release(previous, undefined)
    }
    ctx.pool.add(session)
    ctx.log.info(
      { node: session.name, jobs: session.jobs.size, concurrency: session.concurrency, durable: session.durable },
      'node connected',
    )
    ctx.events.emit('node:connect', {
      node: session.name,
      jobs: [...session.jobs],
      concurrency: session.concurrency,
      durable: session.durable,
    })
    ctx.dispatcher.known(session.jobs)
    if (session.durable) ctx.acceptance.adopt(session)
    ctx.cancels.resend(session)
    ctx.ops.nodesChanged()
    ctx.dispatcher.schedule()
  }

  /** Takes a session out of routing and puts back in the queue what it did not keep. */
  release(session: NodeSession, reason: JobsError | undefined): void {
    const { ctx } = this
    if (session.state === 'closed') return
    session.state = 'closed'
    ctx.pool.remove(session)
    ctx.acceptance.disarm(session)
    ctx.acks.drop(session)
    ctx.ops.linkLost(session)
    // After close() every job was settled already: nothing goes back anywhere.
    if (ctx.isClosed()) return
    ctx.feedback.linkLost(session)
    ctx.acceptance.takeBack(session)
    ctx.log.info({ node: session.name, reason: reason?.message }, 'node disconnected')
    ctx.events.emit('node:disconnect', { node: session.name, reason })
    ctx.dispatcher.schedule()
  }

  /** A message from a node past the handshake. */
  onMessage(session: NodeSession, message: Message): void {
    const { ctx } = this
    switch (message.type) {
      case MessageType.PING:
        return
      case MessageType.ACCEPTED:
        return ctx.acceptance.onAccepted(session, message.seq)
      case MessageType.REJECTED:
        ctx.log.warn(
          { node: session.name, code: message.code, count: message.ids.length },
          `node rejected jobs: ${message.message}`,
        )
        return ctx.acceptance.onRejected(session, message.seq, message.ids)
      case MessageType.STATE:
        session.accepting = message.accepting
        session.notAccepting = message.reason
        ctx.ops.nodesChanged()
        if (message.accepting) ctx.dispatcher.schedule()
        return
      case MessageType.ADMIN_RESULT:
        return ctx.ops.onResult(session, message)
      case MessageType.FEEDBACK:
        return ctx.feedback.onFeedback(session, message.seq, message.items)
      case MessageType.PROGRESS:
        return ctx.progress.onProgress(session, message.items)
      case MessageType.CANCEL_RESULT:
        return ctx.cancels.onResult(session, message)
      case MessageType.WAITING:
        return ctx.acceptance.onWaiting(session, message.ids)
      case MessageType.RATE_LIMITED:
        return this.onRateLimited(session, message.id, message.seconds)
      case MessageType.ERROR:
        ctx.log.warn({ node: session.name, code: message.code }, `node reported: ${message.message}`)
        session.connection.close()
        return
      case MessageType.HELLO:
      case MessageType.CHALLENGE:
      case MessageType.WELCOME:
      case MessageType.DISPATCH:
      case MessageType.FEEDBACK_ACK:
      case MessageType.CANCEL:
      case MessageType.ANSWERS:
      case MessageType.ADMIN:
        session.connection.close(new ProtocolError(`unexpected '${message.type}' from a node`))
        return
      default: {
        const never: never = message
        throw new ProtocolError(`unhandled message ${String(never)}`)
      }
    }
  }

  /**
   * Job `id` pushed back on `session`'s node: it waits there (out of its window), and its
   * name or key is held back here (Limits.pushBack) and by the group's other members for
   * `seconds`. A job this distributor does not hold (it restarted since) pauses nothing:
   * its name and key are not known here.
   */
  private onRateLimited(session: NodeSession, id: string, seconds: number): void {
    const { ctx } = this
    const job = ctx.jobs.get(id)
    if (job !== undefined && job.session === session) {
      const until = Date.now() + seconds * 1000
      ctx.limits.pushBack(job.name, keyOf(job), until)
      ctx.pushedBack(job.name, keyOf(job), seconds)
      const key = ctx.limits.of(job.name)?.perKey === true ? keyOf(job) : ''
      ctx.log.debug({ id, job: job.name, key, seconds }, 'job pushed back; its name or key paused')
      if (ctx.events.wants('job:rate-limited'))
        ctx.events.emit('job:rate-limited', { id, name: job.name, node: session.name, key, seconds, until })
    }
    ctx.acceptance.onWaiting(session, [id])
  }
}
