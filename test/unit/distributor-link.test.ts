import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { ErrorCode, type JobsError } from '../../src/errors.js'
import { DistributorLink, type LinkContext, type LinkOptions } from '../../src/node/distributor-link.js'
import { distributorProof, NONCE_SIZE, nodeProof } from '../../src/protocol/handshake.js'
import { MessageType, PROTOCOL_VERSION, type HelloMessage, type Message } from '../../src/protocol/messages.js'
import { Resources } from '../helpers/cluster.js'
import { fakeDistributor, type FakePeer } from '../helpers/fake-peer.js'
import { LEVEL, LogCapture, type LogEntry } from '../helpers/log-capture.js'

/*
 * The link dials real sockets (it owns them), so these tests talk to a scripted distributor
 * on the loopback interface; everything the link tells its node goes to a fake one. Where
 * time is the subject (backoff), setTimeout is faked and Math.random pinned, and the test
 * reads the state the link is in at each instant: no sleeps.
 */

const res = new Resources()
afterEach(async () => {
  vi.useRealTimers()
  vi.restoreAllMocks()
  await res.releaseAll()
})

const HELLO_FIELDS = {
  node: 'n1',
  version: '1.2.3',
  jobs: ['echo', 'slow'],
  concurrency: 2,
  window: 4,
  durable: true,
  maxFrameSize: 1 << 20,
}

/** The node, as much as the link sees of it: what it says in the hello, and what it hears back. */
class FakeNode implements LinkContext {
  readonly events: string[] = []
  readonly messages: Message[] = []
  readonly downReasons: (JobsError | undefined)[] = []
  private waiters: { event: string; resolve: () => void }[] = []

  helloFields(): typeof HELLO_FIELDS {
    return HELLO_FIELDS
  }
  onReady(link: DistributorLink): void {
    this.record(`ready ${link.generation}`)
  }
  onMessage(_link: DistributorLink, message: Message): void {
    this.messages.push(message)
    this.record(`message ${message.type}`)
  }
  onDown(link: DistributorLink, reason: JobsError | undefined): void {
    this.downReasons.push(reason)
    this.record(`down ${link.generation}`)
  }
  /** Resolves once `event` happened (before or after the call). */
  seen(event: string): Promise<void> {
    if (this.events.includes(event)) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push({ event, resolve }))
  }
  private record(event: string): void {
    this.events.push(event)
    for (const w of this.waiters.filter((w) => w.event === event)) w.resolve()
    this.waiters = this.waiters.filter((w) => w.event !== event)
  }
}

function newLink(
  port: number,
  options: Partial<LinkOptions> = {},
): { link: DistributorLink; node: FakeNode; logs: LogCapture } {
  const logs = new LogCapture()
  const node = new FakeNode()
  const link = new DistributorLink(node, {
    host: '127.0.0.1',
    port,
    address: `127.0.0.1:${port}`,
    secret: undefined,
    tls: undefined,
    maxFrameSize: 1 << 20,
    stallTimeoutMs: 60_000,
    handshakeTimeoutMs: 10_000,
    reconnectMinMs: 100,
    reconnectMaxMs: 1000,
    log: logs.logger,
    ...options,
  })
  res.add(link, (l) => l.close())
  return { link, node, logs }
}

/** A port nothing listens on: a dial there fails at once. */
async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return typeof address === 'object' && address !== null ? address.port : 0
}

/** The distributor's side of the handshake; the welcome's heartbeat is long enough never to fire here. */
async function welcome(
  peer: FakePeer,
  options: { secret?: string; name?: string; maxFrameSize?: number } = {},
): Promise<HelloMessage> {
  const nonce = randomBytes(NONCE_SIZE)
  peer.send({
    type: MessageType.CHALLENGE,
    protocolVersion: PROTOCOL_VERSION,
    nonce,
    auth: options.secret !== undefined,
  })
  const hello = await peer.nextOfType(MessageType.HELLO)
  peer.send({
    type: MessageType.WELCOME,
    group: 'default',
    name: options.name ?? 'main',
    heartbeatMs: 600_000,
    ...(options.maxFrameSize === undefined ? {} : { maxFrameSize: options.maxFrameSize }),
    ...(options.secret === undefined
      ? {}
      : { proof: distributorProof(options.secret, nonce, hello.nonce, hello.node) }),
  })
  return hello
}

const cannotReach = (e: LogEntry): boolean => e.msg === 'cannot reach the distributor; redialling'
const lost = (e: LogEntry): boolean => e.msg === 'lost the distributor; redialling'
const redials = (e: LogEntry): boolean => cannotReach(e) || lost(e)

