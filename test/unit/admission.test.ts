import { describe, expect, it } from 'vitest'
import { Admission, notAcceptingReason } from '../../src/node/admission.js'
import { NotAcceptingReason } from '../../src/protocol/messages.js'
import { LogCapture } from '../helpers/log-capture.js'

function setUp(): { admission: Admission; told: unknown[]; node: { running: boolean } } {
  const node = { running: true }
  const told: unknown[] = []
  const admission: Admission = new Admission({
    log: new LogCapture().logger,
    running: () => node.running,
    changed: () => told.push(admission.message()),
  })
  return { admission, told, node }
}

describe('a node’s admission', () => {
  it('names the first reason that holds: draining, then store down, then quiet', () => {
    expect(notAcceptingReason(false, false)).toBe(NotAcceptingReason.DRAINING)
    expect(notAcceptingReason(true, false)).toBe(NotAcceptingReason.STORE_DOWN)
    expect(notAcceptingReason(true, true)).toBe(NotAcceptingReason.QUIET)
  })

  it('tells every change of accepting or of its reason, once, and refuses with the reason', () => {
    const { admission, told, node } = setUp()
    expect(admission.refusal()).toBeUndefined()
    admission.quiet(true)
    admission.quiet(true)
    expect(told).toEqual([{ type: 'state', accepting: false, reason: NotAcceptingReason.QUIET }])
    // The store goes down while quiet: the reason changes, and is told.
    admission.storeChanged(false)
    expect(told.at(-1)).toEqual({ type: 'state', accepting: false, reason: NotAcceptingReason.STORE_DOWN })
    expect(admission.refusal()).toBe('node storage unavailable')
    // Back up, still quiet.
    admission.storeChanged(true)
    expect(told.at(-1)).toEqual({ type: 'state', accepting: false, reason: NotAcceptingReason.QUIET })
    admission.quiet(false)
    expect(told.at(-1)).toEqual({ type: 'state', accepting: true })
    expect(admission.accepting).toBe(true)
    node.running = false
    admission.drain()
    expect(told.at(-1)).toEqual({ type: 'state', accepting: false, reason: NotAcceptingReason.DRAINING })
    expect(told).toHaveLength(5)
  })

  it('a store back up does not reopen a node that is not running', () => {
    const { admission, told, node } = setUp()
    admission.storeChanged(false)
    node.running = false
    admission.storeChanged(true)
    expect(admission.accepting).toBe(false)
    expect(told).toHaveLength(1)
  })
})
