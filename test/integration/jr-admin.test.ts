import { existsSync } from 'node:fs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { pack } from '../../src/protocol/msgpack.js'
import { RedisStore } from '../../src/storage/redis/redis-store.js'
import { JobStatus } from '../../src/storage/store.js'
import { BUILT_CLI, type JrRun, jr, spawnJr } from '../helpers/jr-cli.js'
import { freePort } from '../helpers/redis-server.js'
import { unique, useRedis } from '../helpers/shared-redis.js'
import { makeFeedback, makeJob } from '../helpers/store-conformance.js'

const server = useRedis()

/** A fresh key prefix per test, so tests never see each other's keys. */
let prefix = ''
const stores: RedisStore[] = []
beforeEach(() => {
  prefix = `${unique('jr-admin')}:`
})
afterEach(async () => {
  // Empty each node's keys through the store itself (emptied sets vanish): no SCAN needed.
  for (const store of stores.splice(0)) {
    for (const job of await store.listJobs()) await store.removeJob(job.id)
    for (const f of await store.listFeedback()) await store.ackFeedback([{ jobId: f.jobId, run: f.run }])
    await store.close()
  }
})

/** An open store on this test's prefix, to seed data and check what jr did. */
async function storeFor(node = 'w1'): Promise<RedisStore> {
  const store = new RedisStore({ node, url: server.url, prefix })
  await store.open()
  stores.push(store)
  return store
}

/** `jr <command> ...args` against this test's server and prefix, for node `w1`. */
function on(command: string, ...args: string[]): Promise<JrRun> {
  return jr(command, ...args, '--node', 'w1', '--redis', server.url, '--prefix', prefix)
}

const DUE = Date.UTC(2024, 0, 2, 3, 4, 5, 678)
const boom = {
  name: 'Error',
  message: 'boom\n  on two lines',
  code: 'ERR_X',
  stack: 'Error: boom\n    at step (jobs/x.js:1:1)',
}

/** One job of each interesting kind, due one second apart so the listing order is known. */
async function seedMixed(store: RedisStore): Promise<void> {
  await store.saveJobs([
    makeJob('j-new', { dueAt: DUE, args: pack({ greeting: 'Hello' }) }),
    makeJob('j-failed', {
      status: JobStatus.FAILED,
      attempt: 10,
      dueAt: DUE + 1000,
      failedAt: DUE + 1500,
      lastError: boom,
    }),
    makeJob('j-complete', { status: JobStatus.COMPLETE, attempt: 1, dueAt: DUE + 2000 }),
    makeJob('j-tick', { name: 'tick', period: 60, run: 3, status: JobStatus.ERROR, attempt: 2, dueAt: DUE + 3000 }),
  ])
}

