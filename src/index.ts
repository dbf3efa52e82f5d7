/**
 * orch-migrate: the queue core as a library. The CLI (`orch-migrate`) and the
 * reference API (`orch-api`) are thin layers over these exports.
 */
export * from './core/errors.js';
export * from './core/ids.js';
export * from './core/keys.js';
export * from './core/phase.js';
export * from './core/job.js';
export * from './core/redis.js';
export * from './core/tls.js';
export * from './core/sentinel.js';
export * from './core/protocol.js';
export * from './core/state.js';
export * from './core/lock.js';
export * from './core/queue.js';
export * from './core/cursor.js';
export * from './core/phase-watcher.js';
export * from './core/redis-queue.js';
export * from './core/memory-queue.js';
export * from './core/redact.js';
