/**
 * The reference HTTP API (DESIGN §7) as a fastify app.
 *
 * {@link buildApp} assembles the app from its parts, so unit tests can run it
 * over a MemoryJobQueue with `app.inject()`. {@link createApiService} wires the
 * real thing: a Redis connection, a {@link RedisJobQueue} that follows the
 * phase live (events channel + bounded cache), metrics and shadow reads.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { DestinationStream, Logger } from 'pino';
import { Keyspace } from '../core/keys.js';
import { Layout, readPathFor, type Phase } from '../core/phase.js';
import type { PhaseWatcherOptions } from '../core/phase-watcher.js';
import type { JobQueue } from '../core/queue.js';
import { createRedactor, type Redactor } from '../core/redact.js';
import { closeRedis, connectRedis, type RedisClient } from '../core/redis.js';
import { RedisJobQueue } from '../core/redis-queue.js';
import { TokenTable, type Principal } from './auth.js';
import type { ApiConfig } from './config.js';
import { CursorSealer } from './cursor-envelope.js';
import { toHttpError } from './http-errors.js';
import { createLogger } from './logger.js';
import { ApiMetrics } from './metrics.js';
import { registerJobRoutes } from './routes.js';
import { ShadowReader } from './shadow.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the route's auth hook. */
    orchPrincipal: Principal | null;
    /** The phase this request was started under (cached view). */
    orchPhase: PhaseView | null;
    orchStartedAt: bigint;
  }
}

/** What the API needs to know about the phase. */
export interface PhaseView {
  phase: Phase;
  epoch: number;
  /** Fraction of dual-write reads shadowed against v2 (state record `shadow_read_rate`). */
  shadowReadRate: number;
}

/** Readiness of the service's dependencies. */
export interface Readiness {
  ok: boolean;
  checks: Record<string, 'ok' | 'fail'>;
  phase?: PhaseView;
}

/** Everything the routes use. */
export interface ApiContext {
  queue: JobQueue;
  /** The phase (cached; refreshed on the events channel). */
  phase: () => Promise<PhaseView>;
  tokens: TokenTable;
  cursor: CursorSealer;
  metrics: ApiMetrics;
  redactor: Redactor;
  shadow: ShadowReader | null;
}

/** Options of {@link buildApp}. */
export interface BuildAppOptions extends Omit<ApiContext, 'shadow' | 'redactor'> {
  logger: Logger;
  redactor?: Redactor;
  shadow?: ShadowReader | null;
  readiness?: () => Promise<Readiness>;
  bodyLimitBytes?: number;
}

/** A 4xx cause, compact: type, message and the type of each cause (stacks are for 5xx). */
function briefError(err: unknown): { type: string; message: string; causes?: string[] } {
  if (!(err instanceof Error)) return { type: typeof err, message: String(err).slice(0, 300) };
  const causes: string[] = [];
  let c: unknown = err.cause;
  while (c instanceof Error && causes.length < 5) {
    causes.push(c.name);
    c = c.cause;
  }
  return { type: err.name, message: err.message.slice(0, 300), ...(causes.length > 0 ? { causes } : {}) };
}