describe('jr jobs', () => {
  it('lists every job of the node in an aligned table, in due order', async () => {
    await seedMixed(await storeFor())
    const { code, stdout, stderr } = await on('jobs')
    expect(stderr).toBe('')
    expect(code).toBe(0)
    const lines = stdout.trimEnd().split('\n')
    expect(lines).toHaveLength(5)
    const [header, ...rows] = lines as [string, ...string[]]
    expect(header.split(/\s{2,}/)).toEqual(['ID', 'NAME', 'STATUS', 'ATTEMPT', 'RUN', 'DUE AT', 'PERIOD', 'LAST ERROR'])
    expect(rows.map((r) => r.split(/\s+/)[0])).toEqual(['j-new', 'j-failed', 'j-complete', 'j-tick'])
    // Aligned: every column starts where its header does.
    for (const column of ['STATUS', 'DUE AT', 'PERIOD', 'LAST ERROR']) {
      const at = header.indexOf(column)
      for (const row of rows) expect(row[at - 1], `${column} in ${row}`).toBe(' ')
      for (const row of rows) expect(row[at], `${column} in ${row}`).not.toBe(' ')
    }
    const failed = rows[1]!
    expect(failed.slice(header.indexOf('STATUS'))).toMatch(
      /^failed\s+10\s+1\s+2024-01-02T03:04:06\.678Z\s+-\s+boom on two lines$/,
    )
    expect(rows[3]!.slice(header.indexOf('STATUS'))).toMatch(/^error\s+2\s+3\s+2024-01-02T03:04:08\.678Z\s+60s\s+-$/)
  })

  it('--json gives the same rows as data', async () => {
    await seedMixed(await storeFor())
    const { code, stdout } = await on('jobs', '--json')
    expect(code).toBe(0)
    const rows = JSON.parse(stdout) as unknown[]
    expect(rows).toEqual([
      {
        id: 'j-new',
        name: 'my_job',
        status: 'new',
        attempt: 0,
        run: 1,
        dueAt: '2024-01-02T03:04:05.678Z',
        period: null,
        lastError: null,
      },
      {
        id: 'j-failed',
        name: 'my_job',
        status: 'failed',
        attempt: 10,
        run: 1,
        dueAt: '2024-01-02T03:04:06.678Z',
        period: null,
        lastError: boom.message,
      },
      {
        id: 'j-complete',
        name: 'my_job',
        status: 'complete',
        attempt: 1,
        run: 1,
        dueAt: '2024-01-02T03:04:07.678Z',
        period: null,
        lastError: null,
      },
      {
        id: 'j-tick',
        name: 'tick',
        status: 'error',
        attempt: 2,
        run: 3,
        dueAt: '2024-01-02T03:04:08.678Z',
        period: 60,
        lastError: null,
      },
    ])
  })

  it('--status filters, and accepts in-progress for "in progress"', async () => {
    const store = await storeFor()
    await seedMixed(store)
    await store.saveJobs([makeJob('j-running', { status: JobStatus.IN_PROGRESS })])
    const failed = await on('jobs', '--status', 'failed', '--json')
    expect((JSON.parse(failed.stdout) as { id: string }[]).map((j) => j.id)).toEqual(['j-failed'])
    const running = await on('jobs', '--status', 'in-progress', '--json')
    expect((JSON.parse(running.stdout) as { id: string }[]).map((j) => j.id)).toEqual(['j-running'])
    const none = await on('jobs', '--status', 'cancelled')
    expect(none).toEqual({ code: 0, stdout: "no cancelled jobs for node 'w1'\n", stderr: '' })
  })

  it("shows only the given node's jobs", async () => {
    await seedMixed(await storeFor('w1'))
    await (await storeFor('w2')).saveJobs([makeJob('other-node')])
    const run = await jr('jobs', '--node', 'w2', '--redis', server.url, '--prefix', prefix, '--json')
    expect((JSON.parse(run.stdout) as { id: string }[]).map((j) => j.id)).toEqual(['other-node'])
  })

  it('refuses a bad status value as a usage error (exit 2)', async () => {
    const run = await on('jobs', '--status', 'done')
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/'done' is not a job status/)
  })
})

describe('jr show', () => {
  it('prints the full record with the args decoded from msgpack', async () => {
    await seedMixed(await storeFor())
    await (await storeFor()).saveJobs([
      makeJob('rich', {
        args: pack({ greeting: 'Hello', n: 42, nested: { list: [1, 2] } }),
        maxAttempt: 3,
        timeout: 1.5,
      }),
    ])
    const { code, stdout } = await on('show', 'rich')
    expect(code).toBe(0)
    expect(stdout).toBe(
      [
        'id           rich',
        'name         my_job',
        'status       new',
        'attempt      0',
        'run          1',
        'due at       2023-11-14T22:13:20.000Z',
        'run due at   2023-11-14T22:13:20.000Z',
        'period       -',
        'defer        no',
        'max attempt  3',
        'retry        - (node setting)',
        'timeout      1.5s',
        'distributor  127.0.0.1:5000',
        'created at   2023-11-14T22:13:19.000Z',
        'failed at    -',
        'last error   -',
        'progress     -',
        "args         { greeting: 'Hello', n: 42, nested: { list: [ 1, 2 ] } }",
        '',
      ].join('\n'),
    )

    // A multi-line error stays under its label, with the stack frames.
    const failed = await on('show', 'j-failed')
    expect(failed.stdout).toContain(
      [
        'failed at    2024-01-02T03:04:07.178Z',
        'last error   Error: boom',
        '               on two lines (ERR_X)',
        '             at step (jobs/x.js:1:1)',
        'progress     -',
        'args         { a: 1 }',
      ].join('\n'),
    )
  })

  it('shows the last progress value the node kept in the record', async () => {
    const store = await storeFor()
    await store.saveJobs([makeJob('counting', { status: JobStatus.IN_PROGRESS, attempt: 1 }), makeJob('half')])
    await store.updateJob('counting', { progress: { done: 3, of: 10, step: 'rows' } })
    await store.updateJob('half', { progress: 0.5 })
    const counting = await on('show', 'counting')
    expect(counting.stdout).toContain('\nprogress     {"done":3,"of":10,"step":"rows"}\nargs ')
    expect((await on('show', 'half')).stdout).toContain('\nprogress     0.5\n')
    const json = JSON.parse((await on('show', 'counting', '--json')).stdout) as Record<string, unknown>
    expect(json['progress']).toEqual({ done: 3, of: 10, step: 'rows' })
  })

  it('--json gives the record with decoded args and ISO times', async () => {
    await (await storeFor()).saveJobs([
      makeJob('rich', { args: pack({ greeting: 'Hello', big: 2n ** 62n, bytes: Uint8Array.of(1, 2, 3) }), period: 5 }),
    ])
    const { code, stdout } = await on('show', 'rich', '--json')
    expect(code).toBe(0)
    const record = JSON.parse(stdout) as Record<string, unknown>
    expect(record['args']).toEqual({ greeting: 'Hello', big: (2n ** 62n).toString(), bytes: { base64: 'AQID' } })
    expect(record['period']).toBe(5)
    expect(record['dueAt']).toBe(new Date(1_700_000_000_000).toISOString())
    expect(record['status']).toBe('new')
  })

  it('exits 1 naming the id and the node when the job is not there', async () => {
    await seedMixed(await storeFor())
    const run = await on('show', 'ghost')
    expect(run).toEqual({ code: 1, stdout: '', stderr: "jr: no job 'ghost' for node 'w1'\n" })
  })
})

