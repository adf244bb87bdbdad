import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../..', import.meta.url))

/**
 * The deployment example as a user runs it: two web replicas with a Redis spool, two
 * discovering nodes, one replica SIGKILLed while jobs flow. It exits 0 only when every
 * persisted job got its result.
 */
describe('examples/replicas', () => {
  it('a replica killed while jobs flow loses no persisted job', async () => {
    const child = spawn(process.execPath, ['examples/replicas/run.js'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
    })
    child.stderr.resume()
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
    expect(out).toMatch(/web-1 SIGKILLed/)
    expect(out).toMatch(/web-2 adopted web-1: \d+ spooled jobs/)
    // web-1 may have written a few more persisted lines than the 500 that triggered its kill.
    expect(out).toMatch(/^\d+ jobs persisted, every one has a result/m)
    expect(code).toBe(0)
  }, 90_000)
})
