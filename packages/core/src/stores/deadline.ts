import { type Duration, parseDuration } from '../duration.js'
import { CacheError, describe } from '../errors.js'

/** The longest delay a Node.js timer holds; a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * A remote store's `commandTimeout`: a duration > 0 and no longer than a timer can wait (a longer one would turn
 * into a 1 ms deadline). `E_INVALID_OPTION` otherwise, naming the store.
 */
export function parseCommandTimeout(input: Duration | undefined, store: string, fallback: Duration): number {
  const ms = parseDuration(input ?? fallback, `${store}: commandTimeout`)
  if (!(ms > 0) || ms > MAX_TIMER_MS) {
    throw new CacheError(
      'E_INVALID_OPTION',
      `${store}: commandTimeout must be > 0 and at most ${MAX_TIMER_MS} ms (got ${describe(ms)})`,
    )
  }
  return ms
}

/**
 * Races `work` against a deadline of `ms`: past it the call rejects with `onTimeout()`; a failure of `work` rejects
 * with `onError(err)`. The abandoned work still settles later and its rejection is caught here, so it is never
 * unhandled.
 */
export function withDeadline<T>(
  work: Promise<T>,
  ms: number,
  onTimeout: () => CacheError,
  onError: (err: unknown) => CacheError,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), ms)
    work.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (err: unknown) => {
        clearTimeout(timer)
        reject(onError(err))
      },
    )
  })
}
