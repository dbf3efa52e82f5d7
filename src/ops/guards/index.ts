/**
 * Guard rails for long runs on a production Redis (backfill, verify, cleanup,
 * reverse backfill): signals read from Redis (signals.ts), the guards and
 * their levels (guards.ts), and the controller that paces the scan engine on
 * them and on `orch-migrate control` (controller.ts). docs/guard-rails.md
 * describes them for operators.
 */
export * from './controller.js';
export * from './guards.js';
export * from './signals.js';
