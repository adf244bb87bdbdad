import { describe, expect, it } from 'vitest'
import { CancelJob, ErrorCode, RateLimited } from '../../src/errors.js'
import { runChain } from '../../src/node/chain-runner.js'
import type { JobContext, JobDefinition, JobStep } from '../../src/node/registry.js'
import { JobStatus } from '../../src/storage/store.js'

function definition(run: JobStep, callbacks: JobStep[] = [], errbacks: JobStep[] = []): JobDefinition {
  const named = (fns: JobStep[]) => fns.map((fn, i) => ({ name: `s${i}`, fn }))
  return { name: 'j', run, callbacks: named(callbacks), errbacks: named(errbacks) }
}

function context(): JobContext {
  return { status: JobStatus.IN_PROGRESS } as JobContext
}

describe('runChain', () => {
  it('answers synchronously while every step is synchronous', () => {
    const args: Record<string, unknown> = {}
    const outcome = runChain(
      definition((a) => void (a['x'] = 1), [(a) => void (a['y'] = 2)]),
      args,
      context(),
      false,
    )
    expect(outcome).not.toBeInstanceOf(Promise)
    expect(outcome).toEqual({ kind: 'success', cancelled: false })
    expect(args).toEqual({ x: 1, y: 2 })
  })

  it('a CancelJob thrown by a synchronous step is a cancelled success at once', () => {
    const outcome = runChain(
      definition(() => {
        throw new CancelJob()
      }),
      {},
      context(),
      false,
    )
    expect(outcome).toEqual({ kind: 'success', cancelled: true })
  })

  it('RateLimited in the job or a callback ends the attempt rate-limited, with no errback', async () => {
    const errbacks: string[] = []
    const sync = runChain(
      definition(
        () => {
          throw new RateLimited(2)
        },
        [],
        [() => void errbacks.push('errback')],
      ),
      {},
      context(),
      false,
    )
    expect(sync).toEqual({ kind: 'rate-limited', cancelled: false, seconds: 2 })
    const later = runChain(
      definition(
        async () => {},
        [
          async () => {
            throw new RateLimited(0.5)
          },
        ],
        [() => void errbacks.push('errback')],
      ),
      {},
      context(),
      false,
    )
    await expect(later).resolves.toEqual({ kind: 'rate-limited', cancelled: false, seconds: 0.5 })
    expect(errbacks).toEqual([])
  })

  it('RateLimited in an errback ends the attempt rate-limited: the failure it handled does not count', async () => {
    const args: Record<string, unknown> = {}
    const outcome = runChain(
      definition(
        () => {
          throw new Error('upstream answered 429')
        },
        [],
        [
          () => {
            throw new RateLimited(3)
          },
        ],
      ),
      args,
      context(),
      true,
    )
    await expect(outcome).resolves.toEqual({ kind: 'rate-limited', cancelled: false, seconds: 3 })
  })

  it('a rate limit thrown by code (another copy of the package) counts; one with seconds out of range is a failure', async () => {
    const byCode = runChain(
      definition(() => {
        throw Object.assign(new Error('x'), { code: ErrorCode.RATE_LIMITED, seconds: 1 })
      }),
      {},
      context(),
      false,
    )
    expect(byCode).toEqual({ kind: 'rate-limited', cancelled: false, seconds: 1 })
    const bad = await runChain(
      definition(() => {
        throw Object.assign(new Error('x'), { code: ErrorCode.RATE_LIMITED, seconds: -1 })
      }),
      {},
      context(),
      false,
    )
    expect(bad).toMatchObject({ kind: 'error', cancelled: false })
  })

  it('goes on asynchronously after the first step that returns a promise, in order', async () => {
    const order: string[] = []
    const def = definition(
      () => void order.push('job'),
      [
        async () => {
          await Promise.resolve()
          order.push('async callback')
        },
        () => void order.push('last callback'),
      ],
    )
    const outcome = runChain(def, {}, context(), false)
    expect(outcome).toBeInstanceOf(Promise)
    expect(order).toEqual(['job'])
    await expect(outcome).resolves.toEqual({ kind: 'success', cancelled: false })
    expect(order).toEqual(['job', 'async callback', 'last callback'])
  })

  it('a synchronous throw runs the errbacks with args.error and the status of the last attempt', async () => {
    const seen: unknown[] = []
    const ctx = context()
    const def = definition(
      () => {
        throw new Error('boom')
      },
      [() => seen.push('callback')],
      [(a, c) => void seen.push((a['error'] as { message: string }).message, c.status)],
    )
    const outcome = await runChain(def, {}, ctx, true)
    expect(outcome).toMatchObject({ kind: 'error', cancelled: false, unrecoverable: false })
    expect(seen).toEqual(['boom', JobStatus.FAILED])
  })

  it('with a signal, a pending step ends with the abort reason', async () => {
    const controller = new AbortController()
    const outcome = runChain(
      definition(() => new Promise(() => {})),
      {},
      context(),
      false,
      controller.signal,
    )
    controller.abort(new Error('too slow'))
    await expect(outcome).resolves.toMatchObject({ kind: 'error', error: new Error('too slow') })
  })

  it('a step that throws a non-Error fails with an Error, classified by what it threw', async () => {
    const args: Record<string, unknown> = {}
    const outcome = await runChain(
      definition(() => {
        throw { code: 'ERR_UNRECOVERABLE', reason: 'disk gone' }
      }),
      args,
      context(),
      false,
    )
    expect(outcome).toMatchObject({ kind: 'error', cancelled: false, unrecoverable: true })
    expect((outcome as { error: unknown }).error).toBeInstanceOf(Error)
    expect(args['error']).toMatchObject({
      name: 'Error',
      message: 'non-error thrown: {"code":"ERR_UNRECOVERABLE","reason":"disk gone"}',
    })
  })

  it('an errback that throws a string records args.errbackError as an Error', async () => {
    const args: Record<string, unknown> = {}
    await runChain(
      definition(
        () => {
          throw new Error('boom')
        },
        [],
        [
          () => {
            throw 'errback broke'
          },
        ],
      ),
      args,
      context(),
      false,
    )
    expect(args['errbackError']).toMatchObject({ name: 'Error', message: 'errback broke' })
  })
})
