import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { Distributor } from '../../src/distributor/distributor.js'
import { ErrorCode, InvalidArgumentError } from '../../src/errors.js'
import { Node } from '../../src/node/node.js'
import type { NodeOptions } from '../../src/node/options.js'
import { distributorProof, NONCE_SIZE, nodeProof } from '../../src/protocol/handshake.js'
import { MessageType, PROTOCOL_VERSION, type Message } from '../../src/protocol/messages.js'
import { config, FIXTURE_JOBS, Resources, startDistributor, startNode } from '../helpers/cluster.js'
import { fakeDistributor } from '../helpers/fake-peer.js'
import { LEVEL, LogCapture, redialled, type LogEntry } from '../helpers/log-capture.js'
import { connectPeer, expectEchoCompletes, expectError } from '../helpers/peers.js'
import { within } from '../helpers/within.js'

const res = new Resources()
afterEach(() => res.releaseAll())

const SECRET = 'correct horse battery staple'
const OTHER_SECRET = 'incorrect donkey battery paperclip'

/** An in-process node that may never connect (startNode would wait for it forever). */
async function dialingNode(
  port: number,
  options: Partial<NodeOptions> & { name: string },
): Promise<{ node: Node; log: LogCapture; ups: string[] }> {
  const log = new LogCapture()
  const node = new Node(
    {
      distributors: [`127.0.0.1:${port}`],
      jobDirectory: FIXTURE_JOBS,
      logger: log.logger,
      reconnectMinMs: 10,
      reconnectMaxMs: 5000,
      ...options,
    },
    config(),
  )
  res.add(node, (n) => n.close({ force: true }))
  const ups: string[] = []
  node.on('link:up', (e) => ups.push(e.distributor))
  await node.start()
  return { node, log, ups }
}

/** Names of the nodes that completed a handshake with `d` from now on. */
function connectsTo(d: Distributor): string[] {
  const names: string[] = []
  d.on('node:connect', (e) => names.push(e.node))
  return names
}

// --- shared secret ----------------------------------------------------------------------

