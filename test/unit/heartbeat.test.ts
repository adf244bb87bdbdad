import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { Heartbeat, type HeartbeatContext } from '../../src/protocol/heartbeat.js'

const INTERVAL = 1000
const STALL_TIMEOUT = 2500

/** The whole surface Heartbeat needs: a connection in a few fields, on vitest's fake clock. */
class FakeLink implements HeartbeatContext {
  receivedAt = Date.now()
  sentAt = Date.now()
  stalledSince = 0
  pings: number[] = []
  silent: { at: number; silentMs: number }[] = []
  stalled: { at: number; stalledMs: number }[] = []

  now = (): number => Date.now()
  lastReceivedAt = (): number => this.receivedAt
  lastSentAt = (): number => this.sentAt
  // A real connection's flush stamps sentAt; the ping is a write like any other.
  sendPing = (): void => {
    this.pings.push(Date.now())
    this.sentAt = Date.now()
  }
  onSilent = (silentMs: number): void => void this.silent.push({ at: Date.now(), silentMs })
  stalledMs = (): number => (this.stalledSince === 0 ? 0 : Date.now() - this.stalledSince)
  stallTimeoutMs = (): number => STALL_TIMEOUT
  onStalled = (stalledMs: number): void => void this.stalled.push({ at: Date.now(), stalledMs })
}

/** Advances fake time in `step` ms slices, running `each` after every slice. */
function advance(ms: number, step: number, each: () => void): void {
  for (let t = 0; t < ms; t += step) {
    vi.advanceTimersByTime(step)
    each()
  }
}

describe('Heartbeat', () => {
  let t0: number
  let link: FakeLink
  let heartbeat: Heartbeat

  beforeEach(() => {
    vi.useFakeTimers({ now: 1_700_000_000_000 })
    t0 = Date.now()
    link = new FakeLink()
    heartbeat = new Heartbeat(link, INTERVAL)
  })

  afterEach(() => {
    heartbeat.stop()
    vi.useRealTimers()
  })

  it('pings only after a whole quiet interval', () => {
    heartbeat.start()
    vi.advanceTimersByTime(INTERVAL - 1)
    expect(link.pings).toEqual([])
    vi.advanceTimersByTime(1)
    expect(link.pings).toEqual([t0 + INTERVAL])
    // The peer answers, so it is never silent; we go on pinging once per quiet interval.
    link.receivedAt = Date.now()
    vi.advanceTimersByTime(INTERVAL)
    expect(link.pings).toEqual([t0 + INTERVAL, t0 + 2 * INTERVAL])
    expect(link.silent).toEqual([])
  })

  it('does not ping when we sent something recently', () => {
    heartbeat.start()
    // We write (and hear back) every 300 ms: a busy link needs no pings.
    advance(10 * INTERVAL, 300, () => {
      link.sentAt = Date.now()
      link.receivedAt = Date.now()
    })
    expect(link.pings).toEqual([])
    expect(link.silent).toEqual([])
    expect(link.stalled).toEqual([])
  })

  it('skips the ping of an interval in which we wrote, and pings in the next quiet one', () => {
    heartbeat.start()
    vi.advanceTimersByTime(500)
    link.sentAt = Date.now() // a frame went out at t0 + 500
    link.receivedAt = Date.now()
    vi.advanceTimersByTime(500) // tick at t0 + 1000: only 500 ms quiet
    expect(link.pings).toEqual([])
    vi.advanceTimersByTime(INTERVAL) // tick at t0 + 2000: 1500 ms quiet
    expect(link.pings).toEqual([t0 + 2 * INTERVAL])
  })

  it('calls onSilent once the peer has been silent for 3 intervals, and then stops', () => {
    heartbeat.start()
    vi.advanceTimersByTime(3 * INTERVAL - 1)
    expect(link.silent).toEqual([])
    // It kept pinging the silent peer meanwhile.
    expect(link.pings).toEqual([t0 + INTERVAL, t0 + 2 * INTERVAL])
    vi.advanceTimersByTime(1)
    expect(link.silent).toEqual([{ at: t0 + 3 * INTERVAL, silentMs: 3 * INTERVAL }])
    expect(vi.getTimerCount()).toBe(0)
    vi.advanceTimersByTime(10 * INTERVAL)
    expect(link.silent.length).toBe(1)
    expect(link.pings.length).toBe(2)
  })

  it('counts silence from the last frame received, not from start', () => {
    heartbeat.start()
    vi.advanceTimersByTime(2500)
    link.receivedAt = Date.now() // t0 + 2500
    vi.advanceTimersByTime(3000) // ticks at 3000, 4000, 5000: silent 500, 1500, 2500 ms
    expect(link.silent).toEqual([])
    vi.advanceTimersByTime(INTERVAL) // tick at 6000: silent 3500 ms
    expect(link.silent).toEqual([{ at: t0 + 6000, silentMs: 3500 }])
  })

  it('honours a custom maxMissed', () => {
    heartbeat = new Heartbeat(link, INTERVAL, 5)
    heartbeat.start()
    vi.advanceTimersByTime(4 * INTERVAL)
    expect(link.silent).toEqual([])
    vi.advanceTimersByTime(INTERVAL)
    expect(link.silent).toEqual([{ at: t0 + 5 * INTERVAL, silentMs: 5 * INTERVAL }])
  })

  it('calls onStalled once our writes waited for the stall timeout, even though the peer talks', () => {
    heartbeat.start()
    vi.advanceTimersByTime(100)
    link.stalledSince = Date.now() // t0 + 100: the socket stopped taking our writes
    advance(2 * INTERVAL, 100, () => (link.receivedAt = Date.now()))
    // Ticks at 1000 and 2000: stalled 900 and 1900 ms, under 2500.
    expect(link.stalled).toEqual([])
    advance(INTERVAL, 100, () => (link.receivedAt = Date.now()))
    expect(link.stalled).toEqual([{ at: t0 + 3 * INTERVAL, stalledMs: 2900 }])
    expect(link.silent).toEqual([])
    expect(vi.getTimerCount()).toBe(0)
  })

  it('does not call onStalled when the writes drain in time', () => {
    heartbeat.start()
    link.stalledSince = Date.now()
    advance(2 * INTERVAL, 100, () => (link.receivedAt = Date.now()))
    link.stalledSince = 0 // 'drain'
    advance(5 * INTERVAL, 100, () => (link.receivedAt = Date.now()))
    expect(link.stalled).toEqual([])
  })

  it('stop() ends the ticks, and start() twice arms one timer', () => {
    heartbeat.start()
    heartbeat.start()
    expect(vi.getTimerCount()).toBe(1)
    vi.advanceTimersByTime(INTERVAL)
    expect(link.pings.length).toBe(1)
    heartbeat.stop()
    expect(vi.getTimerCount()).toBe(0)
    vi.advanceTimersByTime(10 * INTERVAL)
    expect(link.pings.length).toBe(1)
    expect(link.silent).toEqual([])
  })

  it('does nothing with an interval of 0', () => {
    heartbeat = new Heartbeat(link, 0)
    heartbeat.start()
    expect(vi.getTimerCount()).toBe(0)
    vi.advanceTimersByTime(60_000)
    expect(link.pings).toEqual([])
    expect(link.silent).toEqual([])
  })
})
