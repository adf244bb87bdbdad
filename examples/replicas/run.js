/**
 * Two web replicas, Redis and two nodes; one replica is SIGKILLed while jobs flow, and
 * nothing is lost.
 *
 *   npm run example:replicas      (builds, then runs this; needs redis-server on the PATH)
 *
 * What happens:
 *  1. redis-server starts on a free port (no persistence: the example's data is throw-away).
 *  2. Replicas web-1 and web-2 (web-replica.js) start as group 'web' with a spool in that
 *     Redis, and enqueue 1,500 'greet' jobs each, each due within 2 s.
 *  3. Two nodes (`jr-node --group web --discover redis://…`, memory storage) find both
 *     replicas through the group's registry in Redis, and run the jobs.
 *  4. Once web-1 has 500 jobs persisted, it is SIGKILLed: its pending jobs were in its
 *     spool, the jobs its nodes held die with the links. After its lease (2 s), web-2 adopts
 *     its spool and dispatches those jobs again; their results run web-2's named handler.
 *  5. When every persisted job has a result, it prints the count, the duplicates (jobs that
 *     ran twice, at-least-once) and exits 0; 1 when something is missing after 60 s.
 */
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { createConnection, createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))
const PER_REPLICA = 1500
const KILL_AFTER = 500

if (spawnSync('redis-server', ['--version']).error !== undefined) {
  console.error(
    'redis-server is not on the PATH: install Redis (e.g. apt-get install redis-server) to run this example',
  )
  process.exit(2)
}

const children = []
const stopAll = () => {
  for (const child of children) child.kill('SIGKILL')
}
process.on('exit', stopAll)

function start(label, command, args, onLine) {
  const child = spawn(command, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] })
  children.push(child)
  if (onLine !== undefined) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        onLine(JSON.parse(line))
      } catch {
        console.log(`${label}: ${line}`)
      }
    })
  } else child.stdout.pipe(process.stdout)
  return child
}

const port = await new Promise((resolve) => {
  const probe = createServer().listen(0, '127.0.0.1', () => {
    const { port } = probe.address()
    probe.close(() => resolve(port))
  })
})
children.push(
  spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], {
    stdio: 'ignore',
  }),
)
const redisUrl = `redis://127.0.0.1:${port}`
// Until it answers.
for (;;) {
  const socket = createConnection(port, '127.0.0.1')
  const [error] = await Promise.race([once(socket, 'connect').then(() => [undefined]), once(socket, 'error')])
  socket.destroy()
  if (error === undefined) break
  await new Promise((resolve) => setTimeout(resolve, 50))
}

const persisted = new Set()
const persistedBy = { 'web-1': 0, 'web-2': 0 }
const results = new Map()
let killed = false
let survivorDone = false
const replicas = {}
const onReplica = (name) => (event) => {
  if (event.ready !== undefined) console.log(`${name} ready on port ${event.port}`)
  if (event.persisted !== undefined) {
    persisted.add(event.persisted)
    persistedBy[name]++
    if (name === 'web-1' && !killed && persistedBy[name] >= KILL_AFTER) {
      killed = true
      replicas['web-1'].kill('SIGKILL')
      console.log(`web-1 SIGKILLed with ${persisted.size} jobs persisted so far; web-2 adopts it after its lease`)
    }
  }
  if (event.enqueued !== undefined && name === 'web-2') survivorDone = true
  if (event.result !== undefined) results.set(event.result, (results.get(event.result) ?? 0) + 1)
  if (event.adopted !== undefined) console.log(`${name} adopted ${event.adopted}: ${event.jobs} spooled jobs`)
}
for (const name of ['web-1', 'web-2']) {
  replicas[name] = start(
    name,
    process.execPath,
    ['examples/replicas/web-replica.js', name, redisUrl, String(PER_REPLICA)],
    onReplica(name),
  )
}
for (const name of ['node-1', 'node-2']) {
  start(name, process.execPath, [
    'bin/jr-node.js',
    '--name',
    name,
    '--group',
    'web',
    '--discover',
    redisUrl,
    '--jobs',
    'jobs',
    '--log-level',
    'warn',
  ])
}

const deadline = Date.now() + 60_000
for (;;) {
  const missing = [...persisted].filter((id) => !results.has(id))
  if (killed && survivorDone && missing.length === 0) {
    const duplicates = [...results.values()].filter((n) => n > 1).length
    console.log(`${persisted.size} jobs persisted, every one has a result (${duplicates} ran twice: at-least-once)`)
    stopAll()
    process.exit(0)
  }
  if (Date.now() > deadline) {
    console.error(`${missing.length} of ${persisted.size} persisted jobs have no result after 60 s`)
    stopAll()
    process.exit(1)
  }
  await new Promise((resolve) => setTimeout(resolve, 200))
}
