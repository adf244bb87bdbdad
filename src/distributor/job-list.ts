import type { TrackedJob } from './tracked-job.js'

/**
 * The jobs one node holds for the distributor (sent and not yet accepted, or accepted by a
 * memory-storage node and not finished): what goes back to the queue if the node drops.
 * Linked through the jobs themselves, so adding and removing costs no hashing; this is on
 * the path of every job.
 */
export class JobList {
  private head: TrackedJob | undefined
  private count = 0

  get size(): number {
    return this.count
  }

  add(job: TrackedJob): void {
    job.list?.remove(job)
    job.list = this
    job.prev = undefined
    job.next = this.head
    if (this.head !== undefined) this.head.prev = job
    this.head = job
    this.count++
  }

  remove(job: TrackedJob): void {
    if (job.list !== this) return
    if (job.prev !== undefined) job.prev.next = job.next
    else this.head = job.next
    if (job.next !== undefined) job.next.prev = job.prev
    job.list = job.prev = job.next = undefined
    this.count--
  }

  /** Empties the list and returns what it held. */
  drain(): TrackedJob[] {
    const out: TrackedJob[] = []
    for (let job = this.head; job !== undefined; ) {
      const next = job.next
      job.list = job.prev = job.next = undefined
      out.push(job)
      job = next
    }
    this.head = undefined
    this.count = 0
    return out
  }
}
