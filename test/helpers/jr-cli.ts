import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { main } from '../../src/cli/jr.js'

export const JR_BIN = fileURLToPath(new URL('../../bin/jr.js', import.meta.url))
const BUILT_CLI = fileURLToPath(new URL('../../dist/cli/jr.js', import.meta.url))

/** What one `jr` run printed, and its exit code. */
export interface Run {
  code: number
  stdout: string
  stderr: string
}

/** The executable runs the build: a stale or missing one would test old code. */
export function builtCliExists(): boolean {
  return existsSync(BUILT_CLI)
}

/** Runs `jr` in-process with the given arguments, as they would follow `jr` on a shell. */
export async function jr(...args: string[]): Promise<Run> {
  let stdout = ''
  let stderr = ''
  const code = await main(['node', 'jr', ...args], {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
  })
  return { code, stdout, stderr }
}

/**
 * Runs the real executable, bin/jr.js (build first). `env` is added to this process's,
 * without the JR_* variables of the shell that runs the tests.
 */
export function spawnJr(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('JR_')))
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [JR_BIN, ...args], {
      env: { ...base, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.once('error', reject)
    child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}