describe('shared secret', () => {
  it("a node with the right secret runs jobs, and each side proves the secret over the other's fresh nonce", async () => {
    const d = await startDistributor(res, { secret: SECRET })
    await startNode(res, d, { name: 'trusted', secret: SECRET })
    await expectEchoCompletes(d, 'trusted')

    // The same exchange by hand: the challenge asks for a proof, and the welcome carries
    // the distributor's, bound to both nonces and the node's name.
    const peer = await connectPeer(res, d.port)
    const nonce = randomBytes(NONCE_SIZE)
    const { challenge, welcome } = await peer.handshake({ node: 'by-hand', secret: SECRET, nonce })
    expect(challenge.auth).toBe(true)
    expect(challenge.nonce).toHaveLength(NONCE_SIZE)
    expect(welcome.proof).toEqual(distributorProof(SECRET, challenge.nonce, nonce, 'by-hand'))
    // A distributor's proof is never the node's proof reflected back.
    expect(welcome.proof).not.toEqual(nodeProof(SECRET, challenge.nonce, nonce, 'by-hand'))
  })

  it('a node with the wrong secret is refused with ERR_AUTH, logs why, backs off, and never connects; a right one still does', async () => {
    const d = await startDistributor(res, { secret: SECRET })
    const connected = connectsTo(d)
    const rejected = d.waitFor('node:rejected')
    const intruder = await dialingNode(d.port, { name: 'intruder', secret: OTHER_SECRET })

    const rejection = await within(rejected, 'node:rejected')
    expect(rejection.code).toBe(ErrorCode.AUTH)
    expect(rejection.message).toBe(`node 'intruder' failed authentication: wrong proof of the shared secret`)

    // The node says so at error level, naming the code and the distributor's reason …
    const [refused] = await intruder.log.waitFor(
      (e) => e.msg.startsWith('distributor refused the handshake'),
      1,
      'the refusal log',
    )
    expect(refused).toMatchObject({ level: LEVEL.error, code: 'ERR_AUTH' })
    expect(refused?.msg).toContain('wrong proof of the shared secret')
    // … and waits long before it tries again (reconnectMinMs is 10 ms here).
    const [redial] = await intruder.log.waitFor(redialled, 1, 'the redial log')
    expect(redial?.retryInMs).toBeGreaterThanOrEqual(1000)
    expect(intruder.log.matching(redialled)).toHaveLength(1)

    expect(intruder.ups).toEqual([])
    expect(intruder.node.connectedDistributors).toEqual([])
    expect(d.nodes).toEqual([])

    await startNode(res, d, { name: 'trusted', secret: SECRET })
    await expectEchoCompletes(d, 'trusted')
    expect(connected).toEqual(['trusted'])
  })

  it('a node without a secret is refused with ERR_AUTH and logs that it has none', async () => {
    const d = await startDistributor(res, { secret: SECRET })
    const connected = connectsTo(d)
    const rejected = d.waitFor('node:rejected')
    const bare = await dialingNode(d.port, { name: 'bare' })

    const rejection = await within(rejected, 'node:rejected')
    expect(rejection.code).toBe(ErrorCode.AUTH)
    expect(rejection.message).toContain('no proof')
    const [missing] = await bare.log.waitFor(
      (e) => e.msg === 'distributor requires a secret and this node has none',
      1,
      'the no-secret log',
    )
    expect(missing?.level).toBe(LEVEL.error)
    const [redial] = await bare.log.waitFor(redialled, 1, 'the redial log')
    expect(redial?.retryInMs).toBeGreaterThanOrEqual(1000)
    expect(bare.ups).toEqual([])
    expect(connected).toEqual([])
  })

  it('a hello replayed on a new connection is refused with ERR_AUTH (its proof covers the old nonce)', async () => {
    const d = await startDistributor(res, { secret: SECRET })
    const first = await connectPeer(res, d.port)
    const challenge = await first.nextOfType(MessageType.CHALLENGE)
    const hello = first.hello(challenge, { node: 'victim', jobs: ['echo'], secret: SECRET })
    first.sendMessage(hello)
    expect((await first.nextOfType(MessageType.WELCOME)).proof).toBeDefined()

    const rejected = d.waitFor('node:rejected')
    const replay = await connectPeer(res, d.port)
    const fresh = await replay.nextOfType(MessageType.CHALLENGE)
    expect(Buffer.from(fresh.nonce).equals(Buffer.from(challenge.nonce))).toBe(false)
    replay.sendMessage(hello) // byte for byte what the genuine node sent
    const error = expectError(await replay.next(), ErrorCode.AUTH)
    expect(error.message).toContain('wrong proof')
    await within(replay.closed, 'the replaying connection to close')
    expect((await rejected).code).toBe(ErrorCode.AUTH)
    expect(replay.received.map((m) => m.type)).toEqual(['challenge', 'error'])
    // The genuine connection is untouched.
    expect(first.isOpen).toBe(true)
    expect(d.nodes).toEqual(['victim'])
  })

  it('a proof is bound to the node name: one made for another name is refused', async () => {
    const d = await startDistributor(res, { secret: SECRET })
    const peer = await connectPeer(res, d.port)
    const challenge = await peer.nextOfType(MessageType.CHALLENGE)
    const hello = peer.hello(challenge, { node: 'honest', secret: SECRET })
    peer.sendMessage({ ...hello, node: 'impersonated' })
    expectError(await peer.next(), ErrorCode.AUTH)
    await within(peer.closed, 'the connection to close')
    expect(d.nodes).toEqual([])
  })

  type Hello = Extract<Message, { type: 'hello' }>
  const impostors: {
    what: string
    auth: boolean
    proof: (challengeNonce: Uint8Array, hello: Hello) => Uint8Array | undefined
  }[] = [
    { what: 'a random proof', auth: true, proof: () => randomBytes(32) },
    { what: 'no proof (it asks for none)', auth: false, proof: () => undefined },
    { what: "the node's own proof reflected back", auth: true, proof: (_, hello) => hello.proof },
    {
      what: 'a proof made with another secret',
      auth: true,
      proof: (nonce, hello) => distributorProof(OTHER_SECRET, nonce, hello.nonce, hello.node),
    },
  ]

  it.each(impostors)(
    'a node with a secret refuses a distributor whose welcome carries $what',
    async ({ auth, proof }) => {
      const fake = await fakeDistributor(res)
      const careful = await dialingNode(fake.port, { name: 'careful', secret: SECRET })
      const peer = await within(fake.nextPeer(), 'a connection to the fake distributor')

      const nonce = randomBytes(NONCE_SIZE)
      peer.sendMessage({ type: MessageType.CHALLENGE, protocolVersion: PROTOCOL_VERSION, nonce, auth })
      const hello = await peer.nextOfType(MessageType.HELLO)
      // The node proved itself (even unasked), so the fake now holds a valid node proof.
      expect(hello.proof).toEqual(nodeProof(SECRET, nonce, hello.nonce, 'careful'))
      const forged = proof(nonce, hello)
      peer.sendMessage({
        type: MessageType.WELCOME,
        group: 'default',
        name: 'impostor',
        heartbeatMs: 1000,
        ...(forged === undefined ? {} : { proof: forged }),
      })

      const error = expectError(await peer.next(), ErrorCode.AUTH)
      expect(error.message).toBe(`distributor 127.0.0.1:${fake.port} did not prove the shared secret`)
      await within(peer.closed, 'the node to hang up')

      const [logged] = await careful.log.waitFor((e) => e.code === ErrorCode.AUTH, 1, 'an ERR_AUTH log line')
      expect(logged?.level).toBeGreaterThanOrEqual(LEVEL.warn)
      expect(logged?.err).toContain('did not prove the shared secret')
      const [redial] = await careful.log.waitFor(redialled, 1, 'the redial log')
      expect(redial?.retryInMs).toBeGreaterThanOrEqual(1000)
      expect(careful.ups).toEqual([])
      expect(careful.node.connectedDistributors).toEqual([])
      expect(peer.received.map((m) => m.type)).toEqual(['hello', 'error'])
    },
  )
})

