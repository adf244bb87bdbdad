import { BucketCounts } from '../admin/metrics/collected-metric.js'

/**
 * Upper bounds of the wait histogram's buckets, in seconds: from due to started, a few
 * milliseconds on a node with room, up to an hour behind a backlog or a node that was down.
 */
export const WAIT_BUCKETS: readonly number[] = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
]

/** Upper bounds of the run histogram's buckets, in seconds: a no-op chain to a half-hour batch. */
export const RUN_BUCKETS: readonly number[] = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800,
]

/** What a node counts per job name, read by its metrics when scraped (src/admin/metrics). */
export class NodeNameStats {
  /** Failed attempts followed by another (`job:retry`). */
  retries = 0
  /** Per attempt, from its due time to its start, in seconds. */
  readonly wait = new BucketCounts(WAIT_BUCKETS)
  /** Per attempt, from its start to the end of its chain, in seconds. */
  readonly run = new BucketCounts(RUN_BUCKETS)

  constructor(readonly name: string) {}
}

/** Every job name's stats on a node, made on first use; bounded by the names it runs. */
export class NodeJobStats {
  private readonly byName = new Map<string, NodeNameStats>()
  /** The stats last asked for: a burst of one job name costs no Map lookup. */
  private last: NodeNameStats | undefined

  of(name: string): NodeNameStats {
    const last = this.last
    if (last !== undefined && last.name === name) return last
    let stats = this.byName.get(name)
    if (stats === undefined) this.byName.set(name, (stats = new NodeNameStats(name)))
    this.last = stats
    return stats
  }

  values(): IterableIterator<NodeNameStats> {
    return this.byName.values()
  }
}
