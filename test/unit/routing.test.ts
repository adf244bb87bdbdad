import { describe, expect, it } from 'vitest'
import { FRAME_ENVELOPE_BYTES } from '../../src/config.js'
import { decide, decisionSlot, fits, type Candidate, type Destination } from '../../src/distributor/routing.js'

const MiB = 1024 * 1024

/** A connected node as the rule sees it: runs 'w', window 10, room, a 1 MiB frame limit, unless told otherwise. */
function node(name: string, over: Partial<Candidate> = {}): Candidate {
  return { name, jobs: new Set(['w']), load: 0, window: 10, hasRoom: true, maxFrameSize: MiB, ...over }
}

function to(name = 'w', where: { node?: string; notNode?: string } = {}): Destination {
  return { name, node: where.node, notNode: where.notNode }
}

/** decide() with the preferred candidate found by name, as NodePool's index finds it. */
function route(
  candidates: Candidate[],
  dest: Destination,
  opts: { bytes?: number; strict?: boolean; turn?: number } = {},
) {
  const preferred = dest.node === undefined ? undefined : candidates.find((c) => c.name === dest.node)
  return decide(candidates, preferred, dest, opts.bytes ?? 100, opts.strict ?? false, opts.turn ?? 0)
}

/** Bytes that fit a frame limit of `limit`, and one more that does not. */
const fitting = (limit: number): number => limit - FRAME_ENVELOPE_BYTES
const over = (limit: number): number => fitting(limit) + 1

