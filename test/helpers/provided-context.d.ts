// Values the integration project's globalSetup (test/helpers/global-setup.ts)
// hands to tests through vitest's provide()/inject(). Read them via fixtures.ts.
import type { HostPort, RedisServerKind } from './redis-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the shared standalone server (a spawned one, or $REDIS_URL). */
    redisStandaloneUrl: string;
    redisStandaloneKind: RedisServerKind;
    /** Startup nodes of the shared 3-master cluster, or null when it could not be started. */
    redisClusterNodes: HostPort[] | null;
    /** Why the shared cluster is unavailable (null when it is available). */
    redisClusterUnavailable: string | null;
  }
}
