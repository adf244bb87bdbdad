import { pino, type Logger } from 'pino'

export type { Logger }

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/**
 * The default logger. `JR_LOG_LEVEL` in the environment overrides the level, which is how
 * the test suite keeps child processes quiet without passing flags everywhere.
 */
export function createLogger(level?: LogLevel, name = 'job-reactor'): Logger {
  const fromEnv = process.env['JR_LOG_LEVEL'] as LogLevel | undefined
  return pino({ name, level: level ?? fromEnv ?? 'info' })
}
