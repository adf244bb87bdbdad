// A throwaway redis-server for the benchmarks: free loopback port, temp dir, no persistence.
// Plain-JS sibling of test/helpers/redis-server.ts (no cluster mode: the benchmarks do not need it).
import { spawn, spawnSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const START_TIMEOUT_MS = 10_000
const POLL_MS = 20
const PORT_ATTEMPTS = 3

class PortTakenError extends Error {}

/** Starts redis-server and resolves once it answers PING. */
export async function startRedisServer() {
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error !== undefined) {
    throw new Error('redis-server is not on PATH; the benchmarks need it: apt-get install -y redis-server')
  }
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    try {
      return await launch(port)
    } catch (err) {
      if (!(err instanceof PortTakenError) || attempt >= PORT_ATTEMPTS) throw err
    }
  }
}

async function launch(port) {
  const dir = await mkdtemp(join(tmpdir(), 'jr-bench-redis-'))
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--dir', dir,
    '--save', '',
    '--appendonly', 'no',
    '--daemonize', 'no',
    '--loglevel', 'warning',
  ]
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const collect = (chunk) => {
    if (output.length < 8192) output += chunk.toString()
  }
  child.stdout.on('data', collect)
  child.stderr.on('data', collect)
  const exited = new Promise((resolve) => {
    child.once('exit', () => resolve())
    child.once('error', () => resolve())
  })
  const cleanup = async () => {
    await exited
    await rm(dir, { recursive: true, force: true })
  }
  void exited.then(cleanup)
  const stopWith = async (signal) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    await cleanup()
  }
  try {
    await waitUntilReady(port, child, () => output)
  } catch (err) {
    await stopWith('SIGKILL')
    throw err
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid,
    /** One inline command on a fresh connection; resolves with the raw reply. */
    command: (line) => command(port, line),
    stop: () => stopWith('SIGTERM'),
    /** Synchronous last resort for process exit handlers. */
    killNow: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    },
  }
}

async function waitUntilReady(port, child, output) {
  const deadline = Date.now() + START_TIMEOUT_MS
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const text = output()
      if (/address already in use/i.test(text)) throw new PortTakenError(`port ${port} is taken`)
      throw new Error(`redis-server exited before it was ready:\n${text}`)
    }
    if ((await command(port, 'PING')) === '+PONG') return
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} not ready after ${START_TIMEOUT_MS} ms:\n${output()}`)
    await new Promise((resolve) => setTimeout(resolve, POLL_MS))
  }
}

/**
 * One inline command on a fresh connection; resolves with the raw reply ('' when the server
 * does not answer). Raw RESP, so the helper depends on no client library.
 */
export function command(port, line, timeoutMs = 5_000) {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    let reply = ''
    const done = (value) => {
      socket.destroy()
      resolve(value)
    }
    socket.setTimeout(timeoutMs, () => done(''))
    socket.once('error', () => done(''))
    socket.once('connect', () => socket.write(`${line}\r\n`))
    socket.on('data', (chunk) => {
      reply += chunk.toString()
      const m = /^\$(\d+)\r\n/.exec(reply)
      if (m !== null ? reply.length >= m[0].length + Number(m[1]) + 2 : reply.includes('\r\n')) done(reply.trim())
    })
  })
}

/** Reads one numeric field of INFO (e.g. 'used_memory'). */
export async function infoField(port, section, field) {
  const reply = await command(port, `INFO ${section}`)
  const m = new RegExp(`^${field}:(\\d+)`, 'm').exec(reply)
  return m === null ? undefined : Number(m[1])
}

/** A port the OS just handed out for 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}
