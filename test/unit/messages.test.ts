import { describe, expect, it } from 'vitest'
import { ErrorCode, ProtocolError } from '../../src/errors.js'
import { MessageType, PROTOCOL_VERSION, type Message, type WireJob } from '../../src/protocol/messages.js'
import { parseMessage } from '../../src/protocol/parse-message.js'
import { encodeMessageFrame } from '../../src/protocol/encode.js'
import { pack, unpack } from '../../src/protocol/msgpack.js'
import { toWire } from '../helpers/wire-form.js'

/** What a message goes through between two peers: its wire form, packed, unpacked, validated. */
function roundTrip(message: unknown): Message {
  return parseRaw(toWire(message as Message))
}

/** A body exactly as a peer put it on the wire. */
function parseRaw(value: unknown): Message {
  return parseMessage(unpack(pack(value)))
}

/** The wire form of a message-shaped object, broken fields and all. */
const w = (message: unknown): Record<string, unknown> => toWire(message as Message) as Record<string, unknown>

/** Asserts a ProtocolError (by code) whose message contains `fragment`; `value` is sent as it is. */
function expectProtocolError(value: unknown, fragment: string): ProtocolError {
  let thrown: unknown
  try {
    parseRaw(value)
  } catch (err) {
    thrown = err
  }
  expect(thrown, `parseMessage(${JSON.stringify(value)}) should throw`).toBeInstanceOf(ProtocolError)
  const err = thrown as ProtocolError
  expect(err.code).toBe(ErrorCode.PROTOCOL)
  expect(err.code).toBe('ERR_PROTOCOL')
  expect(err.message).toContain(fragment)
  return err
}

const nonce = Buffer.alloc(32, 7)
const args = pack({ to: 'a@example.com', n: 3 })

const fullJob: WireJob = {
  id: 'job-1',
  name: 'echo',
  args,
  dueAt: 1_700_000_000_123,
  run: 4,
  period: 2.5,
  defer: true,
  maxAttempt: 5,
  retry: { strategy: 'exponential', base: 1, max: 60, jitter: 0.2 },
  timeout: 30,
}

const wireFull = (toWire({ type: MessageType.DISPATCH, seq: 1, jobs: [fullJob] }) as { jobs: unknown[][] })
  .jobs[0] as unknown[]

