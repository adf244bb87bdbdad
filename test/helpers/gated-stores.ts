import type { JobRecord } from '../../src/storage/store.js'
import { DurableMemoryStore } from './durable-memory-store.js'

/** A durable store whose first `held` saveJobs calls wait until the test settles them. */
export class GatedStore extends DurableMemoryStore {
  readonly saves: { ids: string[]; resolve: () => void; reject: (e: Error) => void }[] = []
  private waiters: (() => void)[] = []
  constructor(private readonly held: number) {
    super()
  }
  override saveJobs(jobs: readonly JobRecord[]): Promise<void> {
    if (this.saves.length >= this.held) return super.saveJobs(jobs)
    return new Promise<void>((resolve, reject) => {
      const ids = jobs.map((j) => j.id)
      this.saves.push({
        ids,
        resolve: () => void super.saveJobs(jobs).then(resolve, reject),
        reject,
      })
      for (const w of this.waiters.splice(0)) w()
    })
  }
  async nthSave(n: number): Promise<GatedStore['saves'][number]> {
    while (this.saves.length < n) await new Promise<void>((r) => this.waiters.push(r))
    return this.saves[n - 1]!
  }
}

/** Holds the first call it is given until the test lets it through; later calls pass. */
export class FirstCallGate {
  private release: (() => void) | undefined
  private waiter: (() => void) | undefined

  pass<T>(call: () => Promise<T>): Promise<T> {
    if (this.release !== undefined) return call()
    return new Promise<T>((resolve, reject) => {
      this.release = () => void call().then(resolve, reject)
      this.waiter?.()
    })
  }

  /** Resolves once the first call came, with the function that lets it through. */
  async held(): Promise<() => void> {
    while (this.release === undefined) await new Promise<void>((r) => (this.waiter = r))
    return this.release
  }
}

/** A durable store that fails every save and ping while `down`. */
export class FlakyStore extends DurableMemoryStore {
  down = false
  override saveJobs(jobs: readonly JobRecord[]): Promise<void> {
    return this.down ? Promise.reject(new Error('store down')) : super.saveJobs(jobs)
  }
  override ping(): Promise<void> {
    return this.down ? Promise.reject(new Error('store down')) : super.ping()
  }
}
