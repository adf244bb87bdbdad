/**
 * `jr`: the admin command for the jobs a node keeps in Redis (the successor of JobReactor's
 * RedisMonitor), and for a live distributor. Thin: flags become StoreAdmin calls (the rules
 * of what can be retried, cancelled and purged live there) and jr-format renders the
 * results; every storage subcommand opens one store for one node, does its work and closes
 * it. `members` reads a distributor group's registry instead (GroupAdmin), with no node.
 *
 * The storage commands change storage only. A running node learns of jobs from its
 * distributors, and of stored jobs only when it starts (it resumes the unfinished ones), so
 * what they `retry` and `cancel` reaches a node when it next starts. The commands in jr-live
 * (and `retry` and `cancel` given `--url`) act on the running system instead, through the
 * distributor's admin API. The help texts say which is which.
 *
 * Exit codes: 0 done; 1 not found or refused; 2 bad usage, bad URL or prefix, Redis or the
 * distributor unreachable or failing. `main` returns the code rather than exiting, so that
 * tests can run it in-process and the executable can let stdout drain.
 */

import { Command, CommanderError, InvalidArgumentError as CommanderArgumentError, Option } from 'commander'
import { GroupAdmin, openGroupReader } from '../admin/group-admin.js'
import { FINISHED_STATUSES, StoreAdmin } from '../admin/store-admin.js'
import { groupKeys } from '../storage/redis/group-keys.js'
import { DEFAULT_KEY_PREFIX } from '../storage/redis/keys.js'
import { RedisStore } from '../storage/redis/redis-store.js'
import { DEFAULT_REDIS_URL } from '../storage/redis/url.js'
import { DEFAULT_STORE_TIMEOUT_MS } from '../config.js'
import { Scheduler } from '../scheduling/scheduler.js'
import type { Timer } from '../scheduling/timer-heap.js'
import { StoreGuard } from '../storage/store-guard.js'
import { JobStatus, type Store } from '../storage/store.js'
import {
  type View,
  cancelRefused,
  formatCancelled,
  formatFeedback,
  formatJob,
  formatJobs,
  formatMembers,
  formatPurged,
  formatRetried,
  notFound,
  purgeRefused,
  retryRefused,
} from './jr-format.js'
import { type CliIo, EXIT_ERROR, EXIT_OK, EXIT_REFUSED, fail, report } from './jr-io.js'
import { addLiveCommands, JSON_HELP, type LiveFlags, liveCancel, liveRetry, withUrl } from './jr-live.js'

export { type CliIo, EXIT_ERROR, EXIT_OK, EXIT_REFUSED } from './jr-io.js'

const STATUSES: readonly JobStatus[] = Object.values(JobStatus)

interface CommonFlags {
  redis: string
  prefix: string
  node: string
  json?: boolean
}

/** `retry` and `cancel`: on storage with `--node`, or live with `--url`. */
type EitherFlags = Omit<CommonFlags, 'node'> & LiveFlags & { node?: string }

/** One subcommand's work on an open store; resolves with the exit code. */
type Work = (admin: StoreAdmin, view: View) => Promise<number>

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
  return withStorage(cmd.requiredOption('-n, --node <name>', 'node whose jobs these are (its jr-node --name)'))
}

function withStorage(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--redis <url>', 'redis://[user:password@]host[:port][/db], rediss://, or redis-cluster://h1:p1,h2:p2')
        .env('JR_REDIS')
        .default(DEFAULT_REDIS_URL),
    )
    .option('--prefix <prefix>', 'key prefix the node was started with', DEFAULT_KEY_PREFIX)
    .option('--json', JSON_HELP)
}

/**
 * With a URL (`--url`, JR_URL) `retry` and `cancel` go to the live distributor, without one
 * to storage. A flag of the other way is a usage error rather than ignored: a `--remove`
 * that silently did nothing would mislead.
 */
function checkWay(cmd: Command, flags: EitherFlags, storageOnly: readonly string[]): void {
  const given = (option: string): boolean => cmd.getOptionValueSource(option) === 'cli'
  if (flags.url !== undefined) {
    const wrong = storageOnly.find(given)
    if (wrong !== undefined)
      cmd.error(`error: --${wrong} is for storage; with --url (or JR_URL) jr ${cmd.name()} goes to the distributor`)
  } else {
    if (flags.node === undefined)
      cmd.error(`error: required option '-n, --node <name>' not specified (or --url <url> for a live distributor)`)
    if (given('token')) cmd.error('error: --token goes with --url')
  }
}

