import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface RedisServerOptions {
  /** Turn on the append-only file, so that data survives a kill and restart in the same `dir`. */
  appendonly?: boolean
  /**
   * Data directory. Give one (and keep it) to restart a server on the same data; without
   * it a temp dir is made and removed once the server has exited.
   */
  dir?: string
  /** Listen on this port instead of a free one (to restart a server where clients expect it). */
  port?: number
  /**
   * true: a one-node Redis Cluster that owns every slot. 'member': cluster mode with no
   * slots, to be joined with others into a real cluster (see startRedisCluster).
   */
  cluster?: boolean | 'member'
}

export interface RedisServer {
  readonly port: number
  /** `redis://127.0.0.1:<port>` or, for a cluster, `redis-cluster://127.0.0.1:<port>`. */
  readonly url: string
  readonly dir: string
  /** SIGTERM and wait for the exit. Harmless when it already exited. */
  stop(): Promise<void>
  /** Send `signal` and wait for the exit (SIGKILL to simulate a crash). */
  kill(signal?: NodeJS.Signals): Promise<void>
  /** SIGKILL without waiting: a last resort for process exit handlers. */
  killNow(): void
  /** SIGSTOP: the server hangs with its connections open, as a hung server or a black hole does. */
  pause(): void
  /** SIGCONT: it answers again, starting with what it was sent meanwhile. */
  resume(): void
}

const START_TIMEOUT_MS = 10_000
const POLL_MS = 20
const PORT_ATTEMPTS = 3

/**
 * Starts a real `redis-server` on 127.0.0.1 as a child process and resolves once it answers
 * PING (and, in cluster mode, once the cluster state is ok).
 */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  assertInstalled()
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort())
    try {
      return await launch(port, options)
    } catch (err) {
      // The free port can be taken between our probe and redis binding it: try another.
      const raced = err instanceof PortTakenError && options.port === undefined
      if (!raced || attempt >= PORT_ATTEMPTS) throw err
    }
  }
}

class PortTakenError extends Error {}

let installed: boolean | undefined

function assertInstalled(): void {
  installed ??= spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).error === undefined
  if (!installed) {
    throw new Error('redis-server is not on PATH; the Redis integration tests need it: apt-get install -y redis-server')
  }
}

async function launch(port: number, options: RedisServerOptions): Promise<RedisServer> {
  const ownDir = options.dir === undefined
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'jr-redis-')))
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    options.appendonly === true ? 'yes' : 'no',
    // With the append-only file on, every write is on disk before Redis answers, so a
    // killed server loses nothing a node was told is stored.
    '--appendfsync',
    'always',
    '--daemonize',
    'no',
    '--loglevel',
    'warning',
    // DEBUG SLEEP plays a slow but healthy server (a fork, a slow disk) in the deadline tests.
    '--enable-debug-command',
    'local',
  ]
  if (options.cluster !== undefined && options.cluster !== false) {
    // A node that never met another does not know its own IP and would announce ''.
    args.push('--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`)
    args.push('--cluster-announce-ip', '127.0.0.1')
  }
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const collect = (chunk: Buffer): void => {
    if (output.length < 8192) output += chunk.toString()
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve())
    child.once('error', () => resolve())
  })
  const cleanup = async (): Promise<void> => {
    await exited
    if (ownDir) await rm(dir, { recursive: true, force: true })
  }
  void exited.then(cleanup)

  const running = (): boolean => child.exitCode === null && child.signalCode === null
  const stopWith = async (signal: NodeJS.Signals): Promise<void> => {
    if (running()) {
      // A paused server would not act on SIGTERM until it runs again.
      child.kill('SIGCONT')
      child.kill(signal)
    }
    await cleanup()
  }

  try {
    await waitUntil(port, child, options.cluster === true, () => output)
  } catch (err) {
    await stopWith('SIGKILL')
    throw err
  }
  const scheme = options.cluster === true || options.cluster === 'member' ? 'redis-cluster' : 'redis'
  return {
    port,
    url: `${scheme}://127.0.0.1:${port}`,
    dir,
    stop: () => stopWith('SIGTERM'),
    kill: (signal = 'SIGKILL') => stopWith(signal),
    killNow: () => {
      if (running()) child.kill('SIGKILL')
    },
    pause: () => {
      if (running()) child.kill('SIGSTOP')
    },
    resume: () => {
      if (running()) child.kill('SIGCONT')
    },
  }
}

