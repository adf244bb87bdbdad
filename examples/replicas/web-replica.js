/**
 * One replica of a web application: a distributor of group 'web' with a Redis spool, and a
 * steady stream of 'greet' jobs. Started by run.js (see there); speaks JSON lines on stdout:
 *   {"ready": name, "port": N}            listening, holding its name, spool resumed
 *   {"persisted": id}                     the job survives a crash of this process from now on
 *   {"result": id, "via": "closure"}      a result delivered here (or "handler": a job this
 *                                         process holds no closure for: resumed or adopted)
 *   {"adopted": member, "jobs": N}        took over a gone member of the group
 *   {"enqueued": N}                       all its jobs are enqueued
 *
 * argv: NAME REDIS_URL COUNT (jobs to enqueue, one every 2 ms, each due 0..2 s later)
 */
import { Distributor } from '../../dist/index.js'

const [name, storage, count = '0'] = process.argv.slice(2)
const say = (value) => process.stdout.write(`${JSON.stringify(value)}\n`)

const distributor = new Distributor({ group: 'web', name, storage, port: 0, leaseMs: 2000, logLevel: 'warn' })
distributor.onFeedback('greet', {
  success: (_args, info) => say({ result: info.id, via: 'handler' }),
  error: (args, info) => say({ result: info.id, via: 'handler', error: args.error?.message }),
})
distributor.on('member:adopted', ({ member, jobs }) => say({ adopted: member, jobs }))
await distributor.start()
say({ ready: name, port: distributor.port })

for (let i = 0; i < Number(count); i++) {
  const handle = distributor.enqueue(
    'greet',
    { name: `${name}-${i}` },
    { after: Math.random() * 2 },
    () => say({ result: handle.id, via: 'closure' }),
    (args) => say({ result: handle.id, via: 'closure', error: args.error?.message }),
  )
  handle.persisted.then(
    () => say({ persisted: handle.id }),
    () => {},
  )
  // `done` of a job handed over on close rejects: nothing to do here, its result comes to a handler.
  handle.done.catch(() => {})
  await new Promise((resolve) => setTimeout(resolve, 2))
}
say({ enqueued: Number(count) })

process.on('SIGTERM', () => void distributor.close().then(() => process.exit(0)))
