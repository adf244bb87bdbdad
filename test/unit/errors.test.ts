import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import {
  AcceptTimeoutError,
  AdminRequestError,
  AdminUnreachableError,
  AuthError,
  CancelJob,
  RateLimited,
  coerceError,
  ConnectionClosedError,
  deserializeError,
  DistributorClosedError,
  ERROR_CLASSES,
  ErrorCode,
  FrameTooLargeError,
  HandedOverError,
  DeduplicatedError,
  HandshakeError,
  HandshakeTimeoutError,
  HeartbeatTimeoutError,
  InvalidArgumentError,
  isErrorCode,
  JobFailedError,
  JobFileError,
  JobsError,
  NameTakenError,
  NodeTimeoutError,
  NodeUnavailableError,
  NotReadyError,
  ProtocolError,
  QueueFullError,
  serializeError,
  StoreError,
  StoreTimeoutError,
  TimeoutError,
  UnknownJobError,
  UnrecoverableError,
} from '../../src/errors.js'
import { TypedEmitter } from '../../src/events.js'
import { JobReactor } from '../../src/jr.js'
import { loadJobDirectory } from '../../src/node/job-loader.js'
import { JobRegistry } from '../../src/node/registry.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** One instance of every class, each built the way the code builds it (default messages where there are). */
function oneOfEach(): Error[] {
  return [
    new InvalidArgumentError(`'port' must be an integer in 1..65535`),
    new QueueFullError(10),
    new FrameTooLargeError(2048, 1024),
    new ProtocolError(`unexpected 'hello'`),
    new HandshakeError('invalid node name'),
    new HandshakeTimeoutError('no hello within 10 ms'),
    new AuthError(),
    new ConnectionClosedError(),
    new HeartbeatTimeoutError('peer x silent for 30 ms'),
    new UnknownJobError('nope', 'w1'),
    new JobFailedError('j', 'id1', { error: { message: 'boom' } }),
    new TimeoutError(1.5),
    new CancelJob(),
    new RateLimited(2.5),
    new UnrecoverableError('retrying will not help'),
    new DistributorClosedError(),
    new NotReadyError(),
    new StoreError('store is closed'),
    new StoreTimeoutError(5000, 2),
    new AcceptTimeoutError('w1', 3, 10000),
    new JobFileError(`job directory 'x' does not exist`),
    new NameTakenError(`distributor name 'a' of group 'web' is held by a live member`),
    new HandedOverError(),
    new DeduplicatedError('j1', 'web-1', 'report'),
    new AdminRequestError('POST http://127.0.0.1:3000/jr/api/jobs/j1/cancel', 403, 'ERR_FORBIDDEN', 'acting is off'),
    new AdminUnreachableError('cannot reach the admin API at http://127.0.0.1:3000/jr/: connect ECONNREFUSED'),
    new NodeUnavailableError(`node 'w1' is not connected`),
    new NodeTimeoutError('w1', 5000),
  ]
}

function codeOf(err: Error): unknown {
  return (err as Error & { code?: unknown }).code
}

