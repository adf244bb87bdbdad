export { JR, JobReactor } from './jr.js'
export { Distributor } from './distributor/distributor.js'
export type { DistributorEventMap } from './distributor/distributor.js'
export type { JobHandle, UniqueResult } from './distributor/job-handle.js'
export type { DistributorOptions, EnqueueOptions } from './distributor/options.js'
export type { UniqueMode, UniqueOptions } from './distributor/unique.js'
export type { LimitOptions, RateOptions } from './distributor/limit-options.js'
export type { FeedbackCallback } from './distributor/tracked-job.js'
export type { FeedbackHandlers, FeedbackInfo } from './distributor/feedback-handlers.js'
export { AdminClient } from './admin/admin-client.js'
export type {
  AdminClientOptions,
  AdminFailure,
  AdminJob,
  AdminNameStats,
  AdminNode,
  AdminNodeJob,
  AdminNodeJobsPage,
  AdminOverview,
  AdminPendingJob,
  AdminPendingPage,
  AdminRoute,
  NodeJobKind,
} from './admin/admin-client.js'
export type { ProgressCallback } from './distributor/progress-router.js'
export type { ProgressValue } from './protocol/messages.js'
export { HttpErrorCode } from './admin/http.js'
export type { RequestHandler } from './admin/http.js'
export type { MetricsOptions } from './admin/metrics/prom-client.js'
export { Node } from './node/node.js'
export type { CloseOptions, NodeEventMap } from './node/node.js'
export type { NodeOptions, NodeTlsOptions } from './node/options.js'
export { job, jobCallback, jobErrback, JobRegistry, defaultRegistry } from './node/registry.js'
export type { ArgsOf, JobArgs, JobContext, JobDefinition, JobStep } from './node/registry.js'
export { loadJobDirectory } from './node/job-loader.js'
export { DEFAULT_CONFIG } from './config.js'
export type { Config } from './config.js'
export {
  AcceptTimeoutError,
  AdminRequestError,
  AdminUnreachableError,
  AuthError,
  CancelJob,
  RateLimited,
  ConnectionClosedError,
  DistributorClosedError,
  HandedOverError,
  DeduplicatedError,
  NameTakenError,
  ErrorCode,
  FrameTooLargeError,
  HandshakeError,
  HandshakeTimeoutError,
  HeartbeatTimeoutError,
  InvalidArgumentError,
  JobFailedError,
  JobFileError,
  JobsError,
  NotReadyError,
  ProtocolError,
  QueueFullError,
  StoreError,
  StoreTimeoutError,
  TimeoutError,
  UnknownJobError,
  UnrecoverableError,
} from './errors.js'
export type { SerializedError } from './errors.js'
export type { JobArgsObject } from './protocol/args.js'
export type { RetryPolicy, LinearRetry, ExponentialRetry, FixedRetry } from './scheduling/retry.js'
export { MemoryStore } from './storage/memory-store.js'
export { RedisStore } from './storage/redis/redis-store.js'
export { JobStatus, UNFINISHED_STATUSES, failedJobsPage } from './storage/store.js'
export type { Store, JobRecord, JobPage, FeedbackRecord } from './storage/store.js'
