import { job } from 'job-reactor'

// The node's memory after a full collection (gc is there when the node runs with --expose-gc).
job('mem', (args) => {
  if (typeof globalThis.gc === 'function') {
    globalThis.gc()
    globalThis.gc()
  }
  Object.assign(args, process.memoryUsage())
})
