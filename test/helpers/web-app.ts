import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { DistributorOptions } from '../../src/distributor/options.js'
import type { Resources } from './cluster.js'
import { within } from './within.js'

export const WEB_APP = fileURLToPath(new URL('../fixtures/web-app.js', import.meta.url))
export const LATE_JOBS = fileURLToPath(new URL('../fixtures/jobs-late', import.meta.url))

export interface WebAppConfig {
  /** Distributor options (JSON only: no logger, no TLS objects). */
  distributor: DistributorOptions
  /** Job names whose results the named handlers report. */
  handlers?: string[]
}

/** A result the web app reported: a closure of a job it enqueued, or a named handler. */
export interface ResultLine {
  result: string
  kind: 'success' | 'error'
  via: 'closure' | 'handler'
  name: string
  node: string | undefined
  /** A handler's info.run; for a closure, the run the job wrote into its args (if it does). */
  run: number | undefined
  /** A handler's info.final. */
  final?: boolean
}

export interface EventLine {
  event: string
  member?: string
  jobs?: number
  [key: string]: unknown
}

export interface Status {
  active: number
  pending: number
  persisted: number
  enqueued: number
}

export interface EnqueueCommand {
  count: number
  name: string
  args?: Record<string, unknown>
  opts?: Record<string, unknown>
  /** Jobs enqueued at a time (all at once without it). */
  chunk?: number
  /** Between chunks (without it: one event-loop turn). */
  everyMs?: number
}

/** How long `until` waits before it fails with what it was waiting for. */
const WAIT_MS = 30_000

/**
 * The web-app fixture (test/fixtures/web-app.js) as a child process: what it printed, kept
 * in tables, and its stdin commands. Everything it reports is awaited through `until`,
 * which re-checks its condition on every line.
 */
export class WebApp {
  port = 0
  group = ''
  name = ''
  /** Ids in enqueue order. */
  readonly enqueued: string[] = []
  /** The job name of each id enqueued. */
  readonly names = new Map<string, string>()
  readonly persisted = new Set<string>()
  /** What each enqueue with a key did, in the order they became known. */
  readonly uniques: { key: string; outcome: string; id: string }[] = []
  readonly accepted = new Set<string>()
  readonly results: ResultLine[] = []
  readonly events: EventLine[] = []
  /** What each cancel command resolved, by id. */
  readonly cancelled = new Map<string, boolean>()
  readonly exited: Promise<void>
  /** What the fixture printed when its distributor did not start. */
  startError: string | undefined
  /** What stopped an enqueue command (an enqueue that threw), as `message (code)`. */
  readonly enqueueErrors: string[] = []
  /** The `stop` command was carried out: no job is enqueued after it. */
  stopped = false
  private stderr = ''
  private readonly statuses: Status[] = []
  private readonly checks = new Set<() => void>()
  /** Its output is closed: every line it printed was read. */
  private gone = false

  private constructor(readonly child: ChildProcessWithoutNullStreams) {
    this.exited = once(child, 'close').then(() => {
      this.gone = true
    })
    child.stderr.on('data', (chunk: Buffer) => {
      if (this.stderr.length < 100_000) this.stderr += chunk.toString()
    })
    createInterface({ input: child.stdout }).on('line', (line) => this.onLine(line))
    void this.exited.then(() => this.recheck())
  }

  /** Spawns the web app and resolves once it printed its port (its distributor started). */
  static async start(res: Resources, config: WebAppConfig): Promise<WebApp> {
    const child = spawn(process.execPath, [WEB_APP, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'pipe'] })
    const app = res.add(new WebApp(child), (a) => a.kill())
    await app.until(() => app.port !== 0 || app.startError !== undefined, 'the web app to start')
    if (app.startError !== undefined) throw new Error(`the web app did not start: ${app.startError}`)
    return app
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** What the process wrote on stderr (its logs), for failure messages. */
  get logs(): string {
    return this.stderr
  }

  /** Result ids, each once. */
  resultIds(via?: ResultLine['via']): Set<string> {
    return new Set(this.results.filter((r) => via === undefined || r.via === via).map((r) => r.result))
  }