describe('DistributorLink handshake', () => {
  it('says hello with what its node offers, and is ready (and tells its node) only once welcomed', async () => {
    const fake = await fakeDistributor(res)
    const { link, node } = newLink(fake.port)
    link.start()
    const peer = await fake.nextPeer()
    const challengeNonce = randomBytes(NONCE_SIZE)
    peer.send({ type: MessageType.CHALLENGE, protocolVersion: PROTOCOL_VERSION, nonce: challengeNonce, auth: false })
    const hello = await peer.nextOfType(MessageType.HELLO)
    expect(hello).toEqual({
      type: MessageType.HELLO,
      protocolVersion: PROTOCOL_VERSION,
      ...HELLO_FIELDS,
      nonce: expect.any(Uint8Array),
    })
    expect(hello.nonce).toHaveLength(NONCE_SIZE)
    expect(hello.proof).toBeUndefined()
    expect(link.ready).toBe(false)
    expect(link.send({ type: MessageType.ACCEPTED, seq: 1 })).toBe(false)
    expect(node.events).toEqual([])

    peer.send({ type: MessageType.WELCOME, group: 'default', name: 'main', heartbeatMs: 600_000, maxFrameSize: 65_536 })
    await node.seen('ready 1')
    expect(link.ready).toBe(true)
    expect(link.memberName).toBe('main')
    expect(link.peerMaxFrameSize).toBe(65_536)

    // Ready: what the distributor sends goes to the node, what the node sends goes out.
    peer.send({ type: MessageType.FEEDBACK_ACK, seq: 3 })
    await node.seen('message feedback-ack')
    expect(node.messages).toEqual([{ type: MessageType.FEEDBACK_ACK, seq: 3 }])
    expect(link.send({ type: MessageType.ACCEPTED, seq: 1 })).toBe(true)
    expect(await peer.next()).toEqual({ type: MessageType.ACCEPTED, seq: 1 })
    expect(node.events).toEqual(['ready 1', 'message feedback-ack'])
  })

  it('with a secret, proves it over both nonces, and is ready once the distributor proved it too', async () => {
    const fake = await fakeDistributor(res)
    const { link, node } = newLink(fake.port, { secret: 'sesame' })
    link.start()
    const peer = await fake.nextPeer()
    const nonce = randomBytes(NONCE_SIZE)
    peer.send({ type: MessageType.CHALLENGE, protocolVersion: PROTOCOL_VERSION, nonce, auth: true })
    const hello = await peer.nextOfType(MessageType.HELLO)
    expect(hello.proof).toEqual(nodeProof('sesame', nonce, hello.nonce, 'n1'))
    peer.send({
      type: MessageType.WELCOME,
      group: 'default',
      name: 'main',
      heartbeatMs: 600_000,
      proof: distributorProof('sesame', nonce, hello.nonce, 'n1'),
    })
    await node.seen('ready 1')
    expect(link.ready).toBe(true)
  })

  const broken: { what: string; script: (peer: FakePeer) => void; code: string; names: string }[] = [
    {
      what: 'a challenge in another protocol version',
      script: (peer) =>
        peer.send({
          type: MessageType.CHALLENGE,
          protocolVersion: PROTOCOL_VERSION + 1,
          nonce: randomBytes(NONCE_SIZE),
          auth: false,
        }),
      code: ErrorCode.HANDSHAKE_REJECTED,
      names: `distributor speaks protocol ${PROTOCOL_VERSION + 1}`,
    },
    {
      what: 'a welcome before any challenge',
      script: (peer) => peer.send({ type: MessageType.WELCOME, group: 'default', name: 'main', heartbeatMs: 600_000 }),
      code: ErrorCode.PROTOCOL,
      names: "'welcome' before 'challenge'",
    },
    {
      what: 'a job before the handshake',
      script: (peer) => peer.send({ type: MessageType.DISPATCH, seq: 1, jobs: [] }),
      code: ErrorCode.PROTOCOL,
      names: "unexpected 'dispatch' during the handshake",
    },
  ]

  it.each(broken)(
    'answers $what with an error frame, hangs up and redials, never ready',
    async ({ script, code, names }) => {
      const fake = await fakeDistributor(res)
      const { link, node, logs } = newLink(fake.port)
      link.start()
      const peer = await fake.nextPeer()
      script(peer)
      const error = await peer.nextOfType(MessageType.ERROR)
      expect(error.code).toBe(code)
      expect(error.message).toContain(names)
      await peer.closed
      const [redial] = await logs.waitFor(cannotReach, 1, 'the redial log')
      expect(redial?.reason).toContain(names)
      expect(link.state).toBe('backoff')
      expect(node.events).toEqual([])
    },
  )
})

