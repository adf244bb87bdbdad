import { DEFAULT_CONFIG, mergeConfig, type Config } from './config.js'
import { Distributor } from './distributor/distributor.js'
import type { JobHandle } from './distributor/job-handle.js'
import { checkFeedbackHandlers, type FeedbackHandlers } from './distributor/feedback-handlers.js'
import type { DistributorOptions, EnqueueOptions } from './distributor/options.js'
import type { FeedbackCallback } from './distributor/tracked-job.js'
import { InvalidArgumentError, NotReadyError } from './errors.js'
import { Node } from './node/node.js'
import type { NodeOptions } from './node/options.js'
import type { ArgsOf } from './node/registry.js'

/**
 * The process-wide default, as in JobReactor: one configuration, at most one distributor
 * and one node started through it. The classes underneath can be used directly when a
 * process needs several (tests do).
 */
export class JobReactor {
  /** The current settings; change them with `configure`. */
  readonly config: Config = { ...DEFAULT_CONFIG }
  private distributorInstance: Distributor | undefined
  private nodeInstance: Node | undefined
  /** Named feedback handlers, kept for the distributors started here (also those started later). */
  private readonly feedbackHandlers = new Map<string, FeedbackHandlers>()

  /** Validates and merges settings; an unknown or bad option throws naming it. */
  configure(settings: Partial<Config>): Config {
    return mergeConfig(this.config, settings)
  }

  get distributor(): Distributor | undefined {
    return this.distributorInstance
  }

  get node(): Node | undefined {
    return this.nodeInstance
  }

  /** Starts the process's distributor; resolves once it listens. */
  async startDistributor(options: DistributorOptions = {}): Promise<Distributor> {
    if (this.distributorInstance !== undefined) {
      throw new InvalidArgumentError('a distributor is already started in this process; construct Distributor for more')
    }
    const distributor = new Distributor(options, { alwaysUseSpecifiedNode: this.config.alwaysUseSpecifiedNode })
    for (const [name, handlers] of this.feedbackHandlers) distributor.onFeedback(name, handlers)
    this.distributorInstance = distributor
    try {
      return await distributor.start()
    } catch (err) {
      this.distributorInstance = undefined
      throw err
    }
  }

  /** True once the distributor is listening. */
  ready(): boolean {
    return this.distributorInstance?.listening === true
  }

  enqueue<N extends string>(
    name: N,
    args?: ArgsOf<N>,
    opts?: EnqueueOptions,
    onSuccess?: FeedbackCallback<ArgsOf<N>>,
    onError?: FeedbackCallback<ArgsOf<N>>,
  ): JobHandle<ArgsOf<N>> {
    return this.requireDistributor().enqueue(name, args, opts, onSuccess, onError)
  }

  /**
   * Registers the feedback handlers for job name `name` (see Distributor.onFeedback) on the
   * process's distributor; called before `startDistributor`, they are registered on the
   * distributor it starts.
   */
  onFeedback<N extends string>(name: N, handlers: FeedbackHandlers<ArgsOf<N>>): void {
    checkFeedbackHandlers(name, handlers)
    this.feedbackHandlers.set(name, { ...handlers } as FeedbackHandlers)
    this.distributorInstance?.onFeedback(name, handlers)
  }

  /** Cancels a job by id (see Distributor.cancel). */
  cancel(id: string): Promise<boolean> {
    return this.requireDistributor().cancel(id)
  }

  /** Starts the process's node with `config` as its settings. */
  async startNode(options: NodeOptions): Promise<Node> {
    if (this.nodeInstance !== undefined) {
      throw new InvalidArgumentError('a node is already started in this process; construct Node for more')
    }
    const node = new Node(options, this.config)
    this.nodeInstance = node
    try {
      return await node.start()
    } catch (err) {
      this.nodeInstance = undefined
      throw err
    }
  }

  /** Closes the node (gracefully) and the distributor started here. */
  async stop(): Promise<void> {
    const node = this.nodeInstance
    const distributor = this.distributorInstance
    this.nodeInstance = undefined
    this.distributorInstance = undefined
    await node?.close()
    await distributor?.close()
  }

  private requireDistributor(): Distributor {
    if (this.distributorInstance === undefined) {
      throw new NotReadyError('no distributor in this process: call JR.startDistributor() first')
    }
    return this.distributorInstance
  }
}

export const JR = new JobReactor()
