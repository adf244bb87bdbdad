/**
 * A bounded "seen lately" set in two generations: when the young one fills, it becomes the
 * old one and the previous old one is dropped. O(1) per add, unlike evicting the oldest
 * entry of one Set, which makes V8 walk over deleted slots.
 */
export class RecentIds {
  private young = new Set<string>()
  private old = new Set<string>()

  /** Remembers at least the last `generation` ids added, at most twice as many. */
  constructor(private readonly generation: number) {}

  add(id: string): void {
    this.young.add(id)
    if (this.young.size >= this.generation) {
      this.old = this.young
      this.young = new Set()
    }
  }

  has(id: string): boolean {
    return this.young.has(id) || this.old.has(id)
  }
}