describe('DistributorLink bounds before the welcome', () => {
  it('a listener that never sends its challenge is hung up on after handshakeTimeoutMs (ERR_HANDSHAKE_TIMEOUT), and redialled', async () => {
    const fake = await fakeDistributor(res)
    const { link, node, logs } = newLink(fake.port, { handshakeTimeoutMs: 200, reconnectMinMs: 10, reconnectMaxMs: 10 })
    link.start()
    const silent = await fake.nextPeer()
    await silent.closed
    const second = await fake.nextPeer()
    expect(link.generation).toBe(2)
    expect(
      logs.matching((e) =>
        /no welcome from distributor .* within 200 ms/.test(String((e as { reason?: unknown }).reason)),
      ),
    ).toHaveLength(1)
    await welcome(second)
    await node.seen('ready 2')
  })

  it('before the welcome, a frame over the handshake limit (64 KiB) is refused: a stranger at that address cannot make the node buffer 16 MiB', async () => {
    const fake = await fakeDistributor(res)
    const { link, node } = newLink(fake.port, {
      maxFrameSize: 16 * 1024 * 1024,
      reconnectMinMs: 10,
      reconnectMaxMs: 10,
    })
    link.start()
    const peer = await fake.nextPeer()
    const length = Buffer.alloc(4)
    length.writeUInt32BE(64 * 1024 + 1, 0)
    peer.sendRaw(length)
    const error = await peer.nextOfType(MessageType.ERROR)
    expect(error.code).toBe(ErrorCode.FRAME_TOO_LARGE)
    await peer.closed
    // Welcomed, the link takes frames up to its own limit again.
    const second = await fake.nextPeer()
    await welcome(second)
    await node.seen('ready 2')
    const big = { type: MessageType.FEEDBACK_ACK, seq: 1, pad: 'x'.repeat(100 * 1024) }
    second.sendMessage(big)
    await node.seen('message feedback-ack')
  })
})

describe('DistributorLink across connections', () => {
  it('tells its node of a drop once, redials, and drops answers meant for an earlier connection', async () => {
    const fake = await fakeDistributor(res)
    const { link, node } = newLink(fake.port, { reconnectMinMs: 10, reconnectMaxMs: 10 })
    link.start()
    const first = await fake.nextPeer()
    await welcome(first)
    await node.seen('ready 1')
    expect(link.generation).toBe(1)

    await first.destroy()
    await node.seen('down 1')
    expect(node.downReasons).toHaveLength(1)
    expect(link.ready).toBe(false)
    expect(link.sendOn(1, { type: MessageType.ACCEPTED, seq: 5 })).toBe(false)

    const second = await fake.nextPeer()
    await welcome(second, { name: 'main-restarted' })
    await node.seen('ready 2')
    expect(link.generation).toBe(2)
    expect(link.memberName).toBe('main-restarted')
    // Frame numbers start again on every connection: an answer to frame 6 of the first one
    // would name another frame here. It is dropped; this connection's own goes out.
    expect(link.sendOn(1, { type: MessageType.ACCEPTED, seq: 6 })).toBe(false)
    expect(link.sendOn(2, { type: MessageType.ACCEPTED, seq: 7 })).toBe(true)
    expect(await second.next()).toEqual({ type: MessageType.ACCEPTED, seq: 7 })
    expect(node.events).toEqual(['ready 1', 'down 1', 'ready 2'])
  })

  it('close() while connected tells its node the link is down, and never redials', async () => {
    const fake = await fakeDistributor(res)
    const { link, node, logs } = newLink(fake.port)
    link.start()
    const peer = await fake.nextPeer()
    await welcome(peer)
    await node.seen('ready 1')
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    link.close()
    await peer.closed
    await node.seen('down 1')
    expect(link.state).toBe('closed')
    vi.advanceTimersByTime(60_000)
    expect(link.generation).toBe(1)
    expect(logs.matching(redials)).toEqual([])
  })
})