// --- TLS --------------------------------------------------------------------------------

interface Pem {
  cert: Buffer
  key: Buffer
}

/** Certificates made at test time with the openssl CLI; nothing is committed. */
interface Pki {
  ca: Pem
  server: Pem
  client: Pem
  otherCa: Pem
  /** A client certificate signed by otherCa. */
  strangerClient: Pem
}

function makePki(dir: string): Pki {
  const run = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
  }
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  const read = (name: string): Pem => ({
    cert: readFileSync(join(dir, `${name}.crt`)),
    key: readFileSync(join(dir, `${name}.key`)),
  })
  const ca = (name: string): Pem => {
    run(
      'req',
      '-x509',
      ...ec,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign',
    )
    return read(name)
  }
  const leaf = (name: string, issuer: string, extensions: string): Pem => {
    run('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`)
    writeFileSync(join(dir, `${name}.ext`), extensions)
    run(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${issuer}.crt`,
      '-CAkey',
      `${issuer}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    )
    return read(name)
  }
  return {
    ca: ca('jr-test-ca'),
    server: leaf(
      'jr-distributor',
      'jr-test-ca',
      'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
    ),
    client: leaf('jr-node', 'jr-test-ca', 'extendedKeyUsage=clientAuth\n'),
    otherCa: ca('jr-other-ca'),
    strangerClient: leaf('jr-stranger', 'jr-other-ca', 'extendedKeyUsage=clientAuth\n'),
  }
}

