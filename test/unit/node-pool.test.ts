import { describe, expect, it } from 'vitest'
import { FRAME_ENVELOPE_BYTES } from '../../src/config.js'
import { NodePool } from '../../src/distributor/node-pool.js'
import { fits } from '../../src/distributor/routing.js'
import { NodeSession } from '../../src/distributor/node-session.js'
import { INSTANT_LOAD } from '../../src/distributor/tracked-job.js'
import type { Connection } from '../../src/protocol/connection.js'

interface SessionShape {
  jobs?: string[]
  window?: number
  /** In jobs: whole instant jobs counted against the window. */
  jobsHeld?: number
  maxFrameSize?: number
  accepting?: boolean
  backlogged?: boolean
  state?: NodeSession['state']
}

/** A READY session as the handshake leaves it; of its connection the pool reads only `backlogged`. */
function session(name: string, shape: SessionShape = {}): NodeSession {
  const s = new NodeSession(() => {})
  s.state = shape.state ?? 'ready'
  s.name = name
  s.jobs = new Set(shape.jobs ?? ['work'])
  s.window = shape.window ?? 10
  s.load = (shape.jobsHeld ?? 0) * INSTANT_LOAD
  s.maxFrameSize = shape.maxFrameSize ?? 1024 * 1024
  s.accepting = shape.accepting ?? true
  s.connection = { backlogged: shape.backlogged ?? false } as Connection
  return s
}

function pool(...sessions: NodeSession[]): NodePool {
  const p = new NodePool()
  for (const s of sessions) p.add(s)
  return p
}

/** pick() for a small job of `name` with no preference. */
const anyNode = (p: NodePool, name = 'work', notNode?: string): string | undefined =>
  p.pick(name, undefined, notNode, false, 100)?.name

describe('NodePool.pick', () => {
  it("goes only to a node that has the job's definition", () => {
    const p = pool(session('a', { jobs: ['other'] }), session('b', { jobs: ['work'], jobsHeld: 9 }))
    for (let i = 0; i < 3; i++) expect(anyNode(p)).toBe('b')
    expect(anyNode(p, 'unknown')).toBeUndefined()
  })

  it('never goes to the notNode, even when it is the only node with the definition', () => {
    expect(anyNode(pool(session('a')), 'work', 'a')).toBeUndefined()
    const p = pool(session('a'), session('b', { jobsHeld: 9 }))
    for (let i = 0; i < 3; i++) expect(anyNode(p, 'work', 'a')).toBe('b')
  })

  it('takes the least-loaded node by load relative to its window, whoever is first in turn', () => {
    // 4 of 10 (0.4), 1 of 2 (0.5), 1 of 4 (0.25): the smallest share wins, not the fewest jobs.
    const p = pool(
      session('a', { window: 10, jobsHeld: 4 }),
      session('b', { window: 2, jobsHeld: 1 }),
      session('c', { window: 4, jobsHeld: 1 }),
    )
    for (let i = 0; i < 3; i++) expect(anyNode(p)).toBe('c')
  })

  it('shares a burst evenly: equally loaded nodes take turns', () => {
    const p = pool(session('a'), session('b'), session('c'))
    const picks = Array.from({ length: 6 }, () => anyNode(p))
    expect(picks.slice(0, 3).sort()).toEqual(['a', 'b', 'c'])
    expect(picks.slice(3).sort()).toEqual(['a', 'b', 'c'])
  })

  const noRoom: { what: string; shape: SessionShape }[] = [
    { what: 'a full window', shape: { window: 2, jobsHeld: 2 } },
    { what: 'not accepting (draining, or its store is down)', shape: { accepting: false } },
    { what: 'a backlogged socket', shape: { backlogged: true } },
    { what: 'a session not ready', shape: { state: 'closed' } },
  ]

  it.each(noRoom)('passes over an idle node with $what for a busier one', ({ shape }) => {
    expect(anyNode(pool(session('idle', shape)))).toBeUndefined()
    const p = pool(session('idle', shape), session('busy', { window: 10, jobsHeld: 9 }))
    for (let i = 0; i < 3; i++) expect(anyNode(p)).toBe('busy')
  })

  it('a window with one slot left still has room', () => {
    expect(anyNode(pool(session('a', { window: 2, jobsHeld: 1 })))).toBe('a')
  })

  it('passes over a node whose frame limit the job exceeds', () => {
    const p = pool(
      session('small', { maxFrameSize: 64 * 1024 }),
      session('big', { maxFrameSize: 1024 * 1024, jobsHeld: 9 }),
    )
    const largest = 64 * 1024 - FRAME_ENVELOPE_BYTES
    for (let i = 0; i < 3; i++) {
      // The idle node while the job fits it; the busy one for a byte more.
      expect(p.pick('work', undefined, undefined, false, largest)?.name).toBe('small')
      expect(p.pick('work', undefined, undefined, false, largest + 1)?.name).toBe('big')
    }
  })

  it('gives the preferred node the job when it has room, however loaded it is', () => {
    const p = pool(session('a', { window: 10, jobsHeld: 9 }), session('b'))
    for (let i = 0; i < 3; i++) expect(p.pick('work', 'a', undefined, false, 100)?.name).toBe('a')
  })

  const unfit: { what: string; node?: NodeSession; notNode?: string; bytes?: number }[] = [
    { what: 'has no room', node: session('a', { window: 1, jobsHeld: 1 }) },
    { what: 'is not connected' },
    { what: 'lacks the definition', node: session('a', { jobs: ['other'] }) },
    { what: 'is also the notNode', node: session('a'), notNode: 'a' },
    { what: 'has too small a frame limit', node: session('a', { maxFrameSize: 8 * 1024 }), bytes: 8 * 1024 },
  ]

  it.each(unfit)(
    'when the preferred node $what, another node takes the job, or none when strict',
    ({ node, notNode, bytes = 100 }) => {
      const p = pool(...(node === undefined ? [] : [node]), session('b', { window: 10, jobsHeld: 9 }))
      for (let i = 0; i < 3; i++) {
        expect(p.pick('work', 'a', notNode, false, bytes)?.name).toBe('b')
        expect(p.pick('work', 'a', notNode, true, bytes)).toBeUndefined()
      }
    },
  )
})

