import { describe, expect, it } from 'vitest'
import { parseDuration, parseOptionalDuration } from './duration.js'
import { CacheError } from './errors.js'

describe('parseDuration', () => {
  it.each([
    [0, 0],
    [250, 250],
    [1.5, 1.5],
    ['500ms', 500],
    ['30s', 30_000],
    ['1.5s', 1_500],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['10 s', 10_000],
    [' 2m ', 120_000],
  ])('%j -> %d ms', (input, ms) => {
    expect(parseDuration(input as never, 'ttl')).toBe(ms)
  })

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY, '', '5', '5x', '-5s', 's', '1e3ms', '5 m s', null, {}, true])(
    '%j is refused with E_INVALID_OPTION naming the option',
    (input) => {
      try {
        parseDuration(input as never, 'grace')
        expect.unreachable()
      } catch (err) {
        expect(err).toBeInstanceOf(CacheError)
        expect((err as CacheError).code).toBe('E_INVALID_OPTION')
        expect((err as CacheError).message).toContain('grace')
      }
    },
  )

  it('leaves an absent optional duration absent', () => {
    expect(parseOptionalDuration(undefined, 'timeout')).toBeUndefined()
    expect(parseOptionalDuration('1s', 'timeout')).toBe(1000)
  })
})
