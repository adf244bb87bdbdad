/**
 * 'resize': a job that fails on purpose, to show retries and errbacks.
 *
 *   JR.enqueue('resize', { width: 640, fail: true }, { maxAttempt: 3, retryMultiplier: 1 })
 *
 * A thrown error fails the attempt and the errbacks run (`args.error` is set); the node
 * retries it attempt × retryMultiplier seconds later, and after the last attempt the caller
 * gets error feedback with `args.error`. `UnrecoverableError` skips the remaining attempts.
 */
import { job, jobErrback, UnrecoverableError, type SerializedError } from 'job-reactor'

declare module 'job-reactor' {
  interface JobArgs {
    resize: { width: number; fail?: boolean; flaky?: boolean; resizedTo?: number; attempts?: number }
  }
}

job('resize', async (args, ctx) => {
  args.attempts = ctx.attempt
  if (!Number.isInteger(args.width) || args.width <= 0) {
    throw new UnrecoverableError(`'width' must be a positive integer, got ${String(args.width)}`)
  }
  if (args.fail === true) throw new Error(`resize failed on attempt ${ctx.attempt}`)
  // `flaky` fails the first attempt only: the retry succeeds.
  if (args.flaky === true && ctx.attempt === 1) throw new Error('image store busy, try again')
  // Long work should watch ctx.signal: it aborts on `timeout` and on node shutdown.
  await new Promise((resolve) => setTimeout(resolve, 10))
  ctx.signal.throwIfAborted()
  args.resizedTo = args.width
  ctx.log.info({ width: args.width, attempt: ctx.attempt }, 'resized')
})

// Errbacks run after every failed attempt: ctx.status is 'error' while attempts remain,
// 'failed' after the last one.
jobErrback('resize', 'log_it', (args, ctx) => {
  const last = ctx.status === 'failed'
  ctx.log.warn(
    { attempt: ctx.attempt, reason: (args.error as SerializedError).message },
    last ? 'resize gave up' : 'resize will be retried',
  )
})