/** One sample of every message type; `satisfies` makes this fail to compile when a type is added. */
const SAMPLES = {
  [MessageType.CHALLENGE]: { type: MessageType.CHALLENGE, protocolVersion: PROTOCOL_VERSION, nonce, auth: true },
  [MessageType.HELLO]: {
    type: MessageType.HELLO,
    protocolVersion: PROTOCOL_VERSION,
    version: '0.1.0',
    node: 'worker-1',
    jobs: ['noop', 'echo'],
    concurrency: 4,
    window: 8,
    durable: false,
    nonce,
    proof: Buffer.alloc(32, 9),
  },
  [MessageType.WELCOME]: {
    type: MessageType.WELCOME,
    group: 'default',
    name: 'main',
    answersFor: ['web-0', 'web-1'],
    heartbeatMs: 5000,
    proof: Buffer.alloc(32, 1),
  },
  [MessageType.ERROR]: { type: MessageType.ERROR, code: 'ERR_PROTOCOL', message: 'bad frame' },
  [MessageType.PING]: { type: MessageType.PING },
  [MessageType.DISPATCH]: {
    type: MessageType.DISPATCH,
    seq: 7,
    jobs: [fullJob, { id: 'job-2', name: 'noop', args: Buffer.alloc(0), dueAt: 0, run: 1 }],
  },
  [MessageType.ACCEPTED]: { type: MessageType.ACCEPTED, seq: 7 },
  [MessageType.REJECTED]: {
    type: MessageType.REJECTED,
    seq: 7,
    ids: ['job-3'],
    code: 'ERR_UNKNOWN_JOB',
    message: 'no such job',
  },
  [MessageType.STATE]: { type: MessageType.STATE, accepting: false, reason: 'quiet' },
  [MessageType.FEEDBACK]: {
    type: MessageType.FEEDBACK,
    seq: 3,
    items: [
      {
        id: 'job-1',
        name: 'send_mail',
        run: 1,
        kind: 'success',
        final: true,
        cancelled: false,
        args: { to: 'a@example.com', n: 3 },
      },
      { id: 'job-2', name: undefined, run: 3, kind: 'error', final: false, cancelled: true, args: {} },
    ],
  },
  [MessageType.FEEDBACK_ACK]: { type: MessageType.FEEDBACK_ACK, seq: 3 },
  [MessageType.CANCEL]: { type: MessageType.CANCEL, id: 'job-1' },
  [MessageType.CANCEL_RESULT]: { type: MessageType.CANCEL_RESULT, id: 'job-1', outcome: 'finished' },
  [MessageType.WAITING]: { type: MessageType.WAITING, ids: ['job-1', 'job-2'] },
  [MessageType.RATE_LIMITED]: { type: MessageType.RATE_LIMITED, id: 'job-1', seconds: 2.5 },
  [MessageType.ANSWERS]: { type: MessageType.ANSWERS, names: ['web-2'] },
  [MessageType.ADMIN]: {
    type: MessageType.ADMIN,
    req: 4,
    request: { op: 'list', kind: 'failed', cursor: '50', limit: 50 },
  },
  [MessageType.ADMIN_RESULT]: {
    type: MessageType.ADMIN_RESULT,
    req: 4,
    jobs: [
      {
        id: 'job-1',
        name: 'send_mail',
        status: 'failed',
        attempt: 3,
        run: 1,
        dueAt: 1_700_000_000_000,
        lastError: { name: 'Error', message: 'smtp down', stack: 'Error: smtp down', code: 'ECONNREFUSED' },
      },
      { id: 'job-2', name: 'tick', status: 'new', attempt: 0, run: 4, dueAt: 5, period: 60, args: Buffer.from([0x80]) },
      { id: 'job-3', name: 'resize', status: 'in progress', attempt: 1, run: 1, dueAt: 5, progress: { done: 3 } },
    ],
    next: '100',
  },
  [MessageType.PROGRESS]: {
    type: MessageType.PROGRESS,
    items: [
      { id: 'job-1', name: 'resize', run: 1, value: 0.5 },
      { id: 'job-2', name: 'import', run: 3, value: { done: 40, of: 100, step: 'rows' } },
    ],
  },
} satisfies { [K in MessageType]: Extract<Message, { type: K }> }

