import { CacheError, describe } from './errors.js'

/** Milliseconds as a number, or a string such as `'500ms'`, `'30s'`, `'5m'`, `'1h'`, `'1d'` (decimals allowed). */
export type Duration = number | `${number}${DurationUnit}` | `${number} ${DurationUnit}`
type DurationUnit = 'ms' | 's' | 'm' | 'h' | 'd'

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const PATTERN = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/

/**
 * Parses a duration into milliseconds. Throws `E_INVALID_OPTION` for anything that is not a finite, non-negative
 * duration, naming the option so the mistake is found at creation, not at the first cache miss.
 *
 * @example
 * parseDuration('30s', 'ttl') // 30_000
 * parseDuration(250, 'timeout') // 250
 */
export function parseDuration(input: Duration | string, option: string): number {
  if (typeof input === 'number') {
    if (Number.isFinite(input) && input >= 0) return input
    throw new CacheError('E_INVALID_OPTION', `${option} must be a finite duration >= 0 (got ${describe(input)})`)
  }
  if (typeof input === 'string') {
    const match = PATTERN.exec(input.trim())
    if (match) {
      const ms = Number(match[1]) * (UNIT_MS[match[2]!] as number)
      if (Number.isFinite(ms)) return ms
    }
  }
  throw new CacheError(
    'E_INVALID_OPTION',
    `${option} must be milliseconds or a string like '500ms', '30s', '5m', '1h', '1d' (got ${describe(input)})`,
  )
}

/** `parseDuration` for optional options: `undefined` stays `undefined`. */
export function parseOptionalDuration(input: Duration | string | undefined, option: string): number | undefined {
  return input === undefined ? undefined : parseDuration(input, option)
}
