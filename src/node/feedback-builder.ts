import { FRAME_ENVELOPE_BYTES } from '../config.js'
import {
  FrameTooLargeError,
  InvalidArgumentError,
  type JobsError,
  StoreError,
  coerceError,
  serializeError,
} from '../errors.js'
import type { Logger } from '../logger.js'
import { decodeArgs, isPackedMap, packArgs, type JobArgsObject } from '../protocol/args.js'
import { pack } from '../protocol/msgpack.js'
import { FeedbackKind, type FeedbackRecord, type JobRecord } from '../storage/store.js'

/** What the builder needs of its node: the frame limits of both ends of a link. */
export interface BuilderContext {
  /** This node's frame limit. */
  readonly maxFrameSize: number
  /** The link that receives what is filed under a distributor identity: it knows that distributor's frame limit. */
  linkFor(identity: string): { readonly peerMaxFrameSize: number } | undefined
  readonly log: Logger
}

/**
 * Makes the feedback records a node sends, and makes sure each one can travel: a record
 * the distributor would refuse, or bytes that would break every frame they travel in,
 * must never reach the outbox (it would be re-sent for ever).
 */
export class FeedbackBuilder {
  constructor(private readonly ctx: BuilderContext) {}

  /**
   * The feedback record of a run. Args that cannot be sent back (not serialisable, or over
   * the frame limit of either end) turn it into error feedback that says so, carrying the
   * original args.
   */
  feedbackOf(
    record: JobRecord,
    kind: FeedbackKind,
    final: boolean,
    cancelled: boolean,
    args: JobArgsObject,
  ): FeedbackRecord {
    const limit =
      Math.min(this.ctx.maxFrameSize, this.ctx.linkFor(record.distributor)?.peerMaxFrameSize ?? Infinity) -
      FRAME_ENVELOPE_BYTES
    let encoded: Buffer | undefined
    let problem: JobsError | undefined
    try {
      encoded = packArgs(args)
      if (encoded.length > limit) problem = new FrameTooLargeError(encoded.length, limit)
    } catch (err) {
      problem = new InvalidArgumentError(`the job left args that cannot be sent back: ${coerceError(err).message}`, {
        cause: err,
      })
    }
    if (problem !== undefined || encoded === undefined) {
      encoded = pack({ ...decodeArgs(record.args), error: serializeError(problem) })
      kind = FeedbackKind.ERROR
    }
    return {
      jobId: record.id,
      name: record.name,
      run: record.run,
      distributor: record.distributor,
      kind,
      final,
      cancelled,
      args: encoded,
    }
  }

  /**
   * A stored result goes into frames as the bytes it was stored as (a feedback item's args
   * are one msgpack map inside the frame; see docs/protocol.md): bytes that are not one map
   * would break every frame they travel in. Such a result is replaced by error feedback
   * that says so.
   */
  readable(feedback: FeedbackRecord): FeedbackRecord {
    if (isPackedMap(feedback.args)) return feedback
    this.ctx.log.error(
      { id: feedback.jobId, run: feedback.run },
      'stored feedback args do not decode; sending error feedback instead',
    )
    const error = new StoreError('the stored result of this run could not be read')
    return { ...feedback, kind: FeedbackKind.ERROR, args: pack({ error: serializeError(error) }) }
  }
}
