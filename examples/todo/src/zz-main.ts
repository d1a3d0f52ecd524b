import { Worker } from 'node:worker_threads'
import { runLoad } from './load.js'
for (const cache of [false, true]) {
  const w = new Worker(new URL('./zz-worker.ts', import.meta.url), { workerData: { cache }, execArgv: [...process.execArgv, '--import', 'tsx'] })
  const url = await new Promise<string>((r, j) => { w.once('message', r); w.once('error', j) })
  await runLoad({ baseUrl: url, requests: 400, userPrefix: 'w-' })
  const r = await runLoad({ baseUrl: url, requests: 4000, seed: 42 })
  console.log(cache, Math.round(r.throughput), r.latency, r.serverTime, r.violations, r.cache)
  w.postMessage('close'); await new Promise((r) => w.once('exit', r))
}
