/**
 * Entry point of `bin/orch-api`: parses the environment, starts the service,
 * and shuts it down gracefully on SIGTERM/SIGINT (stop accepting, let
 * in-flight requests finish within ORCH_API_SHUTDOWN_TIMEOUT_MS, release Redis).
 *
 * Resolves with the process exit code (2: configuration, including a Redis
 * password that is refused; 5: Redis unreachable at start); only bin/orch-api
 * calls process.exit. Once started, the service rides out Redis restarts.
 */
import { pino, type DestinationStream } from 'pino';
import { ExitCode, toOrchError } from '../core/errors.js';
import { connectionTarget, redactUrl } from '../core/redis.js';
import { createRedactor } from '../core/redact.js';
import { loadApiConfig, LOG_LEVELS, type ApiConfig } from './config.js';
import { createLogger, safeErrorSerializer } from './logger.js';
import { createApiService, type ApiService } from './server.js';

/** Options of {@link main} (tests). */
export interface MainOptions {
  env?: NodeJS.ProcessEnv;
  /** Signals that stop the service (default SIGTERM and SIGINT). */
  signals?: NodeJS.Signals[];
  /** Called once the server listens. */
  onListening?: (address: { host: string; port: number }, service: ApiService) => void;
  /** Where log lines go (tests capture them); default stdout. */
  logStream?: DestinationStream;
}

/** Starts the API and resolves when it has stopped, with the exit code. */
export async function main(opts: MainOptions = {}): Promise<number> {
  const env = opts.env ?? process.env;
  let config: ApiConfig;
  try {
    config = loadApiConfig(env);
  } catch (err) {
    const e = toOrchError(err);
    const wanted = (env.LOG_LEVEL ?? '').trim().toLowerCase();
    const level = (LOG_LEVELS as readonly string[]).includes(wanted) ? wanted : 'info';
    const bootOptions = { level, base: { service: 'orch-api' }, serializers: { err: (err: unknown) => safeErrorSerializer(err) } };
    const boot = opts.logStream ? pino(bootOptions, opts.logStream) : pino(bootOptions);
    boot.fatal({ code: e.code, suggestion: e.suggestion }, `cannot start: ${e.message}`);
    return e.exitCode;
  }
  const logger = createLogger(config.logLevel, createRedactor(config.sensitiveKeys), opts.logStream);
  // With Sentinel the URL only carries credentials and options; the target is the master name and the sentinels.
  const redisTarget = config.redisSentinel ? connectionTarget({ url: config.redisUrl, sentinel: config.redisSentinel }) : redactUrl(config.redisUrl);

  let service: ApiService;
  try {
    service = await createApiService(config, { logger, defaultMetrics: true });
  } catch (err) {
    const e = toOrchError(err);
    // Expected failures (Redis unreachable, corrupt state record) need no stack trace.
    const detail = e.code === 'ERR_INTERNAL' ? { err: e } : { code: e.code };
    logger.fatal({ ...detail, redis: redisTarget, suggestion: e.suggestion }, `cannot start: ${e.message}`);
    return e.exitCode;
  }

  try {
    await service.app.listen({ host: config.host, port: config.port });
  } catch (err) {
    logger.fatal({ err }, 'cannot listen');
    await service.close();
    return ExitCode.Usage;
  }
  const addr = service.app.server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : config.port;
  logger.info({ host: config.host, port, redis: redisTarget, prefix: config.keys.prefix }, 'orch-api listening');
  opts.onListening?.({ host: config.host, port }, service);

  return new Promise<number>((resolve) => {
    const signals = opts.signals ?? ['SIGTERM', 'SIGINT'];
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: stopping now');
        resolve(ExitCode.Interrupted);
        return;
      }
      stopping = true;
      logger.info({ signal, timeout_ms: config.shutdownTimeoutMs }, 'shutting down: draining in-flight requests');
      const force = setTimeout(() => {
        logger.warn('shutdown timeout: closing remaining connections');
        service.app.server.closeAllConnections();
      }, config.shutdownTimeoutMs);
      force.unref();
      service
        .close()
        .then(() => {
          logger.info('stopped');
          resolve(ExitCode.Ok);
        })
        .catch((err: unknown) => {
          logger.error({ err }, 'error while stopping');
          resolve(ExitCode.Problems);
        })
        .finally(() => {
          clearTimeout(force);
          for (const s of signals) process.off(s, onSignal);
        });
    };
    for (const s of signals) process.on(s, onSignal);
  });
}