describe('parseMessage round trip', () => {
  it('has a sample for every message type', () => {
    expect(Object.keys(SAMPLES).sort()).toEqual(Object.values(MessageType).sort())
  })

  it.each(Object.values(SAMPLES).map((m) => [m.type, m] as const))(
    'round-trips %s through msgpack',
    (_type, message) => {
      const parsed = roundTrip(message)
      expect(parsed).toEqual(message)
      expect(parsed.type).toBe(message.type)
    },
  )

  it('feedback args packed by a node travel as the map they hold and arrive decoded', () => {
    const item = { id: 'job-1', name: 'send_mail', run: 1, kind: 'success', final: true, cancelled: false } as const
    const parsed = parseMessage(
      unpack(
        encodeMessageFrame({ type: MessageType.FEEDBACK, seq: 1, items: [{ ...item, args }] }, 1 << 20).subarray(4),
      ),
    )
    expect(parsed).toEqual({
      type: MessageType.FEEDBACK,
      seq: 1,
      items: [{ ...item, args: { to: 'a@example.com', n: 3 } }],
    })
  })

  it('keeps binary fields binary', () => {
    const parsed = roundTrip(SAMPLES[MessageType.DISPATCH])
    expect(parsed.type).toBe('dispatch')
    if (parsed.type !== 'dispatch') return
    const job = parsed.jobs[0] as WireJob
    expect(job.args).toBeInstanceOf(Uint8Array)
    expect(unpack(job.args)).toEqual({ to: 'a@example.com', n: 3 })
  })

  it('round-trips the minimal forms (optional fields absent)', () => {
    const hello = { ...SAMPLES[MessageType.HELLO] } as Record<string, unknown>
    delete hello['proof']
    const parsedHello = roundTrip(hello)
    expect(parsedHello).toEqual(hello)
    expect('proof' in parsedHello).toBe(false)

    const welcome = roundTrip({ type: 'welcome', group: 'g', name: 'd', heartbeatMs: 0 })
    expect(welcome).toEqual({ type: 'welcome', group: 'g', name: 'd', heartbeatMs: 0 })
    expect('proof' in welcome).toBe(false)

    const dispatch = roundTrip({ type: 'dispatch', seq: 0, jobs: [] })
    expect(dispatch).toEqual({ type: 'dispatch', seq: 0, jobs: [] })
  })

  it('sends per-job records as tuples, with options only when a job has some', () => {
    const wire = toWire(SAMPLES[MessageType.DISPATCH]) as { jobs: unknown[] }
    expect(wire.jobs[1]).toEqual(['job-2', 'noop', Buffer.alloc(0), 0, 1])
    expect((wire.jobs[0] as unknown[])[5]).toEqual({
      period: 2.5,
      defer: true,
      maxAttempt: 5,
      retry: fullJob.retry,
      timeout: 30,
    })
    expect(toWire(SAMPLES[MessageType.FEEDBACK])).toEqual({
      type: 'feedback',
      seq: 3,
      items: [
        // The name is nil when the node does not know it (a result stored before it was kept).
        ['job-1', 'send_mail', 1, 2, { to: 'a@example.com', n: 3 }],
        ['job-2', null, 3, 5, {}],
      ],
    })
    // Frame answers name the frame by number, nothing per job.
    expect(toWire(SAMPLES[MessageType.ACCEPTED])).toEqual({ type: 'accepted', seq: 7 })
    expect(toWire(SAMPLES[MessageType.FEEDBACK_ACK])).toEqual({ type: 'feedback-ack', seq: 3 })
    expect(toWire(SAMPLES[MessageType.HELLO])).toBe(SAMPLES[MessageType.HELLO])
  })

  it('treats null optional job fields as absent', () => {
    const parsed = parseRaw({
      type: 'dispatch',
      seq: 1,
      jobs: [['a', 'noop', args, 1, 1, { period: null, defer: null, maxAttempt: null, retry: null, timeout: null }]],
    })
    expect(parsed).toEqual({ type: 'dispatch', seq: 1, jobs: [{ id: 'a', name: 'noop', args, dueAt: 1, run: 1 }] })
    if (parsed.type === 'dispatch')
      expect(Object.keys(parsed.jobs[0] as WireJob).sort()).toEqual(['args', 'dueAt', 'id', 'name', 'run'])
  })

  it('drops fields it does not know', () => {
    expect(roundTrip({ type: 'cancel', id: 'x', extra: { deep: true } })).toEqual({ type: 'cancel', id: 'x' })
  })

  it.each([
    { strategy: 'linear', multiplier: 10 },
    { strategy: 'fixed', delay: 0.5 },
    { strategy: 'exponential', base: 2, max: 3600, jitter: 0 },
  ] as const)('round-trips a dispatched job with retry policy $strategy', (retry) => {
    const parsed = roundTrip({ type: 'dispatch', seq: 1, jobs: [{ ...fullJob, retry }] })
    expect(parsed.type === 'dispatch' && parsed.jobs[0]?.retry).toEqual(retry)
  })
})

