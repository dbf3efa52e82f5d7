import { defineConfig } from 'vitest/config';

// Two projects:
//  - unit:        pure tests, no Redis.
//  - integration: real redis-server processes; a globalSetup starts one shared
//                 standalone server and one shared 3-master cluster per run
//                 (see test/helpers/global-setup.ts and test/helpers/fixtures.ts).
export default defineConfig({
  test: {
    // The machine (and CI) has 2 cores.
    maxWorkers: 2,
    // The summary line ("N passed, N failed, N skipped") is what CI logs are read for.
    reporters: ['default', './test/helpers/summary-reporter.ts'],
    teardownTimeout: 30_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          // A bound on a hang, not a speed goal: on 2 shared cores beside the integration
          // servers, a unit test that spawns vitest or pages 10k jobs can take several seconds.
          testTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          pool: 'forks',
          testTimeout: 120_000,
          hookTimeout: 120_000,
          globalSetup: ['test/helpers/global-setup.ts'],
        },
      },
    ],
  },
});
