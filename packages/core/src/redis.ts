// @cache/core/redis: the Redis store (standalone, Sentinel, Cluster) over ioredis, an optional peer dependency that
// only this entry point imports. The codec is re-exported so a Redis user needs one import.
export { type Codec, type CodecCompression, type CodecOptions, createCodec, defaultCodec, hasZstd } from './codec.js'
export {
  escapeGlob,
  keySlot,
  RedisStore,
  type RedisStoreConnection,
  type RedisStoreOptions,
  redisStore,
} from './stores/redis.js'
export { RedisBus, type RedisBusOptions, redisBus } from './stores/redis-bus.js'
export { RedisQueue, type RedisQueueOptions, redisQueue } from './stores/redis-queue.js'