describe('NodePool.roomiest', () => {
  it('is the node with the largest frame limit among those that run the job, room or not', () => {
    const p = pool(
      session('small', { maxFrameSize: 64 * 1024 }),
      session('big', { maxFrameSize: 4 * 1024 * 1024, accepting: false, window: 1, jobsHeld: 1 }),
      session('medium', { maxFrameSize: 1024 * 1024 }),
      session('huge-but-other', { maxFrameSize: 64 * 1024 * 1024, jobs: ['other'] }),
    )
    expect(p.roomiest('work', undefined, undefined, false)?.name).toBe('big')
    expect(p.roomiest('work', undefined, 'big', false)?.name).toBe('medium')
    expect(p.roomiest('nobody-runs-this', undefined, undefined, false)).toBeUndefined()
  })

  it('when strict, considers the preferred node alone', () => {
    const p = pool(session('a', { maxFrameSize: 64 * 1024 }), session('b', { maxFrameSize: 1024 * 1024 }))
    expect(p.roomiest('work', 'a', undefined, true)?.name).toBe('a')
    expect(p.roomiest('work', 'a', undefined, false)?.name).toBe('b')
    expect(p.roomiest('work', 'gone', undefined, true)).toBeUndefined()
  })
})

describe('fits', () => {
  it('takes a job up to the frame limit less the envelope, and not a byte more', () => {
    const s = session('a', { maxFrameSize: 64 * 1024 })
    expect(fits(s, 64 * 1024 - FRAME_ENVELOPE_BYTES)).toBe(true)
    expect(fits(s, 64 * 1024 - FRAME_ENVELOPE_BYTES + 1)).toBe(false)
  })
})

describe('NodePool membership', () => {
  it('knows a job name any connected node runs, with room or without', () => {
    const p = pool(session('a', { jobs: ['x'], accepting: false }), session('b', { jobs: ['y'] }))
    expect(p.knows('x')).toBe(true)
    expect(p.knows('y')).toBe(true)
    expect(p.knows('z')).toBe(false)
  })

  it("keeps a reconnected node's new session when the old one is removed after it", () => {
    const old = session('a')
    const fresh = session('a')
    const p = pool(old, fresh)
    p.remove(old)
    expect(p.get('a')).toBe(fresh)
    expect(p.all()).toEqual([fresh])
    expect(p.size).toBe(1)
    p.remove(fresh)
    expect(p.get('a')).toBeUndefined()
    expect(p.size).toBe(0)
    expect(anyNode(p)).toBeUndefined()
  })
})