  send(command: Record<string, unknown>): void {
    this.child.stdin.write(`${JSON.stringify(command)}\n`)
  }

  enqueue(command: EnqueueCommand): void {
    this.send({ cmd: 'enqueue', ...command })
  }

  /** Cancels `id` in the app; resolves what its cancel() resolved. */
  async cancel(id: string): Promise<boolean> {
    this.send({ cmd: 'cancel', id })
    await this.until(() => this.cancelled.has(id), `the cancel of ${id}`)
    return this.cancelled.get(id) as boolean
  }

  async status(): Promise<Status> {
    const seen = this.statuses.length
    this.send({ cmd: 'status' })
    await this.until(() => this.statuses.length > seen, 'a status line')
    return this.statuses[seen] as Status
  }

  /**
   * Resolves once `condition` holds (checked now and after every line the app prints);
   * fails with `what` (and `progress()`) when the app exits first or after WAIT_MS.
   */
  until(condition: () => boolean, what: string, progress: () => unknown = () => ''): Promise<void> {
    const waiting = new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (condition()) {
          this.checks.delete(check)
          resolve()
        } else if (this.gone) {
          this.checks.delete(check)
          reject(new Error(`the web app exited while waiting for ${what} ${String(progress())}\n${this.stderr}`))
        }
      }
      this.checks.add(check)
      check()
    })
    return within(waiting, `${what} ${String(progress())}`, WAIT_MS).catch((err: Error) => {
      throw new Error(`${err.message} ${String(progress())}\n${this.stderr}`)
    })
  }

  /** Ends stdin: the app closes its distributor (with a spool: hands its jobs over) and exits. */
  async end(): Promise<void> {
    this.child.stdin.end()
    await this.exited
  }

  /** Stops every enqueue command; resolves once the app enqueues nothing more. */
  async stopEnqueuing(): Promise<void> {
    this.stopped = false
    this.send({ cmd: 'stop' })
    await this.until(() => this.stopped, 'the enqueue commands to stop')
  }

  /**
   * SIGTERM, as a rolling deploy sends it: the app closes its distributor (with a spool:
   * hands its jobs over) and exits. Resolves the exit code once the process is gone.
   */
  async terminate(): Promise<number | null> {
    if (this.running) this.child.kill('SIGTERM')
    await this.exited
    return this.child.exitCode
  }

  /** SIGKILL, and resolves once the process is gone (every line it printed read). */
  async kill(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL')
    await this.exited
  }

  private onLine(line: string): void {
    let value: Record<string, unknown>
    try {
      value = JSON.parse(line) as Record<string, unknown>
    } catch {
      return
    }
    if (typeof value['port'] === 'number') {
      this.port = value['port']
      this.group = String(value['group'])
      this.name = String(value['name'])
    } else if (typeof value['startError'] === 'string') {
      this.startError = `${value['startError']} (${String(value['code'])})`
    } else if (Array.isArray(value['enqueued'])) {
      this.enqueued.push(...(value['enqueued'] as string[]))
      for (const id of value['enqueued'] as string[]) this.names.set(id, String(value['name']))
    } else if (value['unique'] !== undefined) {
      this.uniques.push(value['unique'] as WebApp['uniques'][number])
    } else if (typeof value['persisted'] === 'string') {
      this.persisted.add(value['persisted'])
    } else if (typeof value['accepted'] === 'string') {
      this.accepted.add(value['accepted'])
    } else if (typeof value['result'] === 'string') {
      this.results.push(value as unknown as ResultLine)
    } else if (typeof value['event'] === 'string') {
      this.events.push(value as EventLine)
    } else if (typeof value['cancelled'] === 'string') {
      this.cancelled.set(value['cancelled'], value['result'] === true)
    } else if (value['stopped'] === true) {
      this.stopped = true
    } else if (typeof value['enqueueError'] === 'string') {
      this.enqueueErrors.push(`${value['enqueueError']} (${String(value['code'])})`)
    } else if (value['status'] !== undefined) {
      this.statuses.push(value['status'] as Status)
    }
    this.recheck()
  }

  private recheck(): void {
    for (const check of [...this.checks]) check()
  }
}
