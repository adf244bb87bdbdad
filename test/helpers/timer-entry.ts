import type { TimerSlot } from '../../src/scheduling/timer-heap.js'

/** A timer-heap entry that a test tells apart by its name. */
export interface Entry extends TimerSlot {
  readonly name: string
}

/** A fresh entry, in no heap yet. */
export function entry(name: string): Entry {
  return { name, dueAt: 0, timerIndex: -1 }
}
