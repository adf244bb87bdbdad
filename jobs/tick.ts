/**
 * 'tick': a periodic job that ends its own schedule.
 *
 *   JR.enqueue('tick', { times: 3 }, { period: 1 }, (args) => console.log('tick', args.run))
 *
 * Runs every `period` seconds (no drift); success feedback comes after every run. Throwing
 * CancelJob (or calling ctx.cancel()) ends the schedule; `handle.done` then resolves.
 */
import { job } from 'job-reactor'

declare module 'job-reactor' {
  interface JobArgs {
    tick: { times?: number; run?: number }
  }
}

job('tick', (args, ctx) => {
  args.run = ctx.run
  ctx.log.info({ run: ctx.run }, 'tick')
  if (args.times !== undefined && ctx.run >= args.times) ctx.cancel()
})
