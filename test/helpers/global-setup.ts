/**
 * vitest globalSetup for the integration project: one shared standalone Redis
 * and one shared 3-master Redis Cluster for the whole run. Tests reach them via
 * test/helpers/fixtures.ts and isolate themselves by key prefix (never FLUSHALL).
 */
import type { TestProject } from 'vitest/node';
import { redisBinaryAvailable, startRedisCluster, startSharedStandalone, type RedisClusterHandle, type RedisServerHandle } from './redis-server.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [standaloneResult, clusterResult] = await Promise.allSettled<[Promise<RedisServerHandle>, Promise<RedisClusterHandle | string>]>([
    startSharedStandalone(),
    // Clusters need the redis-server binary; without it (Docker fallback / REDIS_URL only)
    // cluster tests are told why via sharedClusterNodes() instead of failing the whole run.
    redisBinaryAvailable()
      ? startRedisCluster({ masters: 3 })
      : Promise.resolve('redis-server/redis-cli are not installed (`apt-get install -y redis-server redis-tools`), so no shared Redis Cluster was started'),
  ]);

  const teardown = async (): Promise<void> => {
    await Promise.allSettled([
      standaloneResult.status === 'fulfilled' ? standaloneResult.value.stop() : undefined,
      clusterResult.status === 'fulfilled' && typeof clusterResult.value !== 'string' ? clusterResult.value.stop() : undefined,
    ]);
  };

  if (standaloneResult.status === 'rejected' || clusterResult.status === 'rejected') {
    await teardown();
    throw standaloneResult.status === 'rejected' ? standaloneResult.reason : (clusterResult as PromiseRejectedResult).reason;
  }

  const standalone = standaloneResult.value;
  const cluster = clusterResult.value;
  project.provide('redisStandaloneUrl', standalone.url);
  project.provide('redisStandaloneKind', standalone.kind);
  project.provide('redisClusterNodes', typeof cluster === 'string' ? null : cluster.startupNodes);
  project.provide('redisClusterUnavailable', typeof cluster === 'string' ? cluster : null);
  return teardown;
}
