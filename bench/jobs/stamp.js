import { job } from 'job-reactor'

// How late the timer fired this job, as the node sees it.
job('stamp', (args, ctx) => {
  args.late = Date.now() - ctx.dueAt
})
