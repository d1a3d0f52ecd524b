// Response bodies as the hono adapter handles them: read at once when they are ready (a string or bytes), else
// teed so the client streams while a copy is collected for the cache.

export const EMPTY = new Uint8Array(0)
export const NO_BODY = new Set([204, 205, 304])
const READY_CHUNKS = 8
const bytes = (chunk: Uint8Array | string) => (typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk)

/** Either the whole body (it was ready without waiting) or the stream to send in its place. */
export type Ready = { whole: Uint8Array; rest?: undefined } | { whole?: undefined; rest: ReadableStream<Uint8Array> }

/**
 * Reads what `stream` has ready within one macrotask and a few chunks (a body made from a string or bytes is one);
 * a stream still producing goes on as `rest`, unchanged for its reader.
 */
export async function readReady(stream: ReadableStream<Uint8Array | string> | null): Promise<Ready> {
  if (!stream) return { whole: EMPTY }
  const reader = stream.getReader()
  const chunks: Uint8Array[] = []
  let timer: ReturnType<typeof setTimeout> | undefined
  const tick = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), 0)
  })
  for (;;) {
    const pending = reader.read()
    // Bounded: a stream that enqueues without ever waiting would otherwise keep this loop in microtasks forever.
    const next = chunks.length < READY_CHUNKS ? await Promise.race([pending, tick]).catch(() => undefined) : undefined
    if (next?.done) {
      clearTimeout(timer)
      return { whole: concat(chunks) }
    }
    if (next === undefined) {
      clearTimeout(timer)
      let waiting: typeof pending | undefined = pending
      const rest = new ReadableStream<Uint8Array>({
        start(controller) {
          for (const chunk of chunks) controller.enqueue(chunk)
        },
        async pull(controller) {
          try {
            const { done, value } = await (waiting ?? reader.read())
            waiting = undefined
            if (done) controller.close()
            else controller.enqueue(bytes(value))
          } catch (error) {
            controller.error(error)
          }
        },
        cancel: (reason) => reader.cancel(reason),
      })
      return { rest }
    }
    chunks.push(bytes(next.value))
  }
}

/** Reads a tee'd branch up to `cap` bytes; past the cap, or when the stream fails, it collects nothing. */
export async function collect(
  stream: ReadableStream<Uint8Array | string>,
  cap: number,
): Promise<Uint8Array | undefined> {
  const reader = stream.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return concat(chunks)
      const chunk = bytes(value)
      size += chunk.byteLength
      if (size > cap) {
        // Cancelling this branch alone leaves the client's branch flowing.
        reader.cancel().catch(() => {})
        return undefined
      }
      chunks.push(chunk)
    }
  } catch {
    return undefined
  }
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  if (chunks.length === 1 && chunks[0]) return chunks[0]
  const body = new Uint8Array(chunks.reduce((size, chunk) => size + chunk.byteLength, 0))
  let offset = 0
  for (const chunk of chunks) {
    body.set(chunk, offset)
    offset += chunk.byteLength
  }
  return body
}
