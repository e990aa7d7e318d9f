// BullMQ side of bench/worker_bench.py: pre-fill N jobs with addBulk, then
// time one Worker (concurrency C, a no-op processor) draining them.  BullMQ
// keeps completed jobs by default (removeOnComplete unset), so every job's
// return value is written to Redis, as kiln and Celery write results.
//
// usage: node bullmq_bench.mjs PORT N CONCURRENCY      (prints one JSON line)
import { readFileSync } from 'node:fs';
import { Queue, Worker } from 'bullmq';

const [port, n, concurrency] = process.argv.slice(2).map(Number);
const connection = { host: '127.0.0.1', port };
const name = 'bench';
const version = JSON.parse(
  readFileSync(new URL('./node_modules/bullmq/package.json', import.meta.url))).version;

const queue = new Queue(name, { connection });
await queue.waitUntilReady();
await queue.obliterate({ force: true });

const fillStart = performance.now();
const CHUNK = 1000;
for (let i = 0; i < n; i += CHUNK) {
  const jobs = [];
  for (let j = i; j < Math.min(n, i + CHUNK); j++) jobs.push({ name: 'echo', data: { args: [j] } });
  await queue.addBulk(jobs);
}
const fillS = (performance.now() - fillStart) / 1000;
const waiting = await queue.getWaitingCount();

let done = 0;
let finish;
const finished = new Promise((r) => { finish = r; });
const worker = new Worker(name, async () => {}, { connection, concurrency, autorun: false });
worker.on('completed', () => { if (++done === n) finish(); });
worker.on('failed', (job, err) => { console.error('failed', job && job.id, err); });
await worker.waitUntilReady();
const start = performance.now();
worker.run();
await finished;
const elapsed = (performance.now() - start) / 1000;
const counts = await queue.getJobCounts('completed', 'waiting', 'active', 'failed', 'delayed');
await worker.close();
await queue.close();
console.log(JSON.stringify({ bullmq: version, n, concurrency, fill_s: fillS, waiting_before: waiting,
  elapsed_s: elapsed, rate: n / elapsed, counts }));
process.exit(0);
