import { readFileSync } from 'node:fs'
import { Command, InvalidArgumentError as CommanderArgumentError, Option } from 'commander'
import { InvalidArgumentError, JobsError } from '../errors.js'
import { JR } from '../jr.js'
import { LOG_LEVELS, type LogLevel } from '../logger.js'
import type { NodeOptions } from '../node/options.js'

function integer(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n)) throw new CommanderArgumentError(`'${value}' is not an integer`)
  return n
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    throw new InvalidArgumentError(`cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err })
  }
}

interface NodeFlags {
  name: string
  distributor?: string[]
  group?: string
  discover?: string
  jobs?: string
  storage: string
  concurrency?: number
  window?: number
  logLevel?: LogLevel
  config?: string
  secretFile?: string
  tlsCa?: string
  tlsCert?: string
  tlsKey?: string
  shutdownTimeout?: number
  storeTimeout?: number
  handshakeTimeout?: number
  workerThreads?: number
  takeover?: boolean
  leaseMs?: number
  metricsPort?: number
  metricsHost?: string
}

/** Maps flags to NodeOptions; everything else is the library's job. */
export function nodeOptionsFromFlags(flags: NodeFlags, env: NodeJS.ProcessEnv): NodeOptions {
  if (flags.config !== undefined) {
    let parsed: unknown
    try {
      parsed = JSON.parse(readText(flags.config, 'config file'))
    } catch (err) {
      if (err instanceof JobsError) throw err
      throw new InvalidArgumentError(`config file ${flags.config} is not valid JSON: ${(err as Error).message}`, {
        cause: err,
      })
    }
    JR.configure(parsed as Record<string, never>)
  }
  const options: NodeOptions = { name: flags.name, storage: flags.storage }
  if (flags.distributor !== undefined) options.distributors = flags.distributor
  if (flags.group !== undefined) options.group = flags.group
  if (flags.discover !== undefined) options.discover = flags.discover
  if (flags.jobs !== undefined) options.jobDirectory = flags.jobs
  if (flags.concurrency !== undefined) options.concurrency = flags.concurrency
  if (flags.window !== undefined) options.window = flags.window
  if (flags.logLevel !== undefined) options.logLevel = flags.logLevel
  if (flags.shutdownTimeout !== undefined) options.shutdownTimeoutMs = flags.shutdownTimeout
  if (flags.storeTimeout !== undefined) options.storeTimeoutMs = flags.storeTimeout
  if (flags.handshakeTimeout !== undefined) options.handshakeTimeoutMs = flags.handshakeTimeout
  if (flags.workerThreads !== undefined) options.workerThreads = flags.workerThreads
  if (flags.takeover !== undefined) options.takeover = flags.takeover
  if (flags.leaseMs !== undefined) options.leaseMs = flags.leaseMs
  if (flags.metricsPort !== undefined) options.metricsPort = flags.metricsPort
  if (flags.metricsHost !== undefined) options.metricsHost = flags.metricsHost
  // The secret never travels on the command line, where `ps` would show it.
  const secret = flags.secretFile !== undefined ? readText(flags.secretFile, 'secret file').trim() : env['JR_SECRET']
  if (secret !== undefined && secret !== '') options.secret = secret
  if (flags.tlsCa !== undefined || flags.tlsCert !== undefined || flags.tlsKey !== undefined) {
    options.tls = {}
    if (flags.tlsCa !== undefined) options.tls.ca = readText(flags.tlsCa, 'TLS CA file')
    if (flags.tlsCert !== undefined) options.tls.cert = readText(flags.tlsCert, 'TLS certificate file')
    if (flags.tlsKey !== undefined) options.tls.key = readText(flags.tlsKey, 'TLS key file')
  }
  return options
}

export function buildProgram(): Command {
  return new Command('jr-node')
    .description('Run a job-reactor node: take jobs from distributors and run them')
    .requiredOption('-n, --name <name>', 'node name (routing, logs, storage namespace)')
    .option(
      '-d, --distributor <host:port|dns:NAME:PORT>',
      'distributor to serve, or a DNS name whose every A/AAAA record is one (repeatable)',
      collect,
    )
    .option('--group <name>', 'distributor group to find through --discover')
    .option('--discover <url>', "redis:// (rediss://, redis-cluster://) URL of the group's member registry")
    .option('-j, --jobs <dir>', 'directory of job files (default: jobs)')
    .option('-s, --storage <storage>', "'memory', redis://host:port or redis-cluster://h1:p1,h2:p2", 'memory')
    .option('-c, --concurrency <n>', 'chains run at once', integer)
    .option('--window <n>', 'jobs a distributor may have in flight here (default: 10 x concurrency)', integer)
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS))
    .option('--config <file>', 'JSON settings (maxAttempt, retryMultiplier, ...)')
    .option('--secret-file <file>', 'file holding the shared secret (or set JR_SECRET)')
    .option('--tls-ca <file>', "CA that signed the distributor's certificate (PEM)")
    .option('--tls-cert <file>', 'client certificate for mutual TLS (PEM)')
    .option('--tls-key <file>', 'client key for mutual TLS (PEM)')
    .option('--shutdown-timeout <ms>', 'how long running chains may take on SIGINT/SIGTERM', integer)
    .option(
      '--store-timeout <ms>',
      'a store silent this long while operations wait counts as down (default: 5000)',
      integer,
    )
    .option(
      '--handshake-timeout <ms>',
      'a distributor that has not welcomed this node by then is redialled (default: 10000)',
      integer,
    )
    .option('--worker-threads <n>', 'worker threads for defer: true jobs', integer)
    .option('--takeover', 'adopt the unfinished jobs of dead peers on the same Redis')
    .option('--lease-ms <ms>', "how long this node's claim on its stored jobs lasts without renewal", integer)
    .option('--metrics-port <port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port)', integer)
    .option('--metrics-host <host>', 'address the metrics are served on (default: 127.0.0.1)')
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram()
  program.parse(argv)
  const flags = program.opts<NodeFlags>()
  let node
  try {
    node = await JR.startNode(nodeOptionsFromFlags(flags, process.env))
  } catch (err) {
    const code = (err as { code?: string }).code
    process.stderr.write(`jr-node: ${(err as Error).message}${code === undefined ? '' : ` (${code})`}\n`)
    process.exit(2)
  }
  let signals = 0
  const shutdown = (signal: NodeJS.Signals): void => {
    signals++
    node.log.info({ signal }, signals === 1 ? 'shutting down' : 'shutting down now')
    node.close({ force: signals > 1 }).then(
      () => process.exit(0),
      (err: unknown) => {
        node.log.error({ err }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)
}
