import { pino, type Logger } from 'pino'
import { describe } from './config.js'
import { InvalidArgumentError } from './errors.js'

export type { Logger }

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

/**
 * The `logLevel` option, validated. Unset, `JR_LOG_LEVEL` in the environment decides (how
 * the test suite keeps child processes quiet without passing flags everywhere), else 'info'.
 */
export function resolveLogLevel(value: unknown, field = 'logLevel'): LogLevel {
  if (value === undefined) {
    const fromEnv = process.env['JR_LOG_LEVEL']
    return LOG_LEVELS.includes(fromEnv as LogLevel) ? (fromEnv as LogLevel) : 'info'
  }
  if (!LOG_LEVELS.includes(value as LogLevel)) {
    throw new InvalidArgumentError(`'${field}' must be one of ${LOG_LEVELS.join(', ')}, got ${describe(value)}`)
  }
  return value as LogLevel
}

export function createLogger(level: LogLevel, name = 'job-reactor'): Logger {
  return pino({ name, level })
}
