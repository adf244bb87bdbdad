import { EventEmitter } from 'node:events'
import { coerceError } from './errors.js'

type Listener<A> = (payload: A) => void

/**
 * An EventEmitter whose event names and payloads are declared in a map. Each event has
 * one payload object, so adding a field never breaks a listener.
 */
export class TypedEmitter<M extends { [K in keyof M]: object }> {
  private readonly emitter = new EventEmitter()

  constructor() {
    // Tests and tools attach many listeners on purpose; the default cap would only warn.
    this.emitter.setMaxListeners(0)
  }

  on<K extends keyof M & string>(event: K, listener: Listener<M[K]>): this {
    this.emitter.on(event, listener)
    return this
  }

  once<K extends keyof M & string>(event: K, listener: Listener<M[K]>): this {
    this.emitter.once(event, listener)
    return this
  }

  off<K extends keyof M & string>(event: K, listener: Listener<M[K]>): this {
    this.emitter.off(event, listener)
    return this
  }

  /** Resolves with the payload of the next `event` that satisfies `filter`. */
  waitFor<K extends keyof M & string>(event: K, filter: (payload: M[K]) => boolean = () => true): Promise<M[K]> {
    return new Promise((resolve) => {
      const listener = (payload: M[K]): void => {
        if (!filter(payload)) return
        this.emitter.off(event, listener)
        resolve(payload)
      }
      this.emitter.on(event, listener)
    })
  }

  listenerCount<K extends keyof M & string>(event: K): number {
    return this.emitter.listenerCount(event)
  }

  /**
   * Emits to every listener; a listener that throws is reported through `onListenerError`
   * and never breaks the emitter's own work. Per-job events are guarded with
   * `listenerCount` at the call site, so that nobody listening costs no payload object.
   */
  protected safeEmit<K extends keyof M & string>(event: K, payload: M[K]): void {
    if (this.emitter.listenerCount(event) === 0) return
    for (const listener of this.emitter.rawListeners(event) as Listener<M[K]>[]) {
      try {
        listener.call(this, payload)
      } catch (err) {
        this.onListenerError(event, coerceError(err))
      }
    }
  }

  protected onListenerError(_event: string, _err: Error): void {}
}
