import { describe, expect, it } from 'vitest'
import { CacheError, isCacheError } from './errors.js'

describe('CacheError', () => {
  it('has a stable code, a prefixed message and keeps the cause', () => {
    const cause = new Error('inner')
    const err = new CacheError('E_STORE_UNAVAILABLE', 'redis is down', { cause })
    expect(err).toBeInstanceOf(Error)
    expect(err.name).toBe('CacheError')
    expect(err.code).toBe('E_STORE_UNAVAILABLE')
    expect(err.message).toBe('[@cache/core] redis is down')
    expect(err.cause).toBe(cause)
  })

  it('isCacheError matches by name and code', () => {
    const err = new CacheError('E_INVALID_KEY', 'bad')
    expect(isCacheError(err)).toBe(true)
    expect(isCacheError(err, 'E_INVALID_KEY')).toBe(true)
    expect(isCacheError(err, 'E_CLOSED')).toBe(false)
    expect(isCacheError(new Error('x'))).toBe(false)
    expect(isCacheError('E_INVALID_KEY')).toBe(false)
  })
})
