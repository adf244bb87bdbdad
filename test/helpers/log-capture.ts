import { pino } from 'pino'
import type { Logger } from '../../src/logger.js'
import { within } from './within.js'

export interface LogEntry {
  level: number
  msg: string
  code?: string
  err?: unknown
  reason?: string
  retryInMs?: number
  [key: string]: unknown
}

export const LEVEL = { debug: 20, info: 30, warn: 40, error: 50 } as const

/** A real pino logger whose lines are kept, so a test can wait for what a component logs. */
export class LogCapture {
  readonly entries: LogEntry[] = []
  readonly logger: Logger
  private readonly waiters: { match: (e: LogEntry) => boolean; count: number; resolve: (found: LogEntry[]) => void }[] =
    []

  constructor() {
    this.logger = pino({ level: 'debug' }, { write: (line: string) => this.add(JSON.parse(line) as LogEntry) })
  }

  matching(match: (e: LogEntry) => boolean): LogEntry[] {
    return this.entries.filter(match)
  }

  /** Resolves once `count` entries (logged before or after the call) match. */
  waitFor(match: (e: LogEntry) => boolean, count = 1, what = 'a log line'): Promise<LogEntry[]> {
    const found = this.matching(match)
    if (found.length >= count) return Promise.resolve(found)
    return within(new Promise((resolve) => this.waiters.push({ match, count, resolve })), `${count} × ${what}`)
  }

  private add(entry: LogEntry): void {
    this.entries.push(entry)
    for (const waiter of [...this.waiters]) {
      const found = this.matching(waiter.match)
      if (found.length < waiter.count) continue
      this.waiters.splice(this.waiters.indexOf(waiter), 1)
      waiter.resolve(found)
    }
  }
}

/** The line a node's link logs each time a dial fails before the handshake completed. */
export const redialled = (e: LogEntry): boolean => e.msg === 'cannot reach the distributor; redialling'