/** Accepted incoming x-request-id values; anything else gets a fresh id (no log injection). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/** Builds the fastify app. */
export async function buildApp(opts: BuildAppOptions): Promise<FastifyInstance> {
  const ctx: ApiContext = {
    queue: opts.queue,
    phase: opts.phase,
    tokens: opts.tokens,
    cursor: opts.cursor,
    metrics: opts.metrics,
    redactor: opts.redactor ?? createRedactor(),
    shadow: opts.shadow ?? null,
  };
  const app = Fastify({
    loggerInstance: opts.logger as FastifyBaseLogger,
    logController: new LogController({ requestIdLogLabel: 'request_id' }),
    requestIdHeader: false,
    genReqId: (req) => {
      const h = req.headers['x-request-id'];
      return typeof h === 'string' && REQUEST_ID.test(h) ? h : randomUUID();
    },
    bodyLimit: opts.bodyLimitBytes ?? 256 * 1024,
    // Job ids are up to 128 characters: longer ones reach the schema and get a clean 400
    // (fastify answers 414 only above this bound).
    routerOptions: { maxParamLength: 1024 },
    return503OnClosing: true,
  });

  // Bodies are JSON only (fastify would otherwise also accept text/plain).
  app.removeContentTypeParser('text/plain');
  app.decorateRequest('orchPrincipal', null);
  app.decorateRequest('orchPhase', null);
  app.decorateRequest('orchStartedAt', 0n);

  let lastKnown: PhaseView | null = null;
  let phaseFailing = false;
  const currentPhase = async (): Promise<PhaseView | null> => {
    try {
      lastKnown = await ctx.phase();
      if (phaseFailing) app.log.info('the migration phase is readable again');
      phaseFailing = false;
    } catch (err) {
      // The route itself fails with 503 if it needs Redis; the header keeps the last known path.
      // Logged once per outage, not once per request.
      if (!phaseFailing) app.log.warn({ err }, 'cannot read the migration phase; using the last known one');
      phaseFailing = true;
    }
    return lastKnown;
  };

  app.addHook('onRequest', async (request, reply) => {
    request.orchStartedAt = process.hrtime.bigint();
    reply.header('x-request-id', request.id);
    const view = await currentPhase();
    request.orchPhase = view;
    reply.header('x-read-path', view ? readPathFor(view.phase) : Layout.Legacy);
  });

  app.addHook('onResponse', async (request, reply) => {
    const seconds = Number(process.hrtime.bigint() - request.orchStartedAt) / 1e9;
    const header = reply.getHeader('x-read-path');
    const readPath = header === Layout.Legacy || header === Layout.V2 ? header : 'unknown';
    const route = request.routeOptions.url ?? 'unmatched';
    ctx.metrics.observeRequest(request.method, route, reply.statusCode, readPath, seconds);
  });

  app.setErrorHandler(async (err, request, reply) => {
    const view = toHttpError(err);
    if (view.status >= 500) request.log.error({ err }, 'request failed');
    else request.log.info({ rejected: briefError(err), error_code: view.code }, 'request rejected');
    if (view.status === 503) reply.header('retry-after', '1');
    return reply.code(view.status).send({ error: view.code, message: view.message, request_id: request.id });
  });

  app.setNotFoundHandler(async (request, reply) =>
    reply.code(404).send({ error: 'not_found', message: 'Not found', request_id: request.id }),
  );

  registerJobRoutes(app, ctx);

  app.get('/healthz', async (_request, reply) => {
    const r = opts.readiness ? await opts.readiness() : { ok: true, checks: {} };
    const body: Record<string, unknown> = { status: r.ok ? 'ok' : 'unavailable', checks: r.checks };
    if (r.phase) {
      body.phase = r.phase.phase;
      body.epoch = r.phase.epoch;
      body.read_path = readPathFor(r.phase.phase);
      reply.header('x-read-path', readPathFor(r.phase.phase));
    }
    return reply.code(r.ok ? 200 : 503).send(body);
  });

  app.get('/metrics', async (_request, reply) => {
    const m = await ctx.metrics.render();
    return reply.header('content-type', m.contentType).send(m.body);
  });

  return app;
}

/** The running service's parts. */
export interface ApiService {
  app: FastifyInstance;
  queue: RedisJobQueue;
  client: RedisClient;
  metrics: ApiMetrics;
  logger: Logger;
  shadow: ShadowReader;
  /** Closes the HTTP server, waits for shadow reads, releases Redis (only a client it opened). */
  close(): Promise<void>;
}

/** Options of {@link createApiService}. */
export interface ApiServiceOptions {
  /** Where log lines go (tests capture them); default stdout. */
  logStream?: DestinationStream;
  /** A ready logger (overrides logStream). */
  logger?: Logger;
  /** Reuse an open client (it is not closed by close()). */
  client?: RedisClient;
  /** Collect Node process metrics too (the service does; tests do not). */
  defaultMetrics?: boolean;
  /** Phase cache settings passed to the queue core. */
  phase?: Omit<PhaseWatcherOptions, 'onChange'>;
  /** Random source of the shadow sampler (tests). */
  shadowRandom?: () => number;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new Error('health check timed out')), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/** The layout a mirror key belongs to (metrics label). */
function layoutOfKey(keys: Keyspace, key: string): Layout | 'unknown' {
  if (keys.parseV2(key)) return Layout.V2;
  if (keys.legacySuffix(key) !== null) return Layout.Legacy;
  return 'unknown';
}

