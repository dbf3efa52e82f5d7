/**
 * Loaded into the CLI child with `node --import <this file>` by bench/backfill.ts:
 * when BENCH_CHILD_USAGE_FILE is set, it writes the process's own CPU time and
 * peak RSS (process.resourceUsage(): getrusage, µs resolution, every thread of
 * the process) to that file as it exits, whether it returns or calls
 * process.exit(). A child killed by a signal writes nothing; the bench then
 * falls back to what it polled from /proc.
 */
import { writeFileSync } from 'node:fs';

const file = process.env.BENCH_CHILD_USAGE_FILE;
if (file) {
  process.on('exit', () => {
    const r = process.resourceUsage();
    writeFileSync(file, JSON.stringify({ userUs: r.userCPUTime, systemUs: r.systemCPUTime, maxRssKb: r.maxRSS }));
  });
}
