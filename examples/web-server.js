/**
 * A web server with a distributor inside, and one node to run its jobs.
 *
 *   npm start                  (builds, then runs this file)
 *   curl 'http://127.0.0.1:3000/greet?name=Ann'
 *
 * The dashboard (and the admin API beneath it) is mounted at /jr/: open
 * http://127.0.0.1:3000/jr/ in a browser. This server listens on loopback only, so its
 * `authorize` lets whoever reaches it act (cancel, retry, quiet, pause); an application
 * exposed to a network checks its own login there (docs/admin.md).
 *
 * `GET /greet?name=Ann` enqueues the job 'greet' (defined in jobs/greet.ts), waits for its
 * feedback and answers with the job's args as JSON; a job that failed answers 500 with
 * `args.error`. The node is a child process, `jr-node --name worker1 --storage memory`, so
 * no Redis is needed.
 *
 * Environment:
 *   PORT               HTTP port (default 3000)
 *   PORT_JR            distributor port (default 5000)
 *   EXAMPLE_SELF_TEST  1: make one request once the node is connected, print the answer and
 *                      exit (0 on success); ports default to free ones then.
 *
 * Ctrl-C (SIGINT) or SIGTERM stops the node, the HTTP server and the distributor.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { fileURLToPath } from 'node:url'
import { JobFailedError, JR } from '../dist/index.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const selfTest = process.env.EXAMPLE_SELF_TEST === '1'
const httpPort = Number(process.env.PORT ?? (selfTest ? 0 : 3000))
const jrPort = Number(process.env.PORT_JR ?? (selfTest ? 0 : 5000))

// --- the distributor -------------------------------------------------------------------

const distributor = await JR.startDistributor({ host: '127.0.0.1', port: jrPort })
// Listen before the node starts, so its connection cannot be missed.
const nodeConnected = distributor.waitFor('node:connect')

// --- one node, as its own process ------------------------------------------------------

const worker = spawn(
  process.execPath,
  [
    'bin/jr-node.js',
    '--name',
    'worker1',
    '--distributor',
    `127.0.0.1:${distributor.port}`,
    '--jobs',
    'jobs',
    '--storage',
    'memory',
  ],
  { cwd: root, stdio: 'inherit' },
)
const workerExited = once(worker, 'exit')
let stopping = false
worker.on('exit', (code, signal) => {
  if (stopping) return
  console.error(`jr-node exited unexpectedly (${signal ?? `code ${code}`})`)
  void shutdown(1)
})

// --- the web server --------------------------------------------------------------------

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(`${JSON.stringify(body)}\n`)
}

const admin = distributor.adminHandler({ authorize: (req) => isLoopback(req.socket.remoteAddress) })

function isLoopback(address) {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1'
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost')
  if (url.pathname === '/jr' || url.pathname.startsWith('/jr/')) {
    if (url.pathname === '/jr') {
      res.writeHead(308, { location: '/jr/' }).end()
      return
    }
    req.url = req.url.slice('/jr'.length)
    admin(req, res)
    return
  }
  if (req.method !== 'GET' || url.pathname !== '/greet') {
    send(res, 404, { error: 'try GET /greet?name=Ann' })
    return
  }
  try {
    const handle = JR.enqueue('greet', { name: url.searchParams.get('name') ?? 'world' })
    send(res, 200, await handle.done)
  } catch (err) {
    if (err instanceof JobFailedError) send(res, 500, err.args.error)
    else send(res, 503, { error: { name: err.name, message: err.message, code: err.code } })
  }
})
server.listen(httpPort, '127.0.0.1')
await once(server, 'listening')
const base = `http://127.0.0.1:${server.address().port}`

// --- shutdown --------------------------------------------------------------------------

async function shutdown(exitCode) {
  if (stopping) return
  stopping = true
  if (worker.exitCode === null && worker.signalCode === null) {
    worker.kill('SIGTERM')
    // The node finishes what runs and flushes feedback; do not wait for ever.
    await Promise.race([workerExited, new Promise((resolve) => setTimeout(resolve, 10_000).unref())])
  }
  server.closeAllConnections()
  await new Promise((resolve) => server.close(() => resolve()))
  await JR.stop()
  process.exit(exitCode)
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (stopping) process.exit(1) // a second signal: do not wait
    void shutdown(0)
  })
}

// --- ready -----------------------------------------------------------------------------

if (selfTest) {
  // Fail rather than hang if something is stuck.
  setTimeout(() => {
    console.error('self-test: no answer within 30 s')
    void shutdown(1)
  }, 30_000).unref()
}
await nodeConnected
if (!selfTest) {
  console.log(`ready: curl '${base}/greet?name=Ann'    dashboard: ${base}/jr/`)
} else {
  try {
    const res = await fetch(`${base}/greet?name=Ann`)
    const body = await res.json()
    console.log(`GET /greet?name=Ann -> ${res.status} ${JSON.stringify(body)}`)
    const overview = await fetch(`${base}/jr/api/overview`)
    const nodes = (await overview.json()).nodes
    console.log(`GET /jr/api/overview -> ${overview.status} (${nodes} node connected)`)
    const ok = res.status === 200 && body.greeting === 'Hello, Ann!' && overview.status === 200 && nodes === 1
    if (!ok) console.error('self-test: unexpected answer')
    await shutdown(ok ? 0 : 1)
  } catch (err) {
    console.error('self-test failed:', err)
    await shutdown(1)
  }
}