async function waitUntil(port: number, child: ChildProcess, cluster: boolean, output: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  let clusterSetUp = false
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const text = output()
      if (/address already in use/i.test(text)) throw new PortTakenError(`port ${port} is taken`)
      throw new Error(`redis-server exited before it was ready:\n${text}`)
    }
    if ((await command(port, 'PING')) === '+PONG') {
      if (!cluster) return
      if (!clusterSetUp) {
        const reply = await command(port, 'CLUSTER ADDSLOTSRANGE 0 16383')
        clusterSetUp = reply === '+OK' || /already busy/.test(reply)
      }
      if (clusterSetUp && (await command(port, 'CLUSTER INFO')).includes('cluster_state:ok')) return
    }
    if (Date.now() > deadline) {
      throw new Error(`redis-server on port ${port} not ready after ${START_TIMEOUT_MS} ms:\n${output()}`)
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS))
  }
}

/**
 * One inline command on a fresh connection; resolves with the raw reply, or '' if the
 * server is not there yet. Raw RESP, so that the helper does not depend on the client it
 * is used to test.
 */
export function command(port: number, line: string, timeoutMs = 1_000): Promise<string> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    let reply = ''
    const done = (value: string): void => {
      socket.destroy()
      resolve(value)
    }
    socket.setTimeout(timeoutMs, () => done(''))
    socket.once('error', () => done(''))
    socket.once('connect', () => socket.write(`${line}\r\n`))
    socket.on('data', (chunk) => {
      reply += chunk.toString()
      // A bulk reply ($<len>) may arrive in pieces; a simple or error reply is one line.
      const m = /^\$(\d+)\r\n/.exec(reply)
      if (m !== null ? reply.length >= m[0].length + Number(m[1]) + 2 : reply.includes('\r\n')) {
        done(reply.trim())
      }
    })
  })
}

/** A port the OS just handed out for 127.0.0.1; free unless someone takes it meanwhile. */
export function freePort(): Promise<number> {
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

export interface RedisCluster {
  readonly servers: RedisServer[]
  /** `redis-cluster://127.0.0.1:p1,127.0.0.1:p2,…` */
  readonly url: string
  stop(): Promise<void>
}

/**
 * Starts `masters` redis-server processes in cluster mode and joins them with
 * `redis-cli --cluster create` (no replicas), resolving once every node reports the
 * cluster state ok.
 */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const servers: RedisServer[] = []
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.stop()))
  }
  try {
    for (let i = 0; i < masters; i++) servers.push(await startRedisServer({ cluster: 'member' }))
    const addresses = servers.map((s) => `127.0.0.1:${s.port}`)
    const created = spawnSync(
      'redis-cli',
      ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'],
      {
        encoding: 'utf8',
        timeout: START_TIMEOUT_MS,
      },
    )
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed:\n${created.stdout}${created.stderr}`)
    const deadline = Date.now() + START_TIMEOUT_MS
    for (const server of servers) {
      while (!(await command(server.port, 'CLUSTER INFO')).includes('cluster_state:ok')) {
        if (Date.now() > deadline) throw new Error(`cluster node ${server.port} not ok after ${START_TIMEOUT_MS} ms`)
        await new Promise((resolve) => setTimeout(resolve, POLL_MS))
      }
    }
    return { servers, url: `redis-cluster://${addresses.join(',')}`, stop }
  } catch (err) {
    await stop()
    throw err
  }
}
