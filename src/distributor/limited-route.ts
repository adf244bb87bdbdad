import type { NameStats } from './job-stats.js'
import { keyOf, type KeyWaker, type NameLimit } from './limits.js'
import { Route } from './route.js'
import type { TrackedJob } from './tracked-job.js'

/** One key's waiting jobs, in order (a Route used as a plain line), and whether it is in the ring. */
interface KeyLine {
  readonly key: string
  readonly jobs: Route
  inRing: boolean
}

/**
 * The route of a limited job name (limits.ts): its jobs wait by `limitKey`, each key's in
 * order, and the keys take turns, one job each, round-robin, so that a key with a hundred
 * thousand jobs waiting delays another key's first job by one turn, not by its backlog.
 *
 * INVARIANT: the ring holds the keys that have jobs and, as far as this route knows, a free
 * slot; a key out of the ring with jobs is parked (its slots are taken) until `wake`. A pass
 * therefore never looks at a blocked key twice: it costs one look per key that became
 * blocked, not a scan of the blocked keys.
 */
export class LimitedRoute implements KeyWaker {
  /** Jobs set aside from this route for their size (see PendingQueue.setAside). */
  asideRoute: Route | undefined = undefined
  private readonly lines = new Map<string, KeyLine>()
  private readonly ring = new Ring<KeyLine>()
  /** Jobs in its lines (cancelled ones not yet dropped included, as Route.length). */
  private count = 0

  constructor(
    readonly key: string,
    readonly name: string,
    readonly node: string | undefined,
    readonly notNode: string | undefined,
    readonly stats: NameStats,
    readonly limit: NameLimit,
  ) {
    limit.routes.add(this)
  }

  get length(): number {
    return this.count
  }

  push(job: TrackedJob): void {
    const line = this.lineOf(keyOf(job))
    line.jobs.push(job)
    this.count++
    // A parked key's new job waits with the others; a key's first job gets a turn, where a
    // full key is parked at once (and its job seen as held by the limit).
    if (!line.inRing && (line.jobs.length === 1 || this.limit.hasRoom(line.key))) this.enter(line)
  }

  /** Puts jobs back at the front of their keys' lines, oldest first. */
  unshift(jobs: TrackedJob[]): void {
    const byKey = new Map<string, TrackedJob[]>()
    for (const job of jobs) {
      const key = keyOf(job)
      let list = byKey.get(key)
      if (list === undefined) byKey.set(key, (list = []))
      list.push(job)
    }
    for (const [key, list] of byKey) {
      const line = this.lineOf(key)
      line.jobs.unshift(list)
      this.count += list.length
      this.enter(line)
    }
  }

  /**
   * The line whose turn it is, its next job ready to `peekLine`; undefined when no key with
   * jobs may have a free slot. Drained lines leave here.
   */
  turn(): KeyLine | undefined {
    for (;;) {
      const line = this.ring.peek()
      if (line === undefined) return undefined
      if (this.peekLine(line) !== undefined) return line
      this.ring.shift()
      line.inRing = false
      this.lines.delete(line.key)
    }
  }

  /** The next job of `line` still waiting (cancelled ones before it dropped). */
  peekLine(line: KeyLine): TrackedJob | undefined {
    const before = line.jobs.length
    const job = line.jobs.peek()
    this.count -= before - line.jobs.length
    return job
  }

  /** The line whose turn it is waits for a slot of its key: out of the ring until `wake`. */
  park(): void {
    const line = this.ring.shift()
    if (line !== undefined) line.inRing = false
  }

  /** Takes the next job of the line whose turn it is (`turn` found it); the line goes to the back. */
  take(): TrackedJob | undefined {
    const line = this.ring.shift()
    if (line === undefined) return undefined
    const job = line.jobs.shift()
    this.count--
    if (line.jobs.length > 0) this.ring.push(line)
    else {
      line.inRing = false
      this.lines.delete(line.key)
    }
    return job
  }

  /** A slot of `key` freed: its line, if parked with jobs, takes turns again. */
  wake(key: string): void {
    const line = this.lines.get(key)
    if (line !== undefined && !line.inRing) this.enterOrDrop(line)
  }