describe('error classes', () => {
  it('every ErrorCode has exactly one class, and every class one code', () => {
    const errors = oneOfEach()
    const codes = errors.map(codeOf)
    expect([...codes].sort()).toEqual(Object.values(ErrorCode).sort())
    expect(new Set(errors.map((e) => e.constructor)).size).toBe(errors.length)
    for (const err of errors) {
      expect(ERROR_CLASSES[codeOf(err) as ErrorCode]).toBe(err.constructor)
      expect(err.name).toBe(err.constructor.name)
    }
    expect(new Set(Object.values(ERROR_CLASSES)).size).toBe(Object.keys(ERROR_CLASSES).length)
  })

  it('all are JobsErrors but CancelJob and RateLimited, signals', () => {
    for (const err of oneOfEach())
      expect(err instanceof JobsError, err.name).toBe(!(err instanceof CancelJob || err instanceof RateLimited))
  })

  it('RateLimited takes seconds in (0, 86400], else InvalidArgumentError naming them; a rebuilt one keeps them', () => {
    expect(new RateLimited(86_400).seconds).toBe(86_400)
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 86_401, '2' as unknown as number])
      expect(() => new RateLimited(bad), String(bad)).toThrow(/'seconds' of rateLimit/)
    expect(() => new RateLimited(0)).toThrow(InvalidArgumentError)
    const copy = deserializeError(serializeError(new RateLimited(0.25))) as RateLimited
    expect(copy).toBeInstanceOf(RateLimited)
    expect(copy.seconds).toBe(0.25)
  })

  it('messages are lowercase', () => {
    for (const err of oneOfEach()) expect(err.message, err.name).toMatch(/^[^A-Z]/)
  })

  it('keeps a cause', () => {
    const cause = new Error('ENOENT')
    expect(new JobFileError('cannot load job file x.js: ENOENT', { cause }).cause).toBe(cause)
    expect(new InvalidArgumentError('bad', { cause }).cause).toBe(cause)
  })

  it('isErrorCode knows the codes of this project only', () => {
    expect(isErrorCode('ERR_JOB_TIMEOUT')).toBe(true)
    expect(isErrorCode('ERR_UNKNOWN_FILE_EXTENSION')).toBe(false)
    expect(isErrorCode(undefined)).toBe(false)
  })
})

describe('deserializeError', () => {
  it('rebuilds every code as an instance of its class, with the sender message, name and stack', () => {
    for (const original of oneOfEach()) {
      const copy = deserializeError(structuredClone(serializeError(original)))
      expect(copy).toBeInstanceOf(original.constructor)
      expect(copy).toBeInstanceOf(Error)
      expect(codeOf(copy)).toBe(codeOf(original))
      expect(copy.message).toBe(original.message)
      expect(copy.name).toBe(original.name)
      expect(copy.stack).toBe(original.stack)
      expect(serializeError(copy)).toEqual(serializeError(original))
    }
  })

  it('a rebuilt JobFailedError has empty args, jobId and jobName', () => {
    const copy = deserializeError(serializeError(new JobFailedError('j', 'id1', { error: { message: 'boom' } })))
    expect(copy).toMatchObject({ code: ErrorCode.JOB_FAILED, args: {}, jobId: '', jobName: '' })
  })

  it('a rebuilt AdminRequestError has status 0 and no server code', () => {
    const copy = deserializeError(
      serializeError(new AdminRequestError('GET http://h/api/nodes', 404, 'ERR_NOT_FOUND', 'x')),
    )
    expect(copy).toMatchObject({ code: ErrorCode.ADMIN_REQUEST, status: 0, serverCode: undefined })
  })

  it('keeps the name a subclass gave', () => {
    class MyFatal extends UnrecoverableError {}
    const copy = deserializeError(serializeError(new MyFatal('disk is gone')))
    expect(copy).toBeInstanceOf(UnrecoverableError)
    expect(copy).toMatchObject({ name: 'MyFatal', code: ErrorCode.UNRECOVERABLE, message: 'disk is gone' })
  })

  it('carries any other code on a plain Error, not a JobsError', () => {
    const copy = deserializeError({ name: 'Error', message: 'no such file', code: 'ENOENT' })
    expect(copy).not.toBeInstanceOf(JobsError)
    expect(copy).toMatchObject({ name: 'Error', message: 'no such file', code: 'ENOENT' })
    const plain = deserializeError({ name: 'TypeError', message: 'x is not a function' })
    expect(plain).not.toHaveProperty('code')
    expect(plain.name).toBe('TypeError')
    expect(deserializeError(undefined).message).toBe('unknown error')
  })
})

