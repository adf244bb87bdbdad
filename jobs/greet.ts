/**
 * 'greet': the job the example web server enqueues (`GET /greet?name=Ann`).
 *
 * The chain is job → callbacks → errbacks; every step gets the same mutable `args`, so data
 * passes by mutation, and whatever the steps leave in `args` comes back as feedback.
 */
import { CancelJob, job, jobCallback, jobErrback } from 'job-reactor'

// Declared once, `job('greet', …)` and `JR.enqueue('greet', …)` are typed.
declare module 'job-reactor' {
  interface JobArgs {
    greet: { name?: string; greeting?: string; greetedAt?: string }
  }
}

job('greet', (args, ctx) => {
  // Cancelling is not failing: the caller gets success feedback, no retries happen.
  if (args.name === 'nobody') throw new CancelJob('nobody to greet')
  args.greeting = `Hello, ${args.name ?? 'world'}!`
  ctx.log.info({ greeting: args.greeting }, 'greeted')
})

jobCallback('greet', 'timestamp', (args) => {
  args.greetedAt = new Date().toISOString()
})

jobErrback('greet', 'log_it', (args, ctx) => {
  ctx.log.error({ error: args.error, attempt: ctx.attempt }, 'greeting failed')
})
