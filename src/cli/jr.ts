/**
 * `jr`: the admin command for the jobs a node keeps in Redis (the successor of JobReactor's
 * RedisMonitor). Thin: flags become RedisStore calls; every subcommand opens one store for
 * one node, does its work and closes it.
 *
 * It works on storage only. A running node learns of jobs from its distributors, and of
 * stored jobs only when it starts (it resumes the unfinished ones), so what `retry` and
 * `cancel` change reaches a node when it next starts. The help texts say so.
 *
 * Exit codes: 0 done; 1 not found or refused; 2 bad usage, bad URL or prefix, Redis
 * unreachable or failing. `main` returns the code rather than exiting, so that tests can
 * run it in-process and the executable can let stdout drain.
 */

import { inspect } from 'node:util'
import { Command, CommanderError, InvalidArgumentError as CommanderArgumentError, Option } from 'commander'
import { decodeArgs } from '../protocol/args.js'
import { DEFAULT_KEY_PREFIX } from '../storage/redis/keys.js'
import { RedisStore } from '../storage/redis/redis-store.js'
import { DEFAULT_REDIS_URL } from '../storage/redis/url.js'
import {
  type FeedbackRecord,
  type JobRecord,
  JobStatus,
  isUnfinished,
} from '../storage/store.js'

/** Where the command writes; `process.stdout`/`process.stderr` unless a test gives its own. */
export interface CliIo {
  stdout: { write(chunk: string): unknown }
  stderr: { write(chunk: string): unknown }
}

export const EXIT_OK = 0
/** The job is not there, or the operation does not apply to it. */
export const EXIT_REFUSED = 1
/** Bad usage, bad URL or prefix, Redis unreachable or failing. */
export const EXIT_ERROR = 2

const STATUSES: readonly JobStatus[] = Object.values(JobStatus)
const FINISHED_STATUSES: readonly JobStatus[] = STATUSES.filter((s) => !isUnfinished(s))
/** What `retry` takes back: finished, but not successfully. */
const RETRYABLE: readonly JobStatus[] = [JobStatus.FAILED, JobStatus.CANCELLED]
/** Removals in flight at once in `purge`: each is one MULTI, sent without waiting. */
const PURGE_BATCH = 500

interface CommonFlags {
  redis: string
  prefix: string
  node: string
  json?: boolean
}

/** `in-progress` and `in_progress` are accepted for 'in progress', which needs quoting. */
function parseStatus(value: string): JobStatus {
  const status = value.trim().toLowerCase().replace(/[-_]/g, ' ')
  const found = STATUSES.find((s) => s === status)
  if (found === undefined) {
    throw new CommanderArgumentError(`'${value}' is not a job status (${STATUSES.join(', ')})`)
  }
  return found
}

function withCommon(cmd: Command): Command {
  return cmd
    .requiredOption('-n, --node <name>', 'node whose jobs these are (its jr-node --name)')
    .addOption(
      new Option('--redis <url>', 'redis://[user:password@]host[:port][/db], rediss://, or redis-cluster://h1:p1,h2:p2')
        .env('JR_REDIS')
        .default(DEFAULT_REDIS_URL),
    )
    .option('--prefix <prefix>', 'key prefix the node was started with', DEFAULT_KEY_PREFIX)
    .option('--json', 'print JSON for scripts instead of a table')
}