describe('TLS', () => {
  let dir = ''
  let pki: Pki
  const warnings: Error[] = []
  const onWarning = (w: Error): void => void warnings.push(w)

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'jr-tls-'))
    pki = makePki(dir)
    process.on('warning', onWarning)
  })
  afterAll(() => {
    process.off('warning', onWarning)
    if (dir !== '') rmSync(dir, { recursive: true, force: true })
  })

  const serverTls = (): { cert: Buffer; key: Buffer } => ({ cert: pki.server.cert, key: pki.server.key })
  const tlsHandshakeFailed = (e: LogEntry): boolean => e.msg === 'TLS handshake with a client failed'

  it('jobs complete over TLS with a generated CA, and the distributor speaks no plaintext', async () => {
    const log = new LogCapture()
    const d = await startDistributor(res, { tls: serverTls(), logger: log.logger })
    await startNode(res, d, { name: 'tls-node', tls: { ca: pki.ca.cert } })
    await expectEchoCompletes(d, 'tls-node')
    // Dialling 127.0.0.1 verifies the IP SAN without sending the IP as SNI, which Node
    // deprecates (DEP0123) and RFC 6066 forbids.
    expect(warnings.map((w) => (w as { code?: string }).code)).not.toContain('DEP0123')

    // The same by name: servername checks the DNS SAN.
    await startNode(res, d, { name: 'tls-by-name', tls: { ca: pki.ca.cert, servername: 'localhost' } })

    // A plaintext client gets no challenge: its bytes are not a TLS hello, and it is cut off.
    const plain = await connectPeer(res, d.port)
    plain.sendMessage({ type: 'hello', protocolVersion: PROTOCOL_VERSION, node: 'plain' })
    await within(plain.closed, 'the plaintext client to be cut off')
    expect(plain.received).toEqual([])
    await log.waitFor(tlsHandshakeFailed, 1, 'the TLS failure log')
    expect(d.nodes.sort()).toEqual(['tls-by-name', 'tls-node'])
  })

  it('close() does not wait for a client still in the TLS handshake', async () => {
    // A handshake timeout longer than the test's own: close() must not wait for it.
    const d = await startDistributor(res, { tls: serverTls(), handshakeTimeoutMs: 600_000 })
    const silent = await connectPeer(res, d.port)
    await d.close()
    await silent.closed
    expect(silent.received).toEqual([])
  })

  it('drops a client that opens a TLS port and never starts the handshake, at handshakeTimeoutMs', async () => {
    const log = new LogCapture()
    const d = await startDistributor(res, { tls: serverTls(), handshakeTimeoutMs: 200, logger: log.logger })
    const started = Date.now()
    const silent = await connectPeer(res, d.port)
    // Node's own TLS default would hold the slot for 120 s.
    await within(silent.closed, 'the silent client to be dropped', 3000)
    expect(Date.now() - started).toBeGreaterThanOrEqual(190)
    expect(silent.received).toEqual([])
    const [logged] = await log.waitFor(tlsHandshakeFailed, 1, 'the TLS failure log')
    expect(logged?.code).toBe('ERR_TLS_HANDSHAKE_TIMEOUT')
  })

  const untrusting: { what: string; tls: () => NodeOptions['tls']; reason: RegExp }[] = [
    { what: 'an unknown CA', tls: () => ({ ca: pki.otherCa.cert }), reason: /certificate/i },
    {
      what: 'a name the certificate does not hold',
      tls: () => ({ ca: pki.ca.cert, servername: 'elsewhere.example' }),
      reason: /does not match/,
    },
  ]

  it.each(untrusting)(
    'a node that cannot verify the distributor ($what) never connects and keeps redialling',
    async ({ tls, reason }) => {
      const log = new LogCapture()
      const d = await startDistributor(res, { tls: serverTls(), logger: log.logger })
      const connected = connectsTo(d)
      const doubter = await dialingNode(d.port, { name: 'doubter', tls: tls(), reconnectMaxMs: 40 })

      const attempts = await doubter.log.waitFor(redialled, 3, 'three failed attempts')
      for (const attempt of attempts) expect(attempt.reason).toMatch(reason)
      // The distributor saw each handshake fail, and no node ever got as far as a hello.
      await log.waitFor(tlsHandshakeFailed, 1, "the distributor's TLS failure log")
      expect(doubter.ups).toEqual([])
      expect(connected).toEqual([])
      expect(d.nodes).toEqual([])
    },
  )

  describe('mutual TLS', () => {
    const mutual = (): NonNullable<ConstructorParameters<typeof Distributor>[0]>['tls'] => ({
      ...serverTls(),
      ca: pki.ca.cert,
      requestCert: true,
      rejectUnauthorized: true,
    })

    it('a node with a client certificate from the CA connects and runs jobs', async () => {
      const d = await startDistributor(res, { tls: mutual() })
      await startNode(res, d, {
        name: 'certified',
        tls: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key },
      })
      await expectEchoCompletes(d, 'certified')
    })

    const uncertified: { what: string; tls: () => NodeOptions['tls'] }[] = [
      { what: 'no client certificate', tls: () => ({ ca: pki.ca.cert }) },
      {
        what: 'a client certificate from an unknown CA',
        tls: () => ({ ca: pki.ca.cert, cert: pki.strangerClient.cert, key: pki.strangerClient.key }),
      },
    ]

    it.each(uncertified)('a node with $what is refused and never connects', async ({ tls }) => {
      const log = new LogCapture()
      const d = await startDistributor(res, { tls: mutual(), logger: log.logger })
      const connected = connectsTo(d)
      const outsider = await dialingNode(d.port, { name: 'outsider', tls: tls(), reconnectMaxMs: 40 })

      const failures = await log.waitFor(tlsHandshakeFailed, 2, 'two refused TLS handshakes')
      // Why, in the distributor's log: OpenSSL's reason, or the verification error of the certificate.
      for (const failure of failures)
        expect(`${String(failure.err)} ${String(failure['authorizationError'])}`).toMatch(/certificate|CERT|VERIFY/)
      await outsider.log.waitFor(redialled, 2, 'two failed attempts')
      expect(outsider.ups).toEqual([])
      expect(connected).toEqual([])
    })
  })
})

