// @cache/core/memcached: the memcached store (memjs is an optional peer dependency, loaded only by this entry point)
// and the codec it stores values with.
export { type Codec, type CodecCompression, type CodecOptions, createCodec, defaultCodec, hasZstd } from './codec.js'
export {
  MEMCACHED_MAX_KEY_BYTES,
  type MemcachedClient,
  MemcachedStore,
  type MemcachedStoreClientOptions,
  type MemcachedStoreOptions,
  type MemcachedStoreServersOptions,
  memcachedKey,
  memcachedStore,
} from './stores/memcached.js'