export function buildProgram(io: CliIo, setExit: (code: number) => void): Command {
  const program = new Command('jr')
    .description(
      "Inspect and repair the jobs a job-reactor node keeps in Redis (keys '<prefix>{<node>}:...'), list a distributor group's members, and watch and steer a live distributor through its admin API (--url)",
    )
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
    })
    .exitOverride()
    .showHelpAfterError('(run jr --help, or jr <command> --help)')
    .addHelpText(
      'after',
      '\nStorage commands (jobs, show, retry, cancel, purge, feedback: --node) read and write Redis only.\n' +
        'A running node learns of jobs from its distributors, and of stored jobs only when it starts,\n' +
        'so what they retry and cancel takes effect at its next start.\n' +
        '\nLive commands (overview, nodes, pending, job, held, failures, quiet, pause, resume, and retry\n' +
        'and cancel given --url) go to a running distributor through the admin API the application\n' +
        'mounts (distributor.adminHandler()), and take effect at once.\n' +
        '\nExit codes: 0 done; 1 job not found, operation refused or not allowed; 2 bad usage, bad URL,\n' +
        'Redis or the distributor unreachable. The Redis URL may also come from JR_REDIS, the\n' +
        'distributor URL from JR_URL and its token from JR_TOKEN, which keeps secrets off the command line.',
    )

  const run = (flags: CommonFlags, work: Work): Promise<void> => withStore(io, flags, work).then(setExit)
  const print = (text: string): number => {
    io.stdout.write(text)
    return EXIT_OK
  }
  const refuse = (message: string): number => report(io, message, EXIT_REFUSED)

  withCommon(
    program
      .command('jobs')
      .description("list a node's jobs: id, name, status, attempt, run, due at, period, last error"),
  )
    .option('-s, --status <status>', `only jobs of this status (${STATUSES.join(', ')})`, parseStatus)
    .action((flags: CommonFlags & { status?: JobStatus }) =>
      run(flags, async (admin, view) =>
        print(formatJobs(await admin.listJobs({ status: flags.status }), view, flags.status)),
      ),
    )

  withCommon(
    program.command('show').argument('<id>', 'job id').description('print one job record in full, args decoded'),
  ).action((id: string, flags: CommonFlags) =>
    run(flags, async (admin, view) => {
      const job = await admin.getJob(id)
      return job === undefined ? refuse(notFound(id, view.node)) : print(formatJob(job, view))
    }),
  )

  withUrl(
    withStorage(
      program
        .command('retry')
        .argument('<id>', 'job id')
        .description(
          'run a failed job again now through a live distributor (--url), or make it new in storage (--node)',
        )
        .option('-n, --node <name>', 'storage: the node whose job it is; with --url: the node to run it on'),
    ),
    false,
  )
    .addHelpText(
      'after',
      '\nWith --url: the distributor has the node that keeps the failed job (the one in its recent\n' +
        'failures, or --node) run it again now. Refused (exit 1) when no running node keeps it, or\n' +
        'when it is not failed.\n' +
        '\nWith --node alone, on storage: the job is made new and runs when the node next starts: a\n' +
        'running node does not look in storage for jobs, so restart it (SIGTERM, then jr-node again)\n' +
        'to have the job picked up. Its last error stays in the record. The result goes back as\n' +
        "feedback to the job's distributor, whose closures already ran for the first outcome: it\n" +
        'arrives there as a feedback:orphan event (or is ignored as a duplicate by a distributor that\n' +
        'finished the job lately). Refused for a job that is complete, or unfinished already (new,\n' +
        'queued, in progress, error: the node runs or retries it itself).',
    )
    .action((id: string, flags: EitherFlags, cmd: Command) => {
      checkWay(cmd, flags, ['redis', 'prefix'])
      if (flags.url !== undefined) return liveRetry(io, id, flags.node, flags).then(setExit)
      return run({ ...flags, node: flags.node ?? '' }, async (admin, view) => {
        const result = await admin.retryJob(id)
        return result.ok ? print(formatRetried(result, view)) : refuse(retryRefused(id, result, view.node))
      })
    })

  withUrl(
    withStorage(
      program
        .command('cancel')
        .argument('<id>', 'job id')
        .description(
          'cancel a job through a live distributor (--url), or mark it cancelled in storage (--node, or --remove it)',
        )
        .option('-n, --node <name>', 'storage: the node whose job it is')
        .option('--remove', 'storage: delete the job record instead of marking it cancelled'),
    ),
    false,
  )
    .addHelpText(
      'after',
      '\nWith --url: the distributor cancels the job as handle.cancel() would: a job not yet run\n' +
        'never runs, a periodic one stops. Exit 1 when it had finished, or the distributor does not\n' +
        'know it.\n' +
        '\nWith --node, on storage only: a node that does not run yet will not resume the job. A\n' +
        'running node that already holds the job in its timers is not told and runs it anyway (and\n' +
        'then records its outcome over the cancel, unless the record was removed): cancel such a\n' +
        'job through its distributor (--url, handle.cancel() or JR.cancel(id)). No feedback is sent\n' +
        'for a job cancelled here, so a distributor still waiting for it keeps waiting. Refused for\n' +
        'finished jobs (complete, failed, cancelled).',
    )
    .action((id: string, flags: EitherFlags & { remove?: boolean }, cmd: Command) => {
      checkWay(cmd, flags, ['node', 'remove', 'redis', 'prefix'])
      if (flags.url !== undefined) return liveCancel(io, id, flags).then(setExit)
      return run({ ...flags, node: flags.node ?? '' }, async (admin, view) => {
        const result = await admin.cancelJob(id, { remove: flags.remove === true })
        return result.ok ? print(formatCancelled(result, view)) : refuse(cancelRefused(id, result, view.node))
      })
    })

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
      run(flags, async (admin, view) => {
        const result = await admin.purgeJobs(flags.status, { force: flags.force === true })
        return result.ok ? print(formatPurged(flags.status, result, view)) : refuse(purgeRefused(flags.status))
      }),
    )

  program
    .command('members')
    .description("list a distributor group's registered members: address, lease, whom they answer for, spool size")
    .requiredOption('-g, --group <name>', 'the distributor group (its startDistributor({ group }))')
    .option(
      '--storage <url>',
      "the distributors' Redis, as their storage option (default: JR_REDIS, else redis://127.0.0.1:6379)",
    )
    .option('--redis <url>', 'the same, spelled as the other subcommands spell it')
    .option('--prefix <prefix>', 'key prefix the distributors use', DEFAULT_KEY_PREFIX)
    .option('--json', JSON_HELP)
    .addHelpText(
      'after',
      '\nA member whose lease ran out is gone: nodes no longer dial it, and its entry stays until a\n' +
        'live member adopts its spool (and lists it under ANSWERS FOR).',
    )
    .action((flags: MembersFlags) => membersOf(io, flags).then(setExit))

  withCommon(
    program
      .command('feedback')
      .description('list the feedback outbox: results not yet acknowledged by their distributor'),
  ).action((flags: CommonFlags) =>
    run(flags, async (admin, view) => print(formatFeedback(await admin.listFeedback(), view))),
  )

  addLiveCommands(program, io, setExit)

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

