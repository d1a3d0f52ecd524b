export { type BreakerOptions, type BreakerState, type BreakerStats, breakerStore, CircuitBreaker } from './breaker.js'
export {
  Cache,
  type CacheOptions,
  createCache,
  type NamespaceOptions,
  type ReadThroughLoader,
  type SetManyItem,
  type WarmItem,
  type WarmItems,
  type WarmLoaderItem,
  type WarmOptions,
  type WarmReport,
  type WarmValueItem,
  type WrapOptions,
} from './cache.js'
export { type Duration, parseDuration } from './duration.js'
export { CacheError, type CacheErrorCode, isCacheError } from './errors.js'
export {
  createKeyBuilder,
  escapeKeyPart,
  type KeyBuilder,
  type KeyBuilderOptions,
  type KeyPart,
  stableHash,
  stableStringify,
} from './keys.js'
export { estimateSize, MemoryStore, type MemoryStoreOptions, memoryStore } from './stores/memory.js'
export {
  type EvictionPolicy,
  FifoPolicy,
  fifo,
  LruPolicy,
  lru,
  NO_SLOT,
  type PolicyFactory,
} from './stores/policy.js'
export type { TierInput, TierOptions, TierStats } from './tiers.js'
export type {
  Bus,
  BusHandlers,
  BusMessage,
  CacheEventName,
  CacheEvents,
  CacheStats,
  DeadLetter,
  EntryOptions,
  GetOrSetOptions,
  Loader,
  LoaderContext,
  LockOptions,
  Store,
  StoredEntry,
  StoreListener,
  StoreLock,
  StoreRemovalReason,
  StoreStats,
  TakenWrite,
  WriteBehindItem,
  WriteQueue,
} from './types.js'
export { type MemoryQueueOptions, memoryQueue, type WriteBehindOptions } from './write-behind.js'