describe('jr retry', () => {
  it('makes a failed job unfinished again: new, attempt 0, due now, last error kept', async () => {
    const store = await storeFor()
    await seedMixed(store)
    const before = Date.now()
    const run = await on('retry', 'j-failed')
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/failed -> new/)
    expect(run.stdout).toMatch(/runs when node 'w1' next starts/)
    const unfinished = await store.listUnfinished()
    const job = unfinished.find((j) => j.id === 'j-failed')
    expect(job).toMatchObject({ status: 'new', attempt: 0, lastError: boom })
    expect(job!.dueAt).toBeGreaterThanOrEqual(before)
    expect(job!.dueAt).toBeLessThanOrEqual(Date.now())
  })

  it('takes back a cancelled job too', async () => {
    const store = await storeFor()
    await store.saveJobs([makeJob('c1', { status: JobStatus.CANCELLED, attempt: 1 })])
    expect((await on('retry', 'c1', '--json')).code).toBe(0)
    expect((await store.getJob('c1'))!.status).toBe('new')
  })

  it('refuses a complete job and leaves it alone', async () => {
    const store = await storeFor()
    await seedMixed(store)
    const run = await on('retry', 'j-complete')
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/job 'j-complete' on node 'w1' is complete: not retried/)
    expect(await store.getJob('j-complete')).toMatchObject({ status: 'complete', attempt: 1 })
    expect((await store.listUnfinished()).map((j) => j.id)).not.toContain('j-complete')
  })

  it('refuses a job that is unfinished already (error), and a missing one', async () => {
    const store = await storeFor()
    await seedMixed(store)
    const run = await on('retry', 'j-tick')
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/is error: not retried, it is unfinished already/)
    expect(await store.getJob('j-tick')).toMatchObject({ status: 'error', attempt: 2, dueAt: DUE + 3000 })
    expect((await on('retry', 'ghost')).code).toBe(1)
  })
})

describe('jr cancel', () => {
  it('marks a new job cancelled, so a restarted node does not resume it', async () => {
    const store = await storeFor()
    await seedMixed(store)
    const run = await on('cancel', 'j-new')
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/new -> cancelled in storage/)
    expect((await store.getJob('j-new'))!.status).toBe('cancelled')
    expect((await store.listUnfinished()).map((j) => j.id)).toEqual(['j-tick'])
  })

  it('--remove deletes the record instead', async () => {
    const store = await storeFor()
    await seedMixed(store)
    const run = await on('cancel', 'j-tick', '--remove', '--json')
    expect(JSON.parse(run.stdout)).toEqual({ id: 'j-tick', node: 'w1', was: 'error', action: 'removed' })
    expect(await store.getJob('j-tick')).toBeUndefined()
    expect((await store.listJobs()).map((j) => j.id).sort()).toEqual(['j-complete', 'j-failed', 'j-new'])
  })

  it('refuses a finished job', async () => {
    const store = await storeFor()
    await seedMixed(store)
    const run = await on('cancel', 'j-failed')
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/is failed, finished already: not cancelled/)
    expect((await store.getJob('j-failed'))!.status).toBe('failed')
  })
})

