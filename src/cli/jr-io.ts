/** Where `jr` writes, its exit codes, and how it reports an error: one line on stderr. */

/** Where the command writes; `process.stdout`/`process.stderr` unless a test gives its own. */
export interface CliIo {
  stdout: { write(chunk: string): unknown }
  stderr: { write(chunk: string): unknown }
}

export const EXIT_OK = 0
/** The job is not there, or the operation does not apply to it (or was not allowed). */
export const EXIT_REFUSED = 1
/** Bad usage, bad URL or prefix, Redis or the distributor unreachable or failing. */
export const EXIT_ERROR = 2

/** `jr: <message>` on stderr; `code` is the exit code to return. */
export function report(io: CliIo, message: string, code: number): number {
  io.stderr.write(`jr: ${message}\n`)
  return code
}

/** StoreError (unreachable, failing) and InvalidArgumentError (bad URL, prefix, node) end here. */
export function fail(io: CliIo, err: unknown): number {
  const message = err instanceof Error ? err.message : String(err)
  const code = (err as { code?: unknown } | null)?.code
  return report(io, `${message}${typeof code === 'string' ? ` (${code})` : ''}`, EXIT_ERROR)
}
