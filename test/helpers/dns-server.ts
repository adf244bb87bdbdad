import { createSocket, type RemoteInfo } from 'node:dgram'
import { isIPv4, isIPv6 } from 'node:net'

/** The records of one name; a family left out has no records (NOERROR, no answers). */
export interface DnsRecords {
  a?: string[]
  aaaa?: string[]
  /** Seconds, on every answer record of the name. @default 60 */
  ttl?: number
}

export interface DnsServer {
  readonly port: number
  /** `127.0.0.1:<port>`, the form `JR_DNS_SERVER` takes. */
  readonly address: string
  /** Queries received so far, answered or not. */
  readonly queries: number
  /** Creates or replaces the records of `name`. */
  set(name: string, records: DnsRecords): void
  /** Forgets `name`: it answers NXDOMAIN from now on. */
  remove(name: string): void
  /** Stops listening: queries from then on go unanswered. Harmless when closed already. */
  close(): Promise<void>
}

const TYPE_A = 1
const TYPE_AAAA = 28
const CLASS_IN = 1
const RCODE_FORMERR = 1
const RCODE_NXDOMAIN = 3
const HEADER_BYTES = 12
/** A compression pointer to the question's name, which always starts right after the header. */
const NAME_POINTER = 0xc000 | HEADER_BYTES
const DEFAULT_TTL = 60

/**
 * A minimal authoritative DNS server over UDP on 127.0.0.1, for tests: it answers A and AAAA
 * questions from a table the test edits, NXDOMAIN for names it does not know. `port` starts it
 * where a closed one listened, for a server that comes back; by default it takes a free port.
 *
 * WHY by hand and not a package: the wire format of one question and a few address records
 * is fifty lines, and the test controls every byte (TTLs, empty answers, silence).
 */
export async function startDnsServer(options: { port?: number } = {}): Promise<DnsServer> {
  const zone = new Map<string, Required<DnsRecords>>()
  const socket = createSocket('udp4')
  let queries = 0
  let closed = false

  socket.on('message', (query: Buffer, peer: RemoteInfo) => {
    queries++
    const reply = answer(query, zone)
    if (reply !== undefined) socket.send(reply, peer.port, peer.address)
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(options.port ?? 0, '127.0.0.1', () => {
      socket.off('error', reject)
      resolve()
    })
  })
  const port = socket.address().port

  return {
    port,
    address: `127.0.0.1:${port}`,
    get queries() {
      return queries
    },
    set(name, records) {
      for (const ip of records.a ?? []) if (!isIPv4(ip)) throw new Error(`not an IPv4 address: ${ip}`)
      for (const ip of records.aaaa ?? []) if (!isIPv6(ip)) throw new Error(`not an IPv6 address: ${ip}`)
      zone.set(canonical(name), { a: records.a ?? [], aaaa: records.aaaa ?? [], ttl: records.ttl ?? DEFAULT_TTL })
    },
    remove(name) {
      zone.delete(canonical(name))
    },
    close() {
      if (closed) return Promise.resolve()
      closed = true
      return new Promise((resolve) => socket.close(() => resolve()))
    },
  }
}

/** The reply to `query`, or undefined when it is too broken to answer at all. */
function answer(query: Buffer, zone: ReadonlyMap<string, Required<DnsRecords>>): Buffer | undefined {
  if (query.length < HEADER_BYTES) return undefined
  const id = query.readUInt16BE(0)
  const flags = query.readUInt16BE(2)
  if (flags & 0x8000) return undefined // a response, not a query
  const question = query.readUInt16BE(4) === 1 ? readQuestion(query) : undefined
  if (question === undefined) return header(id, flags, RCODE_FORMERR, 0, 0)

  const records = zone.get(question.name)
  const ips = records === undefined ? [] : addressesOf(records, question.type, question.qclass)
  const rcode = records === undefined ? RCODE_NXDOMAIN : 0
  const parts = [header(id, flags, rcode, 1, ips.length), query.subarray(HEADER_BYTES, question.end)]
  for (const ip of ips) parts.push(record(question.type, records!.ttl, ip))
  return Buffer.concat(parts)
}

function addressesOf(records: Required<DnsRecords>, type: number, qclass: number): string[] {
  if (qclass !== CLASS_IN) return []
  if (type === TYPE_A) return records.a
  if (type === TYPE_AAAA) return records.aaaa
  return []
}

/** The one question, uncompressed (as resolvers send it); `end` is the offset past it. */
function readQuestion(query: Buffer): { name: string; type: number; qclass: number; end: number } | undefined {
  const labels: string[] = []
  let at = HEADER_BYTES
  for (;;) {
    const length = query[at]
    if (length === undefined || length > 63) return undefined
    at++
    if (length === 0) break
    if (at + length > query.length) return undefined
    labels.push(query.toString('latin1', at, at + length))
    at += length
  }
  if (at + 4 > query.length) return undefined
  return {
    name: canonical(labels.join('.')),
    type: query.readUInt16BE(at),
    qclass: query.readUInt16BE(at + 2),
    end: at + 4,
  }
}

/** QR and AA set, opcode and RD echoed, TC clear: answers here always fit in one datagram. */
function header(id: number, queryFlags: number, rcode: number, questions: number, answers: number): Buffer {
  const out = Buffer.alloc(HEADER_BYTES)
  out.writeUInt16BE(id, 0)
  out.writeUInt16BE(0x8000 | (queryFlags & 0x7900) | 0x0400 | rcode, 2)
  out.writeUInt16BE(questions, 4)
  out.writeUInt16BE(answers, 6)
  return out
}

function record(type: number, ttl: number, ip: string): Buffer {
  const rdata = type === TYPE_A ? Buffer.from(ip.split('.').map(Number)) : ipv6Bytes(ip)
  const out = Buffer.alloc(10 + 2)
  out.writeUInt16BE(NAME_POINTER, 0)
  out.writeUInt16BE(type, 2)
  out.writeUInt16BE(CLASS_IN, 4)
  out.writeUInt32BE(ttl, 6)
  out.writeUInt16BE(rdata.length, 10)
  return Buffer.concat([out, rdata])
}

/** The 16 bytes of a valid IPv6 address, `::` and a dotted IPv4 tail included. */
function ipv6Bytes(ip: string): Buffer {
  let text = ip
  const v4 = /:(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4 !== null) {
    const [a, b, c, d] = v4[1]!.split('.').map(Number) as [number, number, number, number]
    text = `${text.slice(0, v4.index)}:${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head, tail] = text.split('::') as [string, string | undefined]
  const groupsOf = (part: string | undefined): string[] => (part === undefined || part === '' ? [] : part.split(':'))
  const front = groupsOf(head)
  const back = groupsOf(tail)
  const groups = tail === undefined ? front : [...front, ...Array(8 - front.length - back.length).fill('0'), ...back]
  const out = Buffer.alloc(16)
  for (const [i, group] of groups.entries()) out.writeUInt16BE(Number.parseInt(group, 16), 2 * i)
  return out
}

function canonical(name: string): string {
  return name.toLowerCase().replace(/\.$/, '')
}
