/**
 * The clock every timer in the project goes through, so tests can inject a fake one and
 * drive time by hand instead of sleeping.
 */

/** What a native timer handle may offer; anything else about it is opaque. */
export interface TimerHandle {
  unref?(): unknown
}

export interface Clock {
  /** Wall-clock time in epoch milliseconds. */
  now(): number
  /** Arms a one-shot timer and returns its handle. */
  setTimeout(fn: () => void, ms: number): unknown
  /** Disarms a timer; a handle that already fired or was cleared is ignored. */
  clearTimeout(handle: unknown): void
}

/**
 * Node turns a delay above this into 1 ms (with a warning), so a timer for a far-future due
 * time must be clamped to it and re-armed on wake-up.
 */
export const MAX_TIMER_DELAY = 2 ** 31 - 1

/**
 * The globals are looked up on every call, not captured at import, so vitest fake timers
 * installed after this module loaded still take effect.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => {
    globalThis.clearTimeout(handle as Parameters<typeof globalThis.clearTimeout>[0])
  },
}

const resolved = Promise.resolve()

/**
 * Runs `fn` once the microtasks queued before it have run, as `queueMicrotask` does,
 * without its cost: Node wraps every `queueMicrotask` callback in an AsyncResource (an
 * object, a bound function and async-hook bookkeeping per call), paid several times per
 * job at one job in flight. A throw surfaces as an unhandled rejection, which Node treats
 * as an uncaught exception, as it treats a throw from `queueMicrotask`.
 */
export function afterMicrotasks(fn: () => void): void {
  void resolved.then(fn)
}
