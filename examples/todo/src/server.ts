import { createApp } from './app.js'

// `pnpm start`: the Todo API alone, with its cache, on 127.0.0.1:$PORT (default 3000). CACHE=off runs it without.
const port = Number(process.env.PORT ?? 3000)
if (!Number.isInteger(port) || port < 0 || port > 65_535) {
  console.error(`PORT must be a port number (got ${process.env.PORT})`)
  process.exit(1)
}
const withCache = process.env.CACHE !== 'off'
const app = createApp(withCache ? {} : { cache: null })
const url = await app.listen(port, '127.0.0.1')

console.log(`Todo API listening on ${url} (${withCache ? 'with cache' : 'no cache'}; Ctrl-C to stop)

  curl ${url}/users/alice/todos
  curl -X POST ${url}/users/alice/todos -H 'content-type: application/json' -d '{"title":"buy milk"}'
  curl -X PATCH ${url}/users/alice/todos/1 -H 'content-type: application/json' -d '{"done":true}'
  curl -X DELETE ${url}/users/alice/todos/1
  curl ${url}/stats
`)

let stopping = false
const stop = (signal: NodeJS.Signals) => {
  if (stopping) process.exit(1) // a second Ctrl-C: do not wait
  stopping = true
  console.log(`\n${signal}: closing…`)
  app.close().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err)
      process.exit(1)
    },
  )
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
