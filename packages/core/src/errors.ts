/**
 * Every error thrown by `@cache/core` is a `CacheError` with a stable `code`; the original error, when there is
 * one, is kept as `cause`. Match on `code`, never on the message.
 */
export type CacheErrorCode =
  | 'E_INVALID_KEY'
  | 'E_INVALID_VALUE'
  | 'E_INVALID_OPTION'
  | 'E_LOADER_TIMEOUT'
  | 'E_LOADER_ERROR'
  | 'E_STORE_UNAVAILABLE'
  | 'E_SERIALIZE'
  | 'E_DESERIALIZE'
  | 'E_VALUE_TOO_LARGE'
  | 'E_CLOSED'
  | 'E_UNSUPPORTED'
  | 'E_WRITE_FAILED'

export class CacheError extends Error {
  override readonly name = 'CacheError'
  readonly code: CacheErrorCode

  constructor(code: CacheErrorCode, message: string, options?: { cause?: unknown }) {
    super(`[@cache/core] ${message}`, options)
    this.code = code
  }
}

/** True when `err` is a `CacheError`, optionally with the given code. Works across duplicated module copies. */
export function isCacheError(err: unknown, code?: CacheErrorCode): err is CacheError {
  if (!(err instanceof Error) || err.name !== 'CacheError') return false
  return code === undefined || (err as CacheError).code === code
}

/** Describes a value for an error message without dumping it whole. */
export function describe(value: unknown): string {
  if (typeof value === 'string') {
    return value.length > 40 ? `'${value.slice(0, 40)}…' (${value.length} chars)` : `'${value}'`
  }
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return 'an object'
  return `${typeof value} ${String(value)}`
}
