import { job } from 'job-reactor'

// Reports progress 10 times in a tight loop: on the node, one value goes out (and, on Redis
// storage, into the record) at once, and the last one when the attempt ends.
job('progress10', (_args, ctx) => {
  for (let i = 1; i <= 10; i++) ctx.progress(i / 10)
})
