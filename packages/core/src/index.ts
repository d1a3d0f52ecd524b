export { Cache, type CacheOptions, createCache, type SetManyItem, type WrapOptions } from './cache.js'
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
export type {
  CacheEventName,
  CacheEvents,
  CacheStats,
  EntryOptions,
  GetOrSetOptions,
  Loader,
  LoaderContext,
  Store,
  StoredEntry,
  StoreListener,
  StoreRemovalReason,
  StoreStats,
} from './types.js'
