import { parentPort, workerData } from 'node:worker_threads'
import { createApp } from './app.js'
const app = createApp(workerData.cache ? { latencyMs: { min: 5, max: 15 } } : { cache: null, latencyMs: { min: 5, max: 15 } })
const url = await app.listen(0)
parentPort!.postMessage(url)
parentPort!.on('message', async () => { await app.close(); process.exit(0) })