describe('decide: which node a job goes to', () => {
  it('gives to the least-loaded node by load relative to window', () => {
    const a = node('a', { load: 50, window: 10 })
    const b = node('b', { load: 60, window: 20 })
    const c = node('c', { load: 30, window: 5 })
    expect(route([a, b, c], to())).toMatchObject({ kind: 'give', node: b })
  })

  it('passes over nodes without room, without the job, or named notNode', () => {
    const full = node('full', { hasRoom: false })
    const other = node('other', { jobs: new Set(['x']) })
    const banned = node('banned')
    const busy = node('busy', { load: 90 })
    expect(route([full, other, banned, busy], to('w', { notNode: 'banned' }))).toMatchObject({
      kind: 'give',
      node: busy,
    })
  })

  it('rotates the tie-break between equally loaded nodes: each scan starts one further', () => {
    const nodes = [node('a'), node('b'), node('c')]
    const picked = [0, 1, 2, 3].map((turn) => route(nodes, to(), { turn }))
    expect(picked.map((d) => d.node?.name)).toEqual(['a', 'b', 'c', 'a'])
    expect(picked.map((d) => d.turn)).toEqual([1, 2, 3, 4])
  })

  describe("a job's node", () => {
    it('wins when it qualifies, even when busier, and costs no turn of the tie-break', () => {
      const idle = node('idle')
      const chosen = node('chosen', { load: 80 })
      expect(route([idle, chosen], to('w', { node: 'chosen' }), { turn: 7 })).toEqual({
        kind: 'give',
        node: chosen,
        turn: 7,
      })
    })

    it('without room: another node takes the job, unless strict, when the job waits for it', () => {
      const idle = node('idle')
      const chosen = node('chosen', { hasRoom: false })
      expect(route([idle, chosen], to('w', { node: 'chosen' }))).toMatchObject({ kind: 'give', node: idle })
      expect(route([idle, chosen], to('w', { node: 'chosen' }), { strict: true })).toMatchObject({
        kind: 'wait',
        node: undefined,
      })
    })

    it('not connected: another node takes the job, unless strict', () => {
      const idle = node('idle')
      expect(route([idle], to('w', { node: 'gone' }))).toMatchObject({ kind: 'give', node: idle })
      expect(route([idle], to('w', { node: 'gone' }), { strict: true })).toMatchObject({ kind: 'wait' })
    })

    it('that is also its notNode never gets it', () => {
      const both = node('both')
      const idle = node('idle', { load: 50 })
      expect(route([both, idle], to('w', { node: 'both', notNode: 'both' }))).toMatchObject({
        kind: 'give',
        node: idle,
      })
    })
  })

  describe('frame limits', () => {
    it('a node whose limit the job exceeds is passed over like one without the job', () => {
      const small = node('small', { maxFrameSize: 64 * 1024 })
      const big = node('big', { load: 90 })
      expect(route([small, big], to(), { bytes: over(64 * 1024) })).toMatchObject({ kind: 'give', node: big })
      expect(route([small, big], to(), { bytes: fitting(64 * 1024) })).toMatchObject({ kind: 'give', node: small })
    })

    it('too large for every node with room, not for a busy one: set aside, so that smaller jobs go on', () => {
      const small = node('small', { maxFrameSize: 64 * 1024 })
      const big = node('big', { hasRoom: false })
      expect(route([small, big], to(), { bytes: over(64 * 1024) })).toEqual({ kind: 'aside', node: undefined, turn: 2 })
    })

    it('too large for a busy node that could take it, and no node has room: waits', () => {
      const small = node('small', { maxFrameSize: 64 * 1024, hasRoom: false })
      const big = node('big', { hasRoom: false })
      expect(route([small, big], to(), { bytes: over(64 * 1024) })).toMatchObject({ kind: 'wait', node: undefined })
    })

    it('too large for every connected node that runs it: fails, naming the largest limit among them', () => {
      const small = node('small', { maxFrameSize: 64 * 1024 })
      const mid = node('mid', { maxFrameSize: 256 * 1024, hasRoom: false })
      const huge = node('huge', { maxFrameSize: 16 * MiB, jobs: new Set(['other']) })
      const banned = node('banned', { maxFrameSize: 16 * MiB })
      const decision = route([small, mid, huge, banned], to('w', { notNode: 'banned' }), { bytes: over(256 * 1024) })
      expect(decision).toMatchObject({ kind: 'fail', node: mid })
    })

    it('strict with a node: only that node counts, for room and for size', () => {
      const chosen = node('chosen', { maxFrameSize: 64 * 1024 })
      const big = node('big', { maxFrameSize: 16 * MiB })
      expect(route([chosen, big], to('w', { node: 'chosen' }), { bytes: over(64 * 1024), strict: true })).toMatchObject(
        { kind: 'fail', node: chosen },
      )
      expect(route([chosen, big], to('w', { node: 'chosen' }), { bytes: over(64 * 1024) })).toMatchObject({
        kind: 'give',
        node: big,
      })
    })

    it('fits: the job and the frame envelope within the limit', () => {
      expect(fits(node('n', { maxFrameSize: 4096 }), 4096 - FRAME_ENVELOPE_BYTES)).toBe(true)
      expect(fits(node('n', { maxFrameSize: 4096 }), 4097 - FRAME_ENVELOPE_BYTES)).toBe(false)
    })
  })

  it('no node runs the job, or none has room: waits', () => {
    expect(route([], to())).toMatchObject({ kind: 'wait', node: undefined })
    expect(route([node('other', { jobs: new Set(['x']) })], to())).toMatchObject({ kind: 'wait' })
    expect(route([node('a', { hasRoom: false }), node('b', { hasRoom: false })], to())).toMatchObject({
      kind: 'wait',
      node: undefined,
    })
  })

  it('writes into the slot it is given, so that a dispatch pass makes no object per job', () => {
    const slot = decisionSlot<Candidate>()
    const a = node('a')
    const first = decide([a], undefined, to(), 100, false, 0, slot)
    expect(first).toBe(slot)
    expect(first).toEqual({ kind: 'give', node: a, turn: 1 })
    expect(decide([], undefined, to(), 100, false, 1, slot)).toBe(slot)
    expect(slot).toEqual({ kind: 'wait', node: undefined, turn: 2 })
  })
})
