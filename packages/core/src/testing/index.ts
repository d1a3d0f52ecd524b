/**
 * `@cache/core/testing`: the suites every store and adapter must pass. Import it from test files only; it needs
 * vitest (an optional peer dependency).
 */

export { type CacheStatusParams, parseCacheStatus } from './http-client.js'
export {
  type HttpAdapterCapabilities,
  type HttpAdapterHarness,
  type HttpAdapterSuiteOptions,
  type HttpSuiteGroup,
  httpAdapterSuite,
  type SuiteCacheOptions,
  type SuiteReply,
  type SuiteRequest,
  type SuiteRoute,
  type SuiteServer,
  type SuiteSetup,
} from './http-suite.js'
export { type StoreCapabilities, type StoreSuiteOptions, storeSuite } from './store-suite.js'