describe('DistributorLink backoff', () => {
  /** Fails each dial at once and checks the delay before the next: none before it, one at it. */
  async function expectDelays(random: number, delays: number[]): Promise<void> {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    vi.spyOn(Math, 'random').mockReturnValue(random)
    const { link, logs } = newLink(await closedPort())
    link.start()
    for (const [i, delay] of delays.entries()) {
      const attempts = await logs.waitFor(cannotReach, i + 1, `failed dial ${i + 1}`)
      expect(attempts[i]?.retryInMs).toBe(delay)
      expect(link.state).toBe('backoff')
      vi.advanceTimersByTime(delay - 1)
      expect(link.generation).toBe(i + 1)
      vi.advanceTimersByTime(1)
      expect(link.generation).toBe(i + 2)
      expect(link.state).toBe('connecting')
    }
    // Only the first failure in a row is worth a warning.
    expect(logs.matching(cannotReach).map((e) => e.level)).toEqual([
      LEVEL.warn,
      ...delays.slice(1).map(() => LEVEL.debug),
    ])
  }

  it('doubles from reconnectMinMs up to reconnectMaxMs, at most the ceiling', async () => {
    await expectDelays(0.9999999, [100, 200, 400, 800, 1000, 1000])
  })

  it('waits at least half the ceiling (the jitter spreads a fleet of nodes)', async () => {
    await expectDelays(0, [50, 100, 200, 400, 500, 500])
  })

  it('starts again from reconnectMinMs once a connection was welcomed', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    vi.spyOn(Math, 'random').mockReturnValue(0.9999999)
    const fake = await fakeDistributor(res)
    const { link, node, logs } = newLink(fake.port)
    link.start()
    for (const delay of [100, 200]) {
      await (await fake.nextPeer()).destroy()
      const [failed] = (await logs.waitFor(redials, delay === 100 ? 1 : 2, 'a failed dial')).slice(-1)
      expect(failed?.retryInMs).toBe(delay)
      vi.advanceTimersByTime(delay)
    }
    const peer = await fake.nextPeer()
    await welcome(peer)
    await node.seen('ready 3')
    await peer.destroy()
    const [dropped] = await logs.waitFor(lost, 1, 'the lost-link log')
    expect(dropped).toMatchObject({ level: LEVEL.warn, retryInMs: 100 })
  })

  const refusals: { code: string; level: number; delay: number }[] = [
    // 100 ms × 2^8, at most reconnectMaxMs (here 100 s): a refusal is not worth hammering.
    { code: ErrorCode.AUTH, level: LEVEL.error, delay: 25_600 },
    { code: ErrorCode.HANDSHAKE_REJECTED, level: LEVEL.warn, delay: 25_600 },
    // Any other refusal (a timeout, say) may pass: the usual backoff.
    { code: ErrorCode.HANDSHAKE_TIMEOUT, level: LEVEL.warn, delay: 100 },
  ]

  it.each(refusals)(
    'a distributor that refuses the handshake with $code is logged, and redialled after $delay ms',
    async ({ code, level, delay }) => {
      vi.spyOn(Math, 'random').mockReturnValue(0.9999999)
      const fake = await fakeDistributor(res)
      const { link, node, logs } = newLink(fake.port, { reconnectMaxMs: 100_000 })
      link.start()
      const peer = await fake.nextPeer()
      peer.send({
        type: MessageType.CHALLENGE,
        protocolVersion: PROTOCOL_VERSION,
        nonce: randomBytes(NONCE_SIZE),
        auth: false,
      })
      await peer.nextOfType(MessageType.HELLO)
      peer.send({ type: MessageType.ERROR, code, message: 'not you' })
      const [refused] = await logs.waitFor(
        (e) => e.msg === 'distributor refused the handshake: not you',
        1,
        'the refusal log',
      )
      expect(refused).toMatchObject({ level, code })
      const [redial] = await logs.waitFor(cannotReach, 1, 'the redial log')
      expect(redial?.retryInMs).toBe(delay)
      expect(node.events).toEqual([])
    },
  )

  it('a distributor that cannot prove the secret is hung up on with ERR_AUTH, and redialled only after a long backoff', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.9999999)
    const fake = await fakeDistributor(res)
    const { link, node, logs } = newLink(fake.port, { secret: 'sesame', reconnectMaxMs: 100_000 })
    link.start()
    const peer = await fake.nextPeer()
    await welcome(peer, { secret: 'not sesame' })
    const error = await peer.nextOfType(MessageType.ERROR)
    expect(error).toEqual({
      type: MessageType.ERROR,
      code: ErrorCode.AUTH,
      message: `distributor 127.0.0.1:${fake.port} did not prove the shared secret`,
    })
    const [redial] = await logs.waitFor(cannotReach, 1, 'the redial log')
    expect(redial?.retryInMs).toBe(25_600)
    expect(link.ready).toBe(false)
    expect(node.events).toEqual([])
  })

  it('close() in backoff cancels the redial', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
    const { link, logs } = newLink(await closedPort())
    link.start()
    await logs.waitFor(cannotReach, 1, 'the first failed dial')
    expect(link.generation).toBe(1)
    expect(vi.getTimerCount()).toBe(1)
    link.close()
    expect(link.state).toBe('closed')
    // Disarmed, not left to fire: a pending timer would keep a closing process alive.
    expect(vi.getTimerCount()).toBe(0)
    vi.advanceTimersByTime(60_000)
    expect(link.generation).toBe(1)
    expect(link.state).toBe('closed')
  })
})
