import { connect } from 'node:net'
import { type HostPort, ReplyTimeoutError } from './resp.js'

/**
 * True once `data` (read as latin1, so one char per byte) holds a complete text-protocol response: `VALUE` blocks
 * and `STAT` lines are followed, any other line (END, STORED, ERROR, VERSION …, a number) ends it.
 */
function isComplete(data: string): boolean {
  let pos = 0
  for (;;) {
    const eol = data.indexOf('\r\n', pos)
    if (eol === -1) return false
    const line = data.slice(pos, eol)
    pos = eol + 2
    if (line.startsWith('VALUE ')) {
      const bytes = Number(line.split(' ')[3])
      if (!Number.isFinite(bytes)) return true
      pos += bytes + 2
      if (pos > data.length) return false
      continue
    }
    if (line.startsWith('STAT ')) continue
    return true
  }
}

/**
 * Sends `request` (one text-protocol command, with its `\r\n`s) on a fresh connection and resolves with the whole
 * response as UTF-8 text. Meant for checking a memcached server in tests; `noreply` commands get no response.
 */
export function memcachedRequest(
  target: HostPort,
  request: string | Buffer,
  options: { timeoutMs?: number } = {},
): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 2_000
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const socket = connect({ host: target.host, port: target.port })
    const finish = (error: Error | undefined): void => {
      clearTimeout(timer)
      socket.destroy()
      if (error) reject(error)
      else resolve(Buffer.concat(chunks).toString('utf8'))
    }
    const timer = setTimeout(
      () => finish(new ReplyTimeoutError(`no complete memcached response within ${timeoutMs} ms`)),
      timeoutMs,
    )
    socket.on('error', (err) => finish(err))
    socket.on('close', () => finish(new Error('connection closed before a complete response')))
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      if (isComplete(Buffer.concat(chunks).toString('latin1'))) finish(undefined)
    })
    socket.write(request)
  })
}