describe('parseMessage rejects', () => {
  it.each([
    ['null', null],
    ['a number', 42],
    ['a string', 'hello'],
    ['an array', [{ type: 'ping' }]],
    ['binary', Buffer.from('ping')],
    ['a boolean', true],
  ])('a frame that is %s, not a map', (_what, value) => {
    const err = expectProtocolError(value, "'message' must be a map")
    expect(err).toBeInstanceOf(ProtocolError)
  })

  it('a map without a type', () => {
    expectProtocolError({ id: 'x' }, "'message.type' must be a string")
  })

  it.each([[5], [true], [['ping']], [{ type: 'ping' }], [null]])('a non-string type (%j)', (type) => {
    expectProtocolError({ type }, "'message.type' must be a string")
  })

  it('an unknown type, naming it', () => {
    expectProtocolError({ type: 'bogus' }, "unknown message type 'bogus'")
  })

  it('an unknown type with a huge name, naming only its start', () => {
    const err = expectProtocolError({ type: 'x'.repeat(10_000) }, 'unknown message type')
    expect(err.message.length).toBeLessThan(200)
  })

  it('a type that only differs in case', () => {
    expectProtocolError({ type: 'PING' }, "unknown message type 'PING'")
  })

  // Each case: a sample with one field broken, and the path the error must name.
  const broken: [string, Record<string, unknown>, string][] = [
    [
      'challenge: version as a string',
      { ...SAMPLES.challenge, protocolVersion: '1' },
      "'challenge.protocolVersion' must be a non-negative integer, got string",
    ],
    [
      'challenge: negative version',
      { ...SAMPLES.challenge, protocolVersion: -1 },
      "'challenge.protocolVersion' must be a non-negative integer",
    ],
    [
      'challenge: nonce as a string',
      { ...SAMPLES.challenge, nonce: 'abc' },
      "'challenge.nonce' must be binary, got string",
    ],
    ['challenge: auth missing', { ...SAMPLES.challenge, auth: undefined }, "'challenge.auth' must be a boolean"],
    ['hello: node missing', { ...SAMPLES.hello, node: undefined }, "'hello.node' must be a string"],
    ['hello: jobs not an array', { ...SAMPLES.hello, jobs: 'echo' }, "'hello.jobs' must be an array, got string"],
    [
      'hello: a job name not a string',
      { ...SAMPLES.hello, jobs: ['echo', 7] },
      "'hello.jobs[1]' must be a string, got number",
    ],
    [
      'hello: fractional concurrency',
      { ...SAMPLES.hello, concurrency: 1.5 },
      "'hello.concurrency' must be a non-negative integer",
    ],
    ['hello: window as a string', { ...SAMPLES.hello, window: '8' }, "'hello.window'"],
    ['hello: durable as a number', { ...SAMPLES.hello, durable: 1 }, "'hello.durable' must be a boolean, got number"],
    ['hello: proof as a string', { ...SAMPLES.hello, proof: 'secret' }, "'hello.proof' must be binary"],
    ['hello: version missing', { ...SAMPLES.hello, version: undefined }, "'hello.version' must be a string"],
    ['welcome: heartbeat as a string', { ...SAMPLES.welcome, heartbeatMs: '5000' }, "'welcome.heartbeatMs'"],
    ['error: code missing', { type: 'error', message: 'x' }, "'error.code' must be a string"],
    ['dispatch: jobs missing', { type: 'dispatch', seq: 1 }, "'dispatch.jobs' must be an array"],
    [
      'dispatch: a job not a tuple',
      { type: 'dispatch', seq: 1, jobs: [wireFull, 'job'] },
      "'dispatch.jobs[1]' must be an array of 5 to 6 items, got string",
    ],
    [
      'dispatch: a job tuple too short',
      { type: 'dispatch', seq: 1, jobs: [['a', 'noop', args, 0]] },
      "'dispatch.jobs[0]' must have 5 to 6 items, got 4",
    ],
    [
      'dispatch: a job tuple too long',
      { type: 'dispatch', seq: 1, jobs: [[...wireFull, 'x']] },
      "'dispatch.jobs[0]' must have 5 to 6 items, got 7",
    ],
    [
      'dispatch: a cron expression the node could not step',
      { type: 'dispatch', seq: 1, jobs: [['a', 'noop', args, 0, 1, { cron: 'every day' }]] },
      `'dispatch.jobs[0].options': 'cron' "every day" is not a cron expression`,
    ],
    [
      'dispatch: a time zone without cron',
      { type: 'dispatch', seq: 1, jobs: [['a', 'noop', args, 0, 1, { tz: 'UTC' }]] },
      "'dispatch.jobs[0].tz' was sent without 'dispatch.jobs[0].cron'",
    ],
    [
      'dispatch: options not a map',
      { type: 'dispatch', seq: 1, jobs: [['a', 'noop', args, 0, 1, 'x']] },
      "'dispatch.jobs[0].options' must be a map, got string",
    ],
    [
      'dispatch: args as a string',
      w({ type: 'dispatch', seq: 1, jobs: [{ ...fullJob, args: '{}' }] }),
      "'dispatch.jobs[0].args' must be binary, got string",
    ],
    [
      'dispatch: args missing',
      w({ type: 'dispatch', seq: 1, jobs: [{ ...fullJob, args: undefined }] }),
      "'dispatch.jobs[0].args'",
    ],
    [
      'dispatch: id as a number',
      w({ type: 'dispatch', seq: 1, jobs: [{ ...fullJob, id: 1 }] }),
      "'dispatch.jobs[0].id' must be a string",
    ],
    [
      'dispatch: dueAt infinite',
      w({ type: 'dispatch', seq: 1, jobs: [{ ...fullJob, dueAt: Infinity }] }),
      "'dispatch.jobs[0].dueAt' must be a finite number",
    ],
    [
      'dispatch: dueAt NaN',
      w({ type: 'dispatch', seq: 1, jobs: [{ ...fullJob, dueAt: NaN }] }),
      "'dispatch.jobs[0].dueAt' must be a finite number",
    ],
    [
      'dispatch: run fractional',
      w({ type: 'dispatch', seq: 1, jobs: [fullJob, { ...fullJob, run: 1.5 }] }),
      "'dispatch.jobs[1].run' must be a non-negative integer",
    ],
    [
      'dispatch: defer as a string',
      w({ type: 'dispatch', seq: 1, jobs: [{ ...fullJob, defer: 'yes' }] }),
      "'dispatch.jobs[0].defer' must be a boolean",
    ],
    [
      'dispatch: maxAttempt negative',
      w({ type: 'dispatch', seq: 1, jobs: [{ ...fullJob, maxAttempt: -2 }] }),
      "'dispatch.jobs[0].maxAttempt'",
    ],
    [
      'dispatch: period as a string',
      w({ type: 'dispatch', seq: 1, jobs: [{ ...fullJob, period: '5' }] }),
      "'dispatch.jobs[0].period' must be a finite number",
    ],
    [
      'dispatch: timeout as a boolean',
      w({ type: 'dispatch', seq: 1, jobs: [{ ...fullJob, timeout: true }] }),
      "'dispatch.jobs[0].timeout'",
    ],
    [
      'dispatch: seq missing',
      { type: 'dispatch', jobs: [] },
      "'dispatch.seq' must be a non-negative integer, got undefined",
    ],
    [
      'dispatch: seq negative',
      { type: 'dispatch', seq: -1, jobs: [] },
      "'dispatch.seq' must be a non-negative integer, got number",
    ],
    ['accepted: seq missing', { type: 'accepted' }, "'accepted.seq' must be a non-negative integer, got undefined"],
    [
      'accepted: seq fractional',
      { type: 'accepted', seq: 1.5 },
      "'accepted.seq' must be a non-negative integer, got number",
    ],
    [
      'accepted: seq as a string',
      { type: 'accepted', seq: '1' },
      "'accepted.seq' must be a non-negative integer, got string",
    ],
    [
      'rejected: seq missing',
      { type: 'rejected', ids: [], code: 'X', message: 'm' },
      "'rejected.seq' must be a non-negative integer, got undefined",
    ],
    [
      'rejected: an id not a string',
      { type: 'rejected', seq: 1, ids: ['a', null], code: 'X', message: 'm' },
      "'rejected.ids[1]' must be a string, got null",
    ],
    [
      'rejected: message missing',
      { type: 'rejected', seq: 1, ids: [], code: 'X' },
      "'rejected.message' must be a string",
    ],
    [
      'rate-limited: a pause past a day',
      { type: 'rate-limited', id: 'j', seconds: 86_401 },
      "'rate-limited.seconds' must be a number in (0, 86400], got number",
    ],
    [
      'rate-limited: no pause',
      { type: 'rate-limited', id: 'j', seconds: 0 },
      "'rate-limited.seconds' must be a number in (0, 86400], got number",
    ],
    ['state: accepting as a string', { type: 'state', accepting: 'true' }, "'state.accepting' must be a boolean"],
    [
      'feedback: items not an array',
      { type: 'feedback', seq: 1, items: {} },
      "'feedback.items' must be an array, got object",
    ],
    [
      'feedback: flags out of range',
      { type: 'feedback', seq: 1, items: [['job-1', 'x', 1, 8, args]] },
      "'feedback.items[0].flags' must be an integer from 0 to 7, got number",
    ],
    [
      'feedback: flags as a string',
      { type: 'feedback', seq: 1, items: [['job-1', 'x', 1, 'final', args]] },
      "'feedback.items[0].flags' must be an integer from 0 to 7, got string",
    ],
    [
      'feedback: an item not a tuple',
      { type: 'feedback', seq: 1, items: [{ id: 'job-1' }] },
      "'feedback.items[0]' must be an array of 5 items, got object",
    ],
    [
      'feedback: an item too long',
      { type: 'feedback', seq: 1, items: [['job-1', 'x', 1, 2, args, true]] },
      "'feedback.items[0]' must have 5 items, got 6",
    ],
    [
      'feedback: a version-5 item (no name)',
      { type: 'feedback', seq: 1, items: [['job-1', 1, 2, {}]] },
      "'feedback.items[0]' must have 5 items, got 4",
    ],
    [
      'feedback: name not a string',
      { type: 'feedback', seq: 1, items: [['job-1', 7, 1, 2, {}]] },
      "'feedback.items[0].name' must be a string",
    ],
    [
      'feedback: args not a map',
      { type: 'feedback', seq: 1, items: [['job-1', 'x', 1, 2, args]] },
      "'feedback.items[0].args' must be a map, got object",
    ],
    [
      'feedback: args a Date',
      { type: 'feedback', seq: 1, items: [['job-1', 'x', 1, 2, new Date(0)]] },
      "'feedback.items[0].args' must be a map",
    ],
    [
      'feedback: run negative',
      w({ ...SAMPLES.feedback, items: [SAMPLES.feedback.items[0], { ...SAMPLES.feedback.items[1], run: -1 }] }),
      "'feedback.items[1].run' must be a non-negative integer",
    ],
    [
      'progress: an item not a tuple',
      { type: 'progress', items: [{ id: 'job-1' }] },
      "'progress.items[0]' must be an array of 4 items, got object",
    ],
    [
      'progress: name missing',
      { type: 'progress', items: [['job-1', null, 1, 0.5]] },
      "'progress.items[0].name' must be a string, got null",
    ],
    [
      'progress: value a string',
      { type: 'progress', items: [['job-1', 'x', 1, 'half']] },
      "'progress.items[0].value' must be a map, got string",
    ],
    [
      'progress: value a Date',
      { type: 'progress', items: [['job-1', 'x', 1, new Date(0)]] },
      "'progress.items[0].value' must be a map",
    ],
    [
      'progress: value an array',
      { type: 'progress', items: [['job-1', 'x', 1, [1, 2]]] },
      "'progress.items[0].value' must be a map, got array",
    ],
    [
      'admin-result: a job view whose progress is a string',
      { type: 'admin-result', req: 1, job: { ...SAMPLES['admin-result'].jobs[2], progress: 'half' } },
      "'admin-result.job.progress' must be a map, got string",
    ],
    [
      'feedback: seq missing',
      { type: 'feedback', items: [] },
      "'feedback.seq' must be a non-negative integer, got undefined",
    ],
    [
      'feedback: seq as binary',
      { type: 'feedback', seq: Buffer.from([1]), items: [] },
      "'feedback.seq' must be a non-negative integer, got object",
    ],
    [
      'feedback-ack: seq missing',
      { type: 'feedback-ack' },
      "'feedback-ack.seq' must be a non-negative integer, got undefined",
    ],
    [
      'feedback-ack: seq negative',
      { type: 'feedback-ack', seq: -3 },
      "'feedback-ack.seq' must be a non-negative integer, got number",
    ],
    [
      'feedback-ack: the old per-item form',
      { type: 'feedback-ack', items: [['job-1', 1]] },
      "'feedback-ack.seq' must be a non-negative integer, got undefined",
    ],
    ['cancel: id missing', { type: 'cancel' }, "'cancel.id' must be a string, got undefined"],
    [
      'cancel-result: unknown outcome',
      { type: 'cancel-result', id: 'x', outcome: 'maybe' },
      "'cancel-result.outcome' must be 'cancelled', 'finished' or 'unknown'",
    ],
    [
      'cancel-result: id missing',
      { type: 'cancel-result', outcome: 'finished' },
      "'cancel-result.id' must be a string",
    ],
  ]

  it.each(broken)('%s', (_what, value, fragment) => {
    expectProtocolError(value, fragment)
  })

  describe('a retry policy inside a dispatched job', () => {
    const withRetry = (retry: unknown): unknown => w({ type: 'dispatch', seq: 1, jobs: [{ ...fullJob, retry }] })

    it.each<[string, unknown, string]>([
      ['not a map', 5, "'dispatch.jobs[0].retry' must be a map, got number"],
      ['an array', [1, 2], "'dispatch.jobs[0].retry' must be a map, got array"],
      [
        'an unknown strategy',
        { strategy: 'random' },
        "'dispatch.jobs[0].retry.strategy' must be 'linear', 'fixed' or 'exponential', got string",
      ],
      ['no strategy', { multiplier: 3 }, "'dispatch.jobs[0].retry.strategy'"],
      [
        'linear without multiplier',
        { strategy: 'linear' },
        "'dispatch.jobs[0].retry.multiplier' must be a finite number",
      ],
      [
        'fixed with a string delay',
        { strategy: 'fixed', delay: '1s' },
        "'dispatch.jobs[0].retry.delay' must be a finite number, got string",
      ],
      ['exponential without jitter', { strategy: 'exponential', base: 1, max: 10 }, "'dispatch.jobs[0].retry.jitter'"],
      [
        'exponential with an infinite max',
        { strategy: 'exponential', base: 1, max: Infinity, jitter: 0 },
        "'dispatch.jobs[0].retry.max' must be a finite number",
      ],
    ])('%s', (_what, retry, fragment) => {
      expectProtocolError(withRetry(retry), fragment)
    })

    it('names the job index of a bad policy in a later job', () => {
      expectProtocolError(
        w({ type: 'dispatch', seq: 1, jobs: [fullJob, fullJob, { ...fullJob, retry: { strategy: 'fixed' } }] }),
        "'dispatch.jobs[2].retry.delay'",
      )
    })

    it('keeps only the fields of the chosen strategy', () => {
      const parsed = parseRaw(withRetry({ strategy: 'fixed', delay: 3, multiplier: 9, base: 1 }))
      expect(parsed.type === 'dispatch' && parsed.jobs[0]?.retry).toEqual({ strategy: 'fixed', delay: 3 })
    })
  })
})