export function buildProgram(io: CliIo, setExit: (code: number) => void): Command {
  const program = new Command('jr')
    .description("Inspect and repair the jobs a job-reactor node keeps in Redis (keys '<prefix>{<node>}:...')")
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
    })
    .exitOverride()
    .showHelpAfterError('(run jr --help, or jr <command> --help)')
    .addHelpText(
      'after',
      '\njr reads and writes storage only. A running node learns of jobs from its distributors,\n' +
        'and of stored jobs only when it starts, so retry and cancel take effect at its next start.\n' +
        '\nExit codes: 0 done; 1 job not found or operation refused; 2 bad usage, bad URL,\n' +
        'or Redis unreachable. The Redis URL may also come from the JR_REDIS environment\n' +
        'variable, which keeps a password off the command line.',
    )

  const run = (flags: CommonFlags, work: (store: RedisStore) => Promise<number>): Promise<void> =>
    withStore(io, flags, work).then(setExit)

  withCommon(
    program
      .command('jobs')
      .description("list a node's jobs: id, name, status, attempt, run, due at, period, last error"),
  )
    .option('-s, --status <status>', `only jobs of this status (${STATUSES.join(', ')})`, parseStatus)
    .action((flags: CommonFlags & { status?: JobStatus }) =>
      run(flags, (store) => listJobs(io, store, flags, flags.status)),
    )

  withCommon(
    program.command('show').argument('<id>', 'job id').description('print one job record in full, args decoded'),
  ).action((id: string, flags: CommonFlags) => run(flags, (store) => showJob(io, store, flags, id)))

  withCommon(
    program
      .command('retry')
      .argument('<id>', 'job id')
      .description('make a failed or cancelled job new again: attempt 0, due now')
      .addHelpText(
        'after',
        '\nThe job runs when the node next starts: a running node does not look in storage for\n' +
          'jobs, so restart it (SIGTERM, then jr-node again) to have the job picked up. Its last\n' +
          "error stays in the record. The result goes back as feedback to the job's distributor,\n" +
          'whose closures already ran for the first outcome: it arrives there as a feedback:orphan\n' +
          'event (or is ignored as a duplicate by a distributor that finished the job lately).\n' +
          'Refused for a job that is complete, or unfinished already (new, queued, in progress,\n' +
          'error: the node runs or retries it itself).',
      ),
  ).action((id: string, flags: CommonFlags) => run(flags, (store) => retryJob(io, store, flags, id)))

  withCommon(
    program
      .command('cancel')
      .argument('<id>', 'job id')
      .description('mark an unfinished job cancelled in storage, or remove it with --remove')
      .option('--remove', 'delete the job record instead of marking it cancelled')
      .addHelpText(
        'after',
        '\nThis changes storage only: a node that does not run yet will not resume the job. A running\n' +
          'node that already holds the job in its timers is not told and runs it anyway (and then\n' +
          'records its outcome over the cancel, unless the record was removed). To cancel a job a\n' +
          'running node holds, cancel it through its distributor: handle.cancel() or JR.cancel(id).\n' +
          'No feedback is sent for a job cancelled here, so a distributor still waiting for it keeps\n' +
          'waiting. Refused for finished jobs (complete, failed, cancelled).',
      ),
  ).action((id: string, flags: CommonFlags & { remove?: boolean }) =>
    run(flags, (store) => cancelJob(io, store, flags, id, flags.remove === true)),
  )

  withCommon(
    program
      .command('purge')
      .description(`remove every job of one status (${FINISHED_STATUSES.join(', ')}); prints the count`)
      .option('--force', 'also purge an unfinished status (new, queued, in progress, error)'),
  )
    .requiredOption('-s, --status <status>', 'status of the jobs to remove', parseStatus)
    .addHelpText(
      'after',
      '\nWith --force on an unfinished status, a running node still runs the jobs it holds in its\n' +
        'timers; they are only no longer resumed when it restarts.',
    )
    .action((flags: CommonFlags & { status: JobStatus; force?: boolean }) =>
      run(flags, (store) => purgeJobs(io, store, flags, flags.status, flags.force === true)),
    )

  withCommon(
    program
      .command('feedback')
      .description('list the feedback outbox: results not yet acknowledged by their distributor'),
  ).action((flags: CommonFlags) => run(flags, (store) => listFeedback(io, store, flags)))

  return program
}

/**
 * Runs the `jr` command line (`argv` as in `process.argv`) and resolves with the exit code.
 * Never calls process.exit.
 */
export async function main(
  argv: readonly string[],
  io: CliIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  let code = EXIT_OK
  const program = buildProgram(io, (c) => {
    code = c
  })
  try {
    await program.parseAsync([...argv], { from: 'node' })
  } catch (err) {
    // Commander already printed the usage error (or the help, with exit code 0).
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_ERROR
    return fail(io, err)
  }
  return code
}

async function withStore(io: CliIo, flags: CommonFlags, work: (store: RedisStore) => Promise<number>): Promise<number> {
  let store: RedisStore
  try {
    // Validates the URL, the prefix and the node name: an InvalidArgumentError names them.
    store = new RedisStore({ node: flags.node, url: flags.redis, prefix: flags.prefix })
  } catch (err) {
    return fail(io, err)
  }
  try {
    await store.open()
    return await work(store)
  } catch (err) {
    return fail(io, err)
  } finally {
    await store.close()
  }
}

/** StoreError (unreachable, failing) and InvalidArgumentError (bad URL, prefix, node) end here. */
function fail(io: CliIo, err: unknown): number {
  const message = err instanceof Error ? err.message : String(err)
  const code = (err as { code?: unknown } | null)?.code
  io.stderr.write(`jr: ${message}${typeof code === 'string' ? ` (${code})` : ''}\n`)
  return EXIT_ERROR
}

function refuse(io: CliIo, message: string): number {
  io.stderr.write(`jr: ${message}\n`)
  return EXIT_REFUSED
}

// --- subcommands ---------------------------------------------------------------------------