/** Connects to Redis and builds the API over a {@link RedisJobQueue}. */
export async function createApiService(config: ApiConfig, opts: ApiServiceOptions = {}): Promise<ApiService> {
  const redactor = createRedactor(config.sensitiveKeys);
  const logger = opts.logger ?? createLogger(config.logLevel, redactor, opts.logStream);
  if (config.cursorSecretGenerated) {
    // The value is deliberately not logged: anyone who can read the logs could forge cursors with it.
    logger.warn(
      'ORCH_API_CURSOR_SECRET is not set: generated a random cursor secret for this process (value not logged). ' +
        'Cursors will not survive a restart and are not valid on other replicas; set ORCH_API_CURSOR_SECRET to share one.',
    );
  }
  const tokens = new TokenTable(config.tokens);
  const invalid = tokens.invalidWorkspaces();
  if (invalid > 0) logger.warn({ entries: invalid }, 'token table entries with an invalid workspace_id: their requests get 403');
  if (config.metricsWorkspaceLabel && config.metricsWorkspaceAllowlist.length === 0) {
    logger.warn('METRICS_WORKSPACE_LABEL=on with an empty METRICS_WORKSPACE_ALLOWLIST: every workspace is labelled "unscoped"');
  }

  const ownsClient = opts.client === undefined;
  const client = opts.client ?? (await connectRedis({ url: config.redisUrl, cluster: config.redisCluster, connectionName: 'orch-api' }));
  let queue: RedisJobQueue | null = null;
  const phase = async (): Promise<PhaseView> => {
    if (!queue) throw new Error('queue not ready');
    const s = await queue.phase();
    // The watcher keeps the last valid phase for writers; the API must not act on it (503).
    if (queue.watcher.problem) throw queue.watcher.problem;
    return { phase: s.phase, epoch: s.epoch, shadowReadRate: s.shadowReadRate };
  };
  const metrics = new ApiMetrics({
    workspaceLabel: config.metricsWorkspaceLabel,
    allowlist: config.metricsWorkspaceAllowlist,
    defaultMetrics: opts.defaultMetrics ?? false,
    phaseSource: phase,
  });
  try {
    queue = await RedisJobQueue.create(client, {
      keys: config.keys,
      legacyScanCount: config.legacyScanCount,
      phase: {
        ...opts.phase,
        onChange: (s) => {
          metrics.setPhase(s.phase, s.epoch);
          logger.info({ phase: s.phase, epoch: s.epoch, read_path: readPathFor(s.phase) }, `migration phase ${s.phase} (epoch ${s.epoch}): reads follow ${readPathFor(s.phase)}`);
        },
      },
      onMirrorFailure: (f) => {
        metrics.mirrorFailure(layoutOfKey(config.keys, f.key));
        logger.warn({ err: f.error, job_id: f.jobId, mirror_key: f.key }, 'mirror write failed; the primary holds the write (verify --repair fixes the mirror)');
      },
    });
  } catch (err) {
    if (ownsClient) await closeRedis(client);
    throw err;
  }
  const q = queue;
  const shadow = new ShadowReader({ client, keys: config.keys, metrics, ...(opts.shadowRandom ? { random: opts.shadowRandom } : {}) });

  const app = await buildApp({
    queue: q,
    phase,
    tokens,
    cursor: new CursorSealer(config.cursorSecrets),
    metrics,
    redactor,
    logger,
    shadow,
    bodyLimitBytes: config.bodyLimitBytes,
    readiness: async () => {
      const checks: Record<string, 'ok' | 'fail'> = { redis: 'fail', phase: 'fail' };
      let view: PhaseView | undefined;
      try {
        await withTimeout(client.ping(), 2000);
        checks.redis = 'ok';
        const s = await withTimeout(q.watcher.store.read(), 2000);
        checks.phase = 'ok';
        view = { phase: s.phase, epoch: s.epoch, shadowReadRate: s.shadowReadRate };
      } catch (err) {
        logger.warn({ err, checks }, 'readiness check failed');
      }
      return { ok: checks.redis === 'ok' && checks.phase === 'ok', checks, ...(view ? { phase: view } : {}) };
    },
  });

  let closed = false;
  return {
    app,
    queue: q,
    client,
    metrics,
    logger,
    shadow,
    close: async () => {
      if (closed) return;
      closed = true;
      await app.close();
      await shadow.drain();
      await q.close();
      if (ownsClient) await closeRedis(client);
    },
  };
}
