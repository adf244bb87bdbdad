import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { DEFAULT_CONFIG, mergeConfig, type Config } from '../../src/config.js'
import { Distributor } from '../../src/distributor/distributor.js'
import type { DistributorOptions } from '../../src/distributor/options.js'
import { Node } from '../../src/node/node.js'
import type { NodeOptions } from '../../src/node/options.js'
import type { Clock } from '../../src/scheduling/clock.js'

export const FIXTURE_JOBS = fileURLToPath(new URL('../fixtures/jobs', import.meta.url))
export const JR_NODE_BIN = fileURLToPath(new URL('../../bin/jr-node.js', import.meta.url))

/** Closes everything a test started, in reverse order, even when the test failed. */
export class Resources {
  private readonly releasers: (() => Promise<unknown> | unknown)[] = []

  add<T>(value: T, release: (value: T) => Promise<unknown> | unknown): T {
    this.releasers.push(() => release(value))
    return value
  }

  async releaseAll(): Promise<void> {
    for (const release of this.releasers.splice(0).reverse()) {
      try {
        await release()
      } catch {
        // best effort: one failed release must not keep the rest alive
      }
    }
  }
}

export async function startDistributor(res: Resources, options: DistributorOptions = {}): Promise<Distributor> {
  const distributor = new Distributor({ port: 0, heartbeatMs: 1000, ...options })
  res.add(distributor, (d) => d.close())
  return distributor.start()
}

export function config(overrides: Partial<Config> = {}): Config {
  return mergeConfig({ ...DEFAULT_CONFIG }, overrides)
}

/** Starts an in-process node and resolves once it is connected to `distributor`. */
export async function startNode(
  res: Resources,
  distributor: Distributor,
  options: Partial<NodeOptions> & { name: string },
  settings: Partial<Config> = {},
  /** The node's clock, when a test moves its time. */
  clock?: Clock,
): Promise<Node> {
  const node = new Node(
    { distributors: [`127.0.0.1:${distributor.port}`], jobDirectory: FIXTURE_JOBS, ...options },
    config(settings),
    clock,
  )
  res.add(node, (n) => n.close({ force: true }))
  const connected = distributor.waitFor('node:connect', (e) => e.node === options.name)
  await node.start()
  await connected
  return node
}

export interface NodeProcess {
  child: ChildProcess
  name: string
  exited: Promise<number | null>
  output(): string
  /** Resolves once the output (stdout and stderr) matches `pattern`. */
  waitForOutput(pattern: RegExp): Promise<void>
}

/** Spawns the real `jr-node` executable. */
export function spawnNode(res: Resources, args: string[], env: NodeJS.ProcessEnv = {}): NodeProcess {
  const child = spawn(process.execPath, [JR_NODE_BIN, ...args], {
    env: { ...process.env, JR_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  const nameIndex = args.indexOf('--name')
  const waitForOutput = (pattern: RegExp): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => {
        if (!pattern.test(output)) return
        child.stdout?.off('data', check)
        child.stderr?.off('data', check)
        resolve()
      }
      child.stdout?.on('data', check)
      child.stderr?.on('data', check)
      check()
    })
  const proc: NodeProcess = {
    child,
    name: nameIndex >= 0 ? (args[nameIndex + 1] ?? '') : '',
    exited,
    output: () => output,
    waitForOutput,
  }
  res.add(proc, async (p) => {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill('SIGKILL')
      await p.exited
    }
  })
  return proc
}

/** jr-node arguments for a node `name` with the fixture jobs that dials the distributors on `ports` of 127.0.0.1. */
export function nodeArgs(name: string, ports: number[], extra: string[] = []): string[] {
  return [
    '--name',
    name,
    ...ports.flatMap((p) => ['--distributor', `127.0.0.1:${p}`]),
    '--jobs',
    FIXTURE_JOBS,
    ...extra,
  ]
}

/** Spawns jr-node against `distributor` and resolves once it has connected. */
export async function spawnConnectedNode(
  res: Resources,
  distributor: Distributor,
  name: string,
  extra: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<NodeProcess> {
  const connected = distributor.waitFor('node:connect', (e) => e.node === name)
  const proc = spawnNode(res, nodeArgs(name, [distributor.port], extra), env)
  await Promise.race([
    connected,
    proc.exited.then((code) => {
      throw new Error(`jr-node ${name} exited with ${code} before connecting:\n${proc.output()}`)
    }),
  ])
  return proc
}

/** Resolves once every one of `handles` has been accepted by a node. */
export function allAccepted(d: Distributor, handles: readonly { id: string }[]): Promise<void> {
  const waiting = new Set(handles.map((h) => h.id))
  return new Promise((resolve) => {
    const listener = (e: { id: string }): void => {
      if (waiting.delete(e.id) && waiting.size === 0) {
        d.off('job:accepted', listener)
        resolve()
      }
    }
    d.on('job:accepted', listener)
  })
}