interface MembersFlags {
  group: string
  storage?: string
  redis?: string
  prefix: string
  json?: boolean
}

async function membersOf(io: CliIo, flags: MembersFlags): Promise<number> {
  const env = process.env['JR_REDIS']
  const url = flags.storage ?? flags.redis ?? (env === undefined || env === '' ? DEFAULT_REDIS_URL : env)
  let reader: Awaited<ReturnType<typeof openGroupReader>> | undefined
  try {
    // Validates the group and the prefix before connecting.
    groupKeys(flags.group, flags.prefix)
    reader = await openGroupReader(url, DEFAULT_STORE_TIMEOUT_MS)
    const members = await new GroupAdmin(reader, flags.prefix).listMembers(flags.group)
    io.stdout.write(formatMembers(members, flags.group, flags.json === true))
    return EXIT_OK
  } catch (err) {
    return fail(io, err)
  } finally {
    reader?.close()
  }
}

async function withStore(io: CliIo, flags: CommonFlags, work: Work): Promise<number> {
  let store: Store
  try {
    // Validates the URL, the prefix and the node name: an InvalidArgumentError names them.
    const redis = new RedisStore({ node: flags.node, url: flags.redis, prefix: flags.prefix })
    // A hung server (the connection up, no answers) must end the command with an error,
    // not leave it waiting for ever, as it would a node.
    const timers = new Scheduler<Timer>((timer) => timer.fire())
    const guard = new StoreGuard(
      { now: Date.now, after: (timer, ms) => timers.schedule(timer, Date.now() + ms) },
      DEFAULT_STORE_TIMEOUT_MS,
    )
    store = guard.wrap(redis)
  } catch (err) {
    return fail(io, err)
  }
  try {
    await store.open()
    return await work(new StoreAdmin(store), { node: flags.node, json: flags.json === true })
  } catch (err) {
    return fail(io, err)
  } finally {
    await store.close().catch(() => {})
  }
}
