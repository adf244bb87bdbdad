import { MemoryStore } from '../../src/storage/memory-store.js'
import type {
  FeedbackId,
  FeedbackRecord,
  JobPage,
  JobPatch,
  JobRecord,
  ListJobsFilter,
  Store,
} from '../../src/storage/store.js'

/**
 * A store that says it is durable and keeps everything in a MemoryStore: a node on it
 * behaves as a node on Redis does (it owns a job once stored, writes every result, acks
 * feedback in its store), without a Redis server. Tests extend it to hold, fail or watch
 * single calls, calling `super` to let them through.
 *
 * WHY a delegate rather than a MemoryStore subclass: MemoryStore is not durable, and says
 * so in its type; a store that claims durability is a different Store.
 */
export class DurableMemoryStore implements Store {
  readonly durable = true
  private readonly memory = new MemoryStore()

  open(): Promise<void> {
    return this.memory.open()
  }
  ping(): Promise<void> {
    return this.memory.ping()
  }
  saveJobs(jobs: readonly JobRecord[]): Promise<void> {
    return this.memory.saveJobs(jobs)
  }
  updateJob(id: string, patch: JobPatch): Promise<void> {
    return this.memory.updateJob(id, patch)
  }
  finishRun(id: string, patch: JobPatch, feedback: FeedbackRecord, remove: boolean): Promise<void> {
    return this.memory.finishRun(id, patch, feedback, remove)
  }
  getJob(id: string): Promise<JobRecord | undefined> {
    return this.memory.getJob(id)
  }
  removeJob(id: string): Promise<void> {
    return this.memory.removeJob(id)
  }
  listUnfinished(): Promise<JobRecord[]> {
    return this.memory.listUnfinished()
  }
  listJobs(filter?: ListJobsFilter): Promise<JobRecord[]> {
    return this.memory.listJobs(filter)
  }
  listFailedPage(cursor: string | undefined, count: number): Promise<JobPage> {
    return this.memory.listFailedPage(cursor, count)
  }
  listFeedback(): Promise<FeedbackRecord[]> {
    return this.memory.listFeedback()
  }
  ackFeedback(refs: readonly FeedbackId[]): Promise<void> {
    return this.memory.ackFeedback(refs)
  }
  close(): Promise<void> {
    return this.memory.close()
  }
}
