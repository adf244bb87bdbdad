/**
 * `jr`'s commands for a live distributor: they go through the admin API that the host
 * application mounts (`distributor.adminHandler()`), at `--url` (or JR_URL), with `--token`
 * (or JR_TOKEN) sent as a bearer token for the application's authorize hook. Thin: flags
 * become AdminClient calls and jr-format renders the answers; `--json` prints the API's
 * JSON as it came.
 *
 * Exit codes as for the storage commands: 1 when the API refused (403), does not know the
 * job or node (404), or the action does not apply (409, a cancel of a finished job); 2 for
 * a bad URL, an unreachable distributor and any other error.
 */

import { type Command, InvalidArgumentError as CommanderArgumentError, Option } from 'commander'
import { AdminClient, type NodeJobKind } from '../admin/admin-client.js'
import { AdminRequestError } from '../errors.js'
import {
  formatApiJson,
  formatFailures,
  formatLiveCancelled,
  formatLiveJob,
  formatLiveRetried,
  formatNodeJobs,
  formatNodes,
  formatOverview,
  formatPaused,
  formatPendingPage,
  formatQuiet,
  formatRoutes,
  liveCancelRefused,
  noRoute,
} from './jr-format.js'
import { type CliIo, EXIT_ERROR, EXIT_OK, EXIT_REFUSED, fail, report } from './jr-io.js'

export interface LiveFlags {
  url?: string
  token?: string
  json?: boolean
}

interface PendingFlags extends LiveFlags {
  route?: string
  node?: string
  notNode?: string
  offset?: number
  limit?: number
}

/** One command's requests; resolves with the exit code. */
type LiveWork = (client: AdminClient, json: boolean) => Promise<number>

/** The API's answers that mean "no" rather than "broken": refused, not there, does not apply. */
const REFUSALS: ReadonlySet<number> = new Set([403, 404, 409])

export const JSON_HELP = 'print JSON for scripts instead of a table'

/**
 * Adds `--url` and `--token`. Mandatory for the live-only commands; `cancel` and `retry`
 * take them optionally, and go live when a URL is given.
 */
export function withUrl(cmd: Command, mandatory: boolean): Command {
  const url = new Option(
    '--url <url>',
    "where the application mounts the distributor's adminHandler(), like http://127.0.0.1:3000/jr/",
  ).env('JR_URL')
  return cmd
    .addOption(mandatory ? url.makeOptionMandatory() : url)
    .addOption(
      new Option('--token <token>', "sent as 'Authorization: Bearer <token>' for the application's authorize hook").env(
        'JR_TOKEN',
      ),
    )
}

function withLive(cmd: Command): Command {
  return withUrl(cmd, true).option('--json', JSON_HELP)
}

export async function runLive(io: CliIo, flags: LiveFlags, work: LiveWork): Promise<number> {
  try {
    // Validates the URL (http or https, no credentials) and the token before any request.
    const client = new AdminClient({ url: flags.url ?? '', token: flags.token })
    return await work(client, flags.json === true)
  } catch (err) {
    if (err instanceof AdminRequestError) {
      // Only the API's own refusals: a 404 page of another server means a wrong URL.
      const refused = err.serverCode !== undefined && REFUSALS.has(err.status)
      // Its message names the status and the API's code already.
      return report(io, err.message, refused ? EXIT_REFUSED : EXIT_ERROR)
    }
    return fail(io, err)
  }
}

export function liveCancel(io: CliIo, id: string, flags: LiveFlags): Promise<number> {
  return runLive(io, flags, async (client, json) => {
    const result = await client.cancel(id)
    const code = result.cancelled ? EXIT_OK : EXIT_REFUSED
    if (json) return print(io, formatApiJson(result), code)
    return result.cancelled
      ? print(io, formatLiveCancelled(result))
      : report(io, liveCancelRefused(id, client.url), EXIT_REFUSED)
  })
}

export function liveRetry(io: CliIo, id: string, node: string | undefined, flags: LiveFlags): Promise<number> {
  return runLive(io, flags, async (client, json) => answer(io, json, await client.retry(id, node), formatLiveRetried))
}

