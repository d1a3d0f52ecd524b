export { type BinaryOptions, findBinary, INSTALL_HINT } from './binaries.js'
export { type FaultProxy, type FaultProxyOptions, startFaultProxy } from './fault-proxy.js'
export { type MemcachedOptions, type MemcachedServer, startMemcached } from './memcached.js'
export { memcachedRequest } from './memcached-text.js'
export { canListen, freePort, freePortWithCompanion } from './ports.js'
export {
  clusterNodeForKey,
  type RedisCluster,
  type RedisClusterOptions,
  type RedisOptions,
  type RedisServer,
  startRedis,
  startRedisCluster,
  startRedises,
} from './redis.js'
export { stopAll } from './registry.js'
export {
  clusterCommand,
  encodeCommand,
  type HostPort,
  parseReply,
  ReplyTimeoutError,
  type RespArg,
  RespClient,
  RespError,
  type RespValue,
  redisCommand,
} from './resp.js'
export { type RedisSentinel, type RedisSentinelOptions, startRedisSentinel } from './sentinel.js'
export { type ServerHandle, StartupError } from './server.js'
