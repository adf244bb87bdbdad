import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { main } from '../../src/cli/jr.js'

export const JR_BIN = fileURLToPath(new URL('../../bin/jr.js', import.meta.url))
/** What bin/jr.js loads: missing until `npm run build`. */
export const BUILT_CLI = fileURLToPath(new URL('../../dist/cli/jr.js', import.meta.url))

export interface JrRun {
  code: number
  stdout: string
  stderr: string
}

/** Runs `jr` in-process with the given arguments, as they would follow `jr` on a shell. */
export async function jr(...args: string[]): Promise<JrRun> {
  let stdout = ''
  let stderr = ''
  const code = await main(['node', 'jr', ...args], {
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
  })
  return { code, stdout, stderr }
}

/**
 * Runs bin/jr.js with `args` in a process of its own; resolves once it closed, with what it
 * wrote. Its environment is this one's with `env` added, less the JR_* variables of the
 * shell that runs the tests (a JR_URL there would send `jr cancel` to a distributor).
 */
export function spawnJr(args: string[], env: NodeJS.ProcessEnv = {}): Promise<JrRun> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('JR_')))
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [JR_BIN, ...args], {
      env: { ...inherited, ...env },
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
