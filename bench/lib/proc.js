// Child processes of the benchmarks: spawned with piped output, tracked so that nothing
// outlives the run, killed at the end of their case (SIGTERM, then SIGKILL after a grace).
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'

const live = new Set()
const STDERR_LINES = 40

/**
 * Spawns `node ...args` (the running Node binary). Lines the child prints on stdout go to
 * `waitForLine` waiters; its stderr is relayed with a prefix (at most STDERR_LINES lines).
 */
export function spawnNode(label, args, { env, cwd } = {}) {
  const child = spawn(process.execPath, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  live.add(child)
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child)
      resolve({ code, signal })
    })
    child.once('error', (err) => {
      live.delete(child)
      resolve({ code: null, signal: null, error: err })
    })
  })
  const waiters = []
  const lines = []
  createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line)
    for (const w of [...waiters]) w(line)
  })
  let relayed = 0
  createInterface({ input: child.stderr }).on('line', (line) => {
    if (relayed < STDERR_LINES) process.stderr.write(`  [${label}] ${line}\n`)
    else if (relayed === STDERR_LINES) process.stderr.write(`  [${label}] (further stderr lines dropped)\n`)
    relayed++
  })

  /** Resolves with the first stdout line (past or future) that `test` accepts. */
  const waitForLine = (test, timeoutMs = 30_000) =>
    new Promise((resolve, reject) => {
      const seen = lines.find(test)
      if (seen !== undefined) return resolve(seen)
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`${label}: no expected output within ${timeoutMs} ms`))
      }, timeoutMs)
      const onLine = (line) => {
        if (!test(line)) return
        cleanup()
        resolve(line)
      }
      const onExit = ({ code, signal }) => {
        cleanup()
        reject(new Error(`${label} exited (code ${code}, signal ${signal}) before it was ready`))
      }
      const cleanup = () => {
        clearTimeout(timer)
        const i = waiters.indexOf(onLine)
        if (i >= 0) waiters.splice(i, 1)
      }
      waiters.push(onLine)
      exited.then(onExit)
    })

  /** SIGTERM, SIGKILL after `graceMs`; resolves once the child is gone. */
  const stop = async (graceMs = 2_000) => {
    if (child.exitCode !== null || child.signalCode !== null) return exited
    child.kill(graceMs === 0 ? 'SIGKILL' : 'SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    const result = await exited
    clearTimeout(timer)
    return result
  }

  return { label, child, pid: child.pid, exited, waitForLine, stop, kill: () => stop(0) }
}

/** Synchronous last resort (process exit, signals): SIGKILL every child still alive. */
export function killAllChildren() {
  for (const child of live) {
    try {
      child.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
}
