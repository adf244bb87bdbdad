import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const JR_BIN = fileURLToPath(new URL('../../bin/jr.js', import.meta.url))
/** What bin/jr.js loads: missing until `npm run build`. */
export const BUILT_CLI = fileURLToPath(new URL('../../dist/cli/jr.js', import.meta.url))

export interface JrRun {
  code: number
  stdout: string
  stderr: string
}

/** Runs bin/jr.js with `args` in a process of its own; resolves once it closed, with what it wrote. */
export function spawnJr(args: string[]): Promise<JrRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [JR_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.once('error', reject)
    child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}