describe('coerceError', () => {
  it('passes an Error through and turns anything else into one', () => {
    const err = new TypeError('x')
    expect(coerceError(err)).toBe(err)
    expect(coerceError('boom')).toMatchObject({ message: 'boom' })
    expect(coerceError({ a: 1 })).toMatchObject({ message: 'non-error thrown: {"a":1}' })
    expect(coerceError(undefined)).toMatchObject({ message: 'non-error thrown: undefined' })
    const cyclic: Record<string, unknown> = {}
    cyclic['self'] = cyclic
    expect(coerceError(cyclic)).toBeInstanceOf(Error)
  })

  it('an event listener that throws a non-Error is reported as an Error', () => {
    const seen: unknown[] = []
    class Emitter extends TypedEmitter<{ tick: { n: number } }> {
      emit(n: number): void {
        this.safeEmit('tick', { n })
      }
      protected override onListenerError(_event: string, err: Error): void {
        seen.push(err)
      }
    }
    const e = new Emitter()
    e.on('tick', () => {
      throw 'listener broke'
    })
    e.emit(1)
    expect(seen).toHaveLength(1)
    expect(seen[0]).toBeInstanceOf(Error)
    expect(seen[0]).toMatchObject({ message: 'listener broke' })
  })
})

describe('where errors are thrown', () => {
  it('JR without a distributor throws ERR_NOT_READY', () => {
    const jr = new JobReactor()
    expect(() => jr.enqueue('x')).toThrow(expect.objectContaining({ code: ErrorCode.NOT_READY }))
  })

  it('a missing job directory or a job file that throws is ERR_JOB_FILE', async () => {
    await expect(loadJobDirectory(join(tmpdir(), 'no-such-jr-job-directory'), new JobRegistry())).rejects.toMatchObject(
      {
        code: ErrorCode.JOB_FILE,
        message: expect.stringMatching(/^job directory '.*no-such-jr-job-directory' does not exist/),
      },
    )
    const dir = mkdtempSync(join(tmpdir(), 'jr-job-file-'))
    try {
      // A job file that throws something that is not an Error still gets a message.
      writeFileSync(join(dir, 'bad.mjs'), "throw 'not an error'\n")
      const err = await loadJobDirectory(dir, new JobRegistry()).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(JobFileError)
      expect(err).toMatchObject({
        code: ErrorCode.JOB_FILE,
        message: expect.stringMatching(/^cannot load job file .*bad\.mjs: not an error$/),
      })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sourceFiles(path)
    return entry.name.endsWith('.ts') ? [path] : []
  })
}

describe('construction', () => {
  it('only errors.ts constructs or extends JobsError, and nothing passes a code to a class', () => {
    const found: Record<string, string[]> = {}
    const constructsByCode = /new JobsError\(|extends JobsError\b|new \w+(Error|Job)\(.*(ErrorCode\.|'ERR_)/
    for (const file of sourceFiles(join(ROOT, 'src'))) {
      const name = relative(ROOT, file).split('\\').join('/')
      if (name === 'src/errors.ts') continue
      const lines = readFileSync(file, 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => constructsByCode.test(l))
      if (lines.length > 0) found[name] = lines
    }
    expect(found).toEqual({})
  })
})

describe('the error-code table in docs/configuration.md', () => {
  it('lists every code once, with its class', () => {
    const doc = readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8')
    const section = doc.slice(doc.indexOf('## Error codes'))
    const end = section.indexOf('\n## ', 1)
    const rows = (end === -1 ? section : section.slice(0, end))
      .split('\n')
      .filter((line) => /^\| `ERR_/.test(line))
      .map((line) => line.split('|').map((cell) => cell.trim()))
    const listed = rows.map((cells) => [cells[1], cells[2]])
    expect(listed.map(([code]) => code).sort()).toEqual(
      Object.values(ErrorCode)
        .map((c) => `\`${c}\``)
        .sort(),
    )
    for (const [code, cls] of listed) {
      expect(cls, String(code)).toBe(`\`${ERROR_CLASSES[String(code).slice(1, -1) as ErrorCode].name}\``)
    }
    for (const cells of rows) expect(cells[3], cells[1]).not.toBe('')
  })
})
