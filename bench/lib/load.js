// How busy the machine is with other work: sampled between runs, when the benchmark's own
// processes are stopped or idle, so that a run disturbed by something else can be spotted.
// This process and its direct children (redis-server, nodes still exiting) do not count.
//
// Linux only (elsewhere it reports nothing). It sums the CPU time of every process from
// /proc/<pid>/stat rather than reading the idle counter of /proc/stat, because under some
// virtual machines the idle counter is only brought up to date when a CPU wakes up.
import { readdirSync, readFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'

const CLOCK_TICKS_PER_SECOND = 100

function processTimes() {
  let pids
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name))
  } catch {
    return undefined
  }
  const times = new Map()
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      // Fields after the command name, which is in parentheses and may hold spaces.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(pid) === process.pid || Number(rest[1]) === process.pid) continue
      times.set(pid, Number(rest[11]) + Number(rest[12]))
    } catch {
      // gone meanwhile
    }
  }
  return times
}

/** Fraction (0..1) of all CPUs that processes used over the next `ms`; undefined off Linux. */
export async function busyFraction(ms = 500) {
  const before = processTimes()
  const start = process.hrtime.bigint()
  await sleep(ms)
  const after = processTimes()
  if (before === undefined || after === undefined) return undefined
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  let ticks = 0
  for (const [pid, t] of after) ticks += t - (before.get(pid) ?? t)
  return Math.min(1, ticks / CLOCK_TICKS_PER_SECOND / seconds / cpus().length)
}

/** CPU time (user + system) that process `pid` has used, in ms; undefined off Linux. */
export function processCpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / CLOCK_TICKS_PER_SECOND
  } catch {
    return undefined
  }
}
