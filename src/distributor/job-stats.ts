/**
 * What the distributor counts per job name, for its metrics (src/admin/metrics). Plain
 * fields that the code increments where a job moves; Prometheus reads them only when it
 * scrapes, so a job costs a few increments here and never a labelled metric call.
 */
export class NameStats {
  /** `enqueue` calls that were accepted. */
  enqueued = 0
  /** Jobs put in a dispatch frame (a job sent again after a lost node counts again). */
  dispatched = 0
  /** Results delivered (to a closure, `done` or a named handler): one per run, by outcome. */
  succeeded = 0
  failed = 0
  cancelled = 0
  /** Results for jobs held nowhere here, with no named handler for them. */
  orphans = 0
  /** Jobs waiting in the pending queue now (PendingQueue keeps it). */
  pending = 0

  constructor(readonly name: string) {}
}

/**
 * Every job name's stats, made on first use. Bounded by the job names an application
 * enqueues, never by job ids.
 */
export class JobStats {
  private readonly byName = new Map<string, NameStats>()
  /** The stats last asked for: a burst of one job name costs no Map lookup. */
  private last: NameStats | undefined

  of(name: string): NameStats {
    const last = this.last
    if (last !== undefined && last.name === name) return last
    let stats = this.byName.get(name)
    if (stats === undefined) this.byName.set(name, (stats = new NameStats(name)))
    this.last = stats
    return stats
  }

  values(): IterableIterator<NameStats> {
    return this.byName.values()
  }
}