async function listJobs(io: CliIo, store: RedisStore, flags: CommonFlags, status?: JobStatus): Promise<number> {
  const jobs = await store.listJobs(status === undefined ? {} : { status })
  jobs.sort((a, b) => a.dueAt - b.dueAt || compare(a.id, b.id))
  if (flags.json === true) {
    const rows = jobs.map((j) => ({
      id: j.id,
      name: j.name,
      status: j.status,
      attempt: j.attempt,
      run: j.run,
      dueAt: iso(j.dueAt),
      period: j.period ?? null,
      lastError: j.lastError?.message ?? null,
    }))
    io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`)
    return EXIT_OK
  }
  if (jobs.length === 0) {
    io.stdout.write(`no ${status === undefined ? '' : `${status} `}jobs for node '${flags.node}'\n`)
    return EXIT_OK
  }
  io.stdout.write(
    table(
      ['ID', 'NAME', 'STATUS', 'ATTEMPT', 'RUN', 'DUE AT', 'PERIOD', 'LAST ERROR'],
      jobs.map((j) => [
        j.id,
        j.name,
        j.status,
        String(j.attempt),
        String(j.run),
        iso(j.dueAt),
        j.period === undefined ? '-' : `${j.period}s`,
        j.lastError === undefined ? '-' : oneLine(j.lastError.message, 60),
      ]),
    ),
  )
  return EXIT_OK
}

async function showJob(io: CliIo, store: RedisStore, flags: CommonFlags, id: string): Promise<number> {
  const job = await store.getJob(id)
  if (job === undefined) return refuse(io, notFound(id, flags.node))
  let args: unknown
  let argsError: string | undefined
  try {
    args = decodeArgs(job.args)
  } catch (err) {
    argsError = `cannot decode ${job.args.length} bytes of msgpack: ${(err as Error).message}`
  }
  if (flags.json === true) {
    const out = {
      ...job,
      args: argsError === undefined ? args : { error: argsError, base64: Buffer.from(job.args).toString('base64') },
      dueAt: iso(job.dueAt),
      runDueAt: iso(job.runDueAt),
      createdAt: iso(job.createdAt),
      failedAt: job.failedAt === undefined ? undefined : iso(job.failedAt),
    }
    io.stdout.write(`${JSON.stringify(out, jsonSafe, 2)}\n`)
    return EXIT_OK
  }
  const rows: [string, string][] = [
    ['id', job.id],
    ['name', job.name],
    ['status', job.status],
    ['attempt', String(job.attempt)],
    ['run', String(job.run)],
    ['due at', iso(job.dueAt)],
    ['run due at', iso(job.runDueAt)],
    ['period', job.period === undefined ? '-' : `${job.period}s`],
    ['defer', job.defer ? 'yes' : 'no'],
    ['max attempt', job.maxAttempt === undefined ? '- (node setting)' : String(job.maxAttempt)],
    ['retry', job.retry === undefined ? '- (node setting)' : JSON.stringify(job.retry)],
    ['timeout', job.timeout === undefined ? '-' : `${job.timeout}s`],
    ['distributor', job.distributor],
    ['created at', iso(job.createdAt)],
    ['failed at', job.failedAt === undefined ? '-' : iso(job.failedAt)],
    ['last error', job.lastError === undefined ? '-' : describeError(job.lastError)],
    ['args', argsError ?? inspect(args, { depth: null, colors: false, breakLength: 80 })],
  ]
  io.stdout.write(pairs(rows))
  return EXIT_OK
}

async function retryJob(io: CliIo, store: RedisStore, flags: CommonFlags, id: string): Promise<number> {
  const job = await store.getJob(id)
  if (job === undefined) return refuse(io, notFound(id, flags.node))
  if (!RETRYABLE.includes(job.status)) {
    const why =
      job.status === JobStatus.COMPLETE
        ? 'it succeeded; enqueue it again to run it again'
        : 'it is unfinished already and the node runs or retries it itself'
    return refuse(io, `job '${id}' on node '${flags.node}' is ${job.status}: not retried, ${why}`)
  }
  const dueAt = Date.now()
  await store.updateJob(id, { status: JobStatus.NEW, attempt: 0, dueAt })
  if (flags.json === true) {
    io.stdout.write(`${JSON.stringify({ id, node: flags.node, was: job.status, status: JobStatus.NEW, attempt: 0, dueAt: iso(dueAt) })}\n`)
  } else {
    io.stdout.write(
      `job '${id}' (${job.name}) on node '${flags.node}': ${job.status} -> new, attempt 0, due now.\n` +
        `It runs when node '${flags.node}' next starts: restart the node if it is running.\n`,
    )
  }
  return EXIT_OK
}

async function cancelJob(io: CliIo, store: RedisStore, flags: CommonFlags, id: string, remove: boolean): Promise<number> {
  const job = await store.getJob(id)
  if (job === undefined) return refuse(io, notFound(id, flags.node))
  if (!isUnfinished(job.status)) {
    return refuse(io, `job '${id}' on node '${flags.node}' is ${job.status}, finished already: not cancelled`)
  }
  if (remove) await store.removeJob(id)
  else await store.updateJob(id, { status: JobStatus.CANCELLED })
  const action = remove ? 'removed' : 'cancelled'
  if (flags.json === true) {
    io.stdout.write(`${JSON.stringify({ id, node: flags.node, was: job.status, action })}\n`)
  } else {
    io.stdout.write(
      `job '${id}' (${job.name}) on node '${flags.node}': ${job.status} -> ${action} in storage.\n` +
        `A running node that holds it is not told: cancel it through the distributor (handle.cancel()) for that.\n`,
    )
  }
  return EXIT_OK
}

async function purgeJobs(
  io: CliIo,
  store: RedisStore,
  flags: CommonFlags,
  status: JobStatus,
  force: boolean,
): Promise<number> {
  if (isUnfinished(status) && !force) {
    return refuse(
      io,
      `'${status}' is an unfinished status: the node would resume those jobs; give --force to remove them anyway ` +
        `(finished statuses: ${FINISHED_STATUSES.join(', ')})`,
    )
  }
  const ids = (await store.listJobs({ status })).map((j) => j.id)
  for (let i = 0; i < ids.length; i += PURGE_BATCH) {
    await Promise.all(ids.slice(i, i + PURGE_BATCH).map((id) => store.removeJob(id)))
  }
  if (flags.json === true) {
    io.stdout.write(`${JSON.stringify({ node: flags.node, status, removed: ids.length })}\n`)
  } else {
    io.stdout.write(`removed ${ids.length} ${status} job${ids.length === 1 ? '' : 's'} from node '${flags.node}'\n`)
  }
  return EXIT_OK
}

async function listFeedback(io: CliIo, store: RedisStore, flags: CommonFlags): Promise<number> {
  const items = await store.listFeedback()
  items.sort((a: FeedbackRecord, b: FeedbackRecord) => compare(a.jobId, b.jobId) || a.run - b.run)
  if (flags.json === true) {
    const rows = items.map((f) => ({
      jobId: f.jobId,
      run: f.run,
      kind: f.kind,
      final: f.final,
      cancelled: f.cancelled,
      distributor: f.distributor,
    }))
    io.stdout.write(`${JSON.stringify(rows, null, 2)}\n`)
    return EXIT_OK
  }
  if (items.length === 0) {
    io.stdout.write(`no unacknowledged feedback for node '${flags.node}'\n`)
    return EXIT_OK
  }
  io.stdout.write(
    table(
      ['JOB ID', 'RUN', 'KIND', 'FINAL', 'CANCELLED', 'DISTRIBUTOR'],
      items.map((f) => [f.jobId, String(f.run), f.kind, yesNo(f.final), yesNo(f.cancelled), f.distributor]),
    ),
  )
  return EXIT_OK
}

// --- formatting ----------------------------------------------------------------------------

function notFound(id: string, node: string): string {
  return `no job '${id}' for node '${node}'`
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function yesNo(value: boolean): string {
  return value ? 'yes' : 'no'
}

/** ISO time, or the raw number when it is no valid date (a corrupt or hand-edited record). */
function iso(ms: number): string {
  const date = new Date(ms)
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString()
}

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim()
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat
}

function describeError(error: NonNullable<JobRecord['lastError']>): string {
  const head = `${error.name}: ${error.message}${error.code === undefined ? '' : ` (${error.code})`}`
  // The stack repeats the head in its first line.
  const frames = error.stack?.split('\n').filter((line) => /^\s+at /.test(line)) ?? []
  return [head, ...frames.map((f) => f.trim())].join('\n')
}

/** Columns padded to their widest cell, two spaces apart; the last one is not padded. */
function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd()
  return `${[headers, ...rows].map(line).join('\n')}\n`
}

/** `label  value` lines; a multi-line value is indented under its first line. */
function pairs(rows: [string, string][]): string {
  const width = Math.max(...rows.map(([label]) => label.length))
  const indent = ' '.repeat(width + 2)
  return rows
    .map(([label, value]) => `${label.padEnd(width)}  ${value.split('\n').join(`\n${indent}`)}`)
    .join('\n')
    .concat('\n')
}

/** JSON for decoded args: bigint as a decimal string, bytes as base64. */
function jsonSafe(this: unknown, key: string, value: unknown): unknown {
  const raw = (this as Record<string, unknown>)[key]
  if (raw instanceof Uint8Array) return { base64: Buffer.from(raw).toString('base64') }
  if (typeof value === 'bigint') return value.toString()
  return value
}