  /** Jobs waiting of `key` (of every key, undefined), cancelled ones not yet dropped included. */
  waiting(key: string | undefined): number {
    return key === undefined ? this.count : (this.lines.get(key)?.jobs.length ?? 0)
  }

  /** The limit was raised: every parked line takes turns again (a pass parks the full ones). */
  wakeAll(): void {
    for (const line of this.lines.values()) if (!line.inRing) this.enterOrDrop(line)
  }

  /**
   * The job that has waited longest at the head of a key's line: for the metrics and the
   * admin API, one look per key (never on the dispatch path).
   */
  peek(): TrackedJob | undefined {
    let oldest: TrackedJob | undefined
    for (const line of this.lines.values()) {
      const head = this.peekLine(line)
      if (head !== undefined && (oldest === undefined || head.pendingSince < oldest.pendingSince)) oldest = head
    }
    return oldest
  }

  /** Jobs `offset` to `offset + limit`, key by key (with those set aside after), and how many wait. */
  page(offset: number, limit: number): { jobs: TrackedJob[]; total: number } {
    const jobs: TrackedJob[] = []
    let skip = offset
    for (const line of this.lines.values()) {
      if (jobs.length >= limit) break
      if (skip >= line.jobs.length) {
        skip -= line.jobs.length
        continue
      }
      jobs.push(...line.jobs.page(skip, limit - jobs.length).jobs)
      skip = 0
    }
    const aside = this.asideRoute
    if (jobs.length < limit && aside !== undefined) jobs.push(...aside.page(skip, limit - jobs.length).jobs)
    return { jobs, total: this.count + (aside?.length ?? 0) }
  }

  /** Takes every job still waiting, in enqueue order (the name's limit changed). */
  takeAll(): TrackedJob[] {
    const jobs: TrackedJob[] = []
    for (const line of this.lines.values()) for (const job of line.jobs.takeAll()) jobs.push(job)
    this.lines.clear()
    this.ring.clear()
    this.count = 0
    return jobs.sort((a, b) => a.seq - b.seq)
  }

  /** Jobs waiting here because their key's slots (or the name's) are taken or its rate spent, and how many keys. */
  held(now: number): { jobs: number; keys: number } {
    let jobs = 0
    let keys = 0
    for (const line of this.lines.values()) {
      if (line.jobs.length === 0 || !this.limit.isHeld(line.key, now)) continue
      jobs += line.jobs.length
      keys++
    }
    return { jobs, keys }
  }

  /** The route left the queue: its limit stops waking it. */
  detach(): void {
    this.limit.routes.delete(this)
  }

  private lineOf(key: string): KeyLine {
    let line = this.lines.get(key)
    if (line === undefined) {
      line = { key, jobs: new Route(key, this.name, this.node, this.notNode, this.stats), inRing: false }
      this.lines.set(key, line)
    }
    return line
  }

  private enter(line: KeyLine): void {
    if (line.inRing) return
    line.inRing = true
    this.ring.push(line)
  }

  private enterOrDrop(line: KeyLine): void {
    if (this.peekLine(line) === undefined) this.lines.delete(line.key)
    else this.enter(line)
  }
}

/** A FIFO of the keys taking turns: a growable circular buffer, O(1) at both ends used. */
class Ring<T> {
  private items: (T | undefined)[] = new Array(16)
  private head = 0
  private size = 0

  push(item: T): void {
    if (this.size === this.items.length) this.grow()
    this.items[(this.head + this.size) & (this.items.length - 1)] = item
    this.size++
  }

  peek(): T | undefined {
    return this.size === 0 ? undefined : this.items[this.head]
  }

  shift(): T | undefined {
    if (this.size === 0) return undefined
    const item = this.items[this.head]
    this.items[this.head] = undefined
    this.head = (this.head + 1) & (this.items.length - 1)
    this.size--
    return item
  }

  clear(): void {
    this.items = new Array(16)
    this.head = 0
    this.size = 0
  }

  private grow(): void {
    const next: (T | undefined)[] = new Array(this.items.length * 2)
    for (let i = 0; i < this.size; i++) next[i] = this.items[(this.head + i) & (this.items.length - 1)]
    this.items = next
    this.head = 0
  }
}
