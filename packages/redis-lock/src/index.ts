/**
 * `@cache/redis-lock`: Redlock over N independent Redis masters, with fencing tokens, validity measured on a
 * monotonic clock, and a lock `signal` that aborts before the validity ends when an extension was not confirmed.
 */
export {
  type AcquireOptions,
  createRedlock,
  Lock,
  LockError,
  type LockErrorCode,
  type NodeOutcome,
  Redlock,
  type RedlockClient,
  type RedlockOptions,
  setIfFresher,
} from './redlock.js'