// --- safe defaults: where a distributor listens ------------------------------------------

describe('safe defaults', () => {
  it('listens on 127.0.0.1 unless told otherwise', async () => {
    const d = new Distributor({ port: 0 })
    res.add(d, (x) => x.close())
    expect(d.options.host).toBe('127.0.0.1')
    const listening = d.waitFor('listening')
    await d.start()
    expect(await listening).toEqual({ host: '127.0.0.1', port: d.port })
  })

  it.each(['0.0.0.0', '::', '192.0.2.10', 'jobs.example.com'])(
    'refuses non-loopback host %s without secret or TLS, saying why',
    (host) => {
      let thrown: unknown
      try {
        new Distributor({ host, port: 0 })
      } catch (err) {
        thrown = err
      }
      expect(thrown).toBeInstanceOf(InvalidArgumentError)
      const message = (thrown as Error).message
      expect(message).toContain(`non-loopback host '${host}'`)
      expect(message).toContain(`without 'secret' or 'tls'`)
      expect(message).toContain('anyone who reaches the port could take jobs')
      expect(message).toContain('insecure: true')
    },
  )

  it.each(['127.0.0.1', '127.0.0.2', 'localhost', '::1'])('accepts loopback host %s without secret or TLS', (host) => {
    expect(new Distributor({ host, port: 0 }).options.host).toBe(host)
  })

  it('accepts a non-loopback host with a secret, with TLS, or with insecure: true (and then listens on it)', async () => {
    expect(new Distributor({ host: '0.0.0.0', port: 0, secret: SECRET }).options.secret).toBe(SECRET)
    expect(new Distributor({ host: '0.0.0.0', port: 0, tls: {} }).options.tls).toEqual({})
    const d = new Distributor({ host: '0.0.0.0', port: 0, insecure: true })
    res.add(d, (x) => x.close())
    await d.start()
    expect(d.listening).toBe(true)
    expect(d.port).toBeGreaterThan(0)
    await d.close()
    expect(d.listening).toBe(false)
  })
})