describe('jr purge', () => {
  it('--status complete removes exactly the complete jobs and prints the count', async () => {
    const store = await storeFor()
    await seedMixed(store)
    await store.saveJobs([
      makeJob('done-2', { status: JobStatus.COMPLETE }),
      makeJob('done-3', { status: JobStatus.COMPLETE }),
    ])
    const run = await on('purge', '--status', 'complete')
    expect(run).toEqual({ code: 0, stdout: "removed 3 complete jobs from node 'w1'\n", stderr: '' })
    expect((await store.listJobs()).map((j) => j.id).sort()).toEqual(['j-failed', 'j-new', 'j-tick'])
    expect((await store.listUnfinished()).map((j) => j.id).sort()).toEqual(['j-new', 'j-tick'])
    expect(JSON.parse((await on('purge', '--status', 'complete', '--json')).stdout)).toEqual({
      node: 'w1',
      status: 'complete',
      removed: 0,
    })
  })

  it('refuses an unfinished status without --force, and removes them with it', async () => {
    const store = await storeFor()
    await seedMixed(store)
    const refused = await on('purge', '--status', 'new')
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/'new' is an unfinished status.*--force/)
    expect(await store.getJob('j-new')).toBeDefined()

    const forced = await on('purge', '--status', 'new', '--force')
    expect(forced.code).toBe(0)
    expect(forced.stdout).toBe("removed 1 new job from node 'w1'\n")
    expect(await store.getJob('j-new')).toBeUndefined()
    expect((await store.listUnfinished()).map((j) => j.id)).toEqual(['j-tick'])
  })
})

describe('jr feedback', () => {
  it('lists the unacknowledged outbox: job id, run, kind, final, distributor', async () => {
    const store = await storeFor()
    await store.saveJobs([makeJob('tick', { period: 10, status: JobStatus.IN_PROGRESS, attempt: 1 }), makeJob('once')])
    await store.finishRun(
      'tick',
      { status: JobStatus.NEW, run: 2 },
      makeFeedback('tick', { run: 1, final: false }),
      false,
    )
    await store.finishRun(
      'once',
      { status: JobStatus.FAILED },
      makeFeedback('once', { kind: 'error', distributor: '10.0.0.2:5000' }),
      false,
    )

    const table = await on('feedback')
    expect(table.code).toBe(0)
    const lines = table.stdout
      .trimEnd()
      .split('\n')
      .map((l) => l.split(/\s{2,}/))
    expect(lines).toEqual([
      ['JOB ID', 'RUN', 'KIND', 'FINAL', 'CANCELLED', 'DISTRIBUTOR'],
      ['once', '1', 'error', 'yes', 'no', '10.0.0.2:5000'],
      ['tick', '1', 'success', 'no', 'no', '127.0.0.1:5000'],
    ])

    const json = JSON.parse((await on('feedback', '--json')).stdout) as unknown
    expect(json).toEqual([
      { jobId: 'once', run: 1, kind: 'error', final: true, cancelled: false, distributor: '10.0.0.2:5000' },
      { jobId: 'tick', run: 1, kind: 'success', final: false, cancelled: false, distributor: '127.0.0.1:5000' },
    ])

    await store.ackFeedback([{ jobId: 'once', run: 1 }])
    await store.ackFeedback([{ jobId: 'tick', run: 1 }])
    expect((await on('feedback')).stdout).toBe("no unacknowledged feedback for node 'w1'\n")
  })
})

describe('jr errors', () => {
  it('an unreachable Redis exits 2 with a message naming the address', async () => {
    const port = await freePort()
    const run = await jr('jobs', '--node', 'w1', '--redis', `redis://127.0.0.1:${port}`)
    expect(run.code).toBe(2)
    expect(run.stdout).toBe('')
    expect(run.stderr).toContain(`cannot reach redis at redis://127.0.0.1:${port}`)
    expect(run.stderr).toContain('(ERR_STORE)')
  })

  it('a bad URL exits 2 naming it, without the password', async () => {
    const run = await jr('jobs', '--node', 'w1', '--redis', 'redis://u:hunter2@h1:1,h2:2')
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/storage url "redis:\/\/u:\*\*\*@h1:1,h2:2" names several hosts/)
    expect(run.stderr).not.toContain('hunter2')
  })

  it('a missing --node is a usage error (exit 2); --help exits 0', async () => {
    const missing = await jr('jobs', '--redis', server.url)
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/required option '-n, --node <name>' not specified/)
    const help = await jr('retry', '--help')
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/^Usage: jr retry \[options\] <id>/)
    expect(help.stdout).toContain('runs when the node next starts')
  })
})

describe('the jr executable', () => {
  it('runs from bin/jr.js and sets its exit code (build first: npm run build)', async () => {
    expect(existsSync(BUILT_CLI), 'dist/cli/jr.js is missing: run npm run build').toBe(true)
    await seedMixed(await storeFor())
    const common = ['--node', 'w1', '--redis', server.url, '--prefix', prefix]
    const listed = await spawnJr(['jobs', '--status', 'failed', '--json', ...common])
    expect(listed.stderr).toBe('')
    expect(listed.code).toBe(0)
    expect((JSON.parse(listed.stdout) as { id: string }[]).map((j) => j.id)).toEqual(['j-failed'])
    const missing = await spawnJr(['show', 'ghost', ...common])
    expect(missing).toEqual({ code: 1, stdout: '', stderr: "jr: no job 'ghost' for node 'w1'\n" })
  })
})