/** The commands that exist only live. */
export function addLiveCommands(program: Command, io: CliIo, setExit: (code: number) => void): void {
  const run = (flags: LiveFlags, work: LiveWork): Promise<void> => runLive(io, flags, work).then(setExit)

  withLive(
    program
      .command('overview')
      .description('a live distributor at a glance: pending, in flight, nodes, and the counts of each job name'),
  ).action((flags: LiveFlags) =>
    run(flags, async (client, json) => answer(io, json, await client.overview(), formatOverview)),
  )

  withLive(
    program
      .command('nodes')
      .description("a live distributor's nodes: state, in flight, concurrency, window, job names"),
  ).action((flags: LiveFlags) =>
    run(flags, async (client, json) => answer(io, json, await client.nodes(), formatNodes)),
  )

  withLive(
    program
      .command('pending')
      .description("a live distributor's pending jobs by route; with --route, that route's jobs, a page at a time"),
  )
    .option('-r, --route <name>', 'list the pending jobs of this job name')
    .option('--node <node>', 'with --route: of the jobs enqueued with this node preference')
    .option('--not-node <node>', 'with --route: of the jobs enqueued with this notNode')
    .option('--offset <n>', 'with --route: skip this many jobs', parseCount)
    .option('--limit <n>', 'with --route: at most this many jobs (the API caps it)', parseCount)
    .action((flags: PendingFlags) =>
      run(flags, async (client, json) => {
        if (flags.route === undefined) return answer(io, json, await client.pending(), formatRoutes)
        const route = await client.findRoute(flags.route, flags)
        if (route === undefined) return report(io, noRoute(flags.route, flags, client.url), EXIT_REFUSED)
        return answer(io, json, await client.pendingJobs(route.route, flags), formatPendingPage)
      }),
    )

  withLive(
    program
      .command('job')
      .argument('<id>', 'job id')
      .description('one job as a live distributor knows it: state, node, attempt, last error, args'),
  )
    .option('--node <node>', 'also look for it on this node (a job the distributor no longer holds)')
    .action((id: string, flags: LiveFlags & { node?: string }) =>
      run(flags, async (client, json) =>
        answer(io, json, await client.job(id, flags.node), (body) => formatLiveJob(body.job)),
      ),
    )

  withLive(
    program
      .command('held')
      .argument('<node>', 'node name')
      .description('the jobs a node holds, asked of the node through a live distributor, a page at a time'),
  )
    .option('-k, --kind <kind>', 'running, scheduled, periodic, or failed (kept by durable storage)', 'scheduled')
    .option('--cursor <cursor>', 'the page after this cursor (as the last page printed it)')
    .option('--limit <n>', 'at most this many jobs (the API caps it)', parseCount)
    .action((node: string, flags: LiveFlags & { kind: string; cursor?: string; limit?: number }) =>
      run(flags, async (client, json) => {
        // Unchecked here: the API refuses another kind with a 400 that lists the kinds.
        const kind = flags.kind as NodeJobKind
        return answer(io, json, await client.nodeJobs(node, kind, flags), formatNodeJobs)
      }),
    )

  withLive(
    program
      .command('failures')
      .description("a live distributor's recent final failures, newest first, with their errors"),
  )
    .option('--limit <n>', 'at most this many', parseCount)
    .action((flags: LiveFlags & { limit?: number }) =>
      run(flags, async (client, json) => answer(io, json, await client.failures(flags.limit), formatFailures)),
    )

  withLive(
    program
      .command('quiet')
      .argument('<node>', 'node name')
      .description('stop a node taking new jobs (from any distributor); it finishes what it holds')
      .option('--off', 'undo: the node takes new jobs again'),
  ).action((node: string, flags: LiveFlags & { off?: boolean }) =>
    run(flags, async (client, json) => answer(io, json, await client.quiet(node, flags.off !== true), formatQuiet)),
  )

  withLive(
    program
      .command('pause')
      .argument('<name>', 'job name')
      .description('hold the jobs of this name at the distributor: they stay pending until resumed'),
  ).action((name: string, flags: LiveFlags) =>
    run(flags, async (client, json) => answer(io, json, await client.pause(name), formatPaused)),
  )

  withLive(
    program.command('resume').argument('<name>', 'job name').description('dispatch the jobs of a paused name again'),
  ).action((name: string, flags: LiveFlags) =>
    run(flags, async (client, json) => answer(io, json, await client.resume(name), formatPaused)),
  )
}

function print(io: CliIo, text: string, code = EXIT_OK): number {
  io.stdout.write(text)
  return code
}

/** The API's JSON with --json, else the text `format` makes of it. */
function answer<T>(io: CliIo, json: boolean, body: T, format: (body: T) => string): number {
  return print(io, json ? formatApiJson(body) : format(body))
}

function parseCount(value: string): number {
  const n = Number(value)
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) {
    throw new CommanderArgumentError(`'${value}' is not a whole number`)
  }
  return n
}
