/**
 * The routes. Endpoint code never branches on the phase: the queue core picks
 * the layout; the routes only scope by the token's workspace, validate input,
 * seal cursors and redact params.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ZodError, type ZodType } from 'zod';
import { CursorError } from '../core/errors.js';
import { Layout, readPathFor } from '../core/phase.js';
import { Scope, type Principal } from './auth.js';
import { ApiError, zodSummary } from './http-errors.js';
import {
  CreateJobSchema,
  DEFAULT_LIMIT,
  JobParamsSchema,
  ListQuerySchema,
  PatchJobSchema,
  toWireJob,
  type ListResponse,
  type WireJob,
} from './schemas.js';
import type { ApiContext } from './server.js';

function parse<T>(schema: ZodType<T>, value: unknown, what: string): T {
  const res = schema.safeParse(value ?? {});
  if (!res.success) throw new ApiError(400, 'invalid_request', zodSummary(res.error, what), { cause: res.error });
  return res.data;
}

/** The principal set by the route's auth hook. */
function principalOf(request: FastifyRequest): Principal {
  const p = request.orchPrincipal;
  if (!p) throw new ApiError(401, 'unauthorized', 'Missing bearer token');
  return p;
}

/** Route-level onRequest hook: authenticates and checks the scope before any body is read. */
export function requireScope(ctx: ApiContext, scope: Scope) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const res = ctx.tokens.authenticate(request.headers.authorization, scope);
    if (res.ok) {
      request.orchPrincipal = res.principal;
      return;
    }
    if (res.status === 401) {
      reply.header('www-authenticate', res.error === 'unauthorized' ? 'Bearer realm="orch-api"' : 'Bearer realm="orch-api", error="invalid_token"');
    } else if (res.error === 'insufficient_scope') {
      reply.header('www-authenticate', `Bearer realm="orch-api", error="insufficient_scope", scope="${scope}"`);
    }
    request.log.info({ auth: res.error }, 'request refused by auth');
    await reply.code(res.status).send({ error: res.error, message: res.message, request_id: request.id });
  };
}

/** Registers /ai/jobs routes. */
export function registerJobRoutes(app: FastifyInstance, ctx: ApiContext): void {
  // Every job route is routed by the phase: while the state record is unusable ctx.phase() throws
  // (503) instead of the route acting on a guessed or last-known phase.
  const phaseKnown = async (_request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (!reply.sent) await ctx.phase();
  };
  const preview = [requireScope(ctx, Scope.Preview), phaseKnown];
  const write = [requireScope(ctx, Scope.Write), phaseKnown];
  const wire = (j: Parameters<typeof toWireJob>[0]): WireJob => toWireJob(j, ctx.redactor);

  app.get('/ai/jobs', { onRequest: preview }, async (request, reply): Promise<ListResponse> => {
    const { workspaceId } = principalOf(request);
    const q = parse(ListQuerySchema, request.query, 'query');
    const limit = q.limit ?? DEFAULT_LIMIT;
    const view = request.orchPhase ?? (await ctx.phase());
    let raw: string | null = null;
    if (q.cursor !== undefined) {
      try {
        raw = ctx.cursor.open(q.cursor, workspaceId, readPathFor(view.phase));
      } catch (err) {
        ctx.metrics.cursorRejected(/read path/.test(err instanceof Error ? err.message : '') ? 'read_path_changed' : 'invalid');
        throw err;
      }
    }
    const started = process.hrtime.bigint();
    let page;
    try {
      page = await ctx.queue.listJobs(workspaceId, { limit, cursor: raw });
    } catch (err) {
      if (err instanceof CursorError) ctx.metrics.cursorRejected(/read path/.test(err.message) ? 'read_path_changed' : 'invalid');
      throw err;
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    reply.header('x-read-path', page.readPath);
    ctx.metrics.observeList(workspaceId, page.readPath, page.jobs.length, seconds);
    if (ctx.shadow && page.readPath === Layout.Legacy && ctx.shadow.sampled(view.phase, view.shadowReadRate)) {
      ctx.shadow.shadow(workspaceId, page.jobs, request.log);
    }
    return {
      workspace_id: workspaceId,
      jobs: page.jobs.map(wire),
      count: page.jobs.length,
      next_cursor: page.nextCursor === null ? null : ctx.cursor.seal(page.nextCursor, workspaceId, page.readPath),
    };
  });

  app.get('/ai/jobs/:job_id', { onRequest: preview }, async (request): Promise<WireJob> => {
    const { workspaceId } = principalOf(request);
    const { job_id } = parse(JobParamsSchema, request.params, 'job id');
    const job = await ctx.queue.getJob(workspaceId, job_id);
    // Same answer whether the job is absent or belongs to another workspace.
    if (!job) throw new ApiError(404, 'not_found', 'Job not found');
    const view = request.orchPhase;
    if (ctx.shadow && view && readPathFor(view.phase) === Layout.Legacy && ctx.shadow.sampled(view.phase, view.shadowReadRate)) {
      ctx.shadow.shadow(workspaceId, [job], request.log);
    }
    return wire(job);
  });

  app.post('/ai/jobs', { onRequest: write }, async (request, reply): Promise<WireJob> => {
    const { workspaceId } = principalOf(request);
    const body = parse(CreateJobSchema, request.body, 'body');
    const job = await ctx.queue.enqueue({
      workspaceId,
      action: body.action,
      params: body.params,
      ...(body.job_id === undefined ? {} : { jobId: body.job_id }),
    });
    reply.code(201).header('location', `/ai/jobs/${encodeURIComponent(job.jobId)}`);
    return wire(job);
  });

  app.patch('/ai/jobs/:job_id', { onRequest: write }, async (request): Promise<WireJob> => {
    const { workspaceId } = principalOf(request);
    const { job_id } = parse(JobParamsSchema, request.params, 'job id');
    const body = parse(PatchJobSchema, request.body, 'body');
    try {
      const job = await ctx.queue.updateStatus(workspaceId, job_id, {
        status: body.status,
        ...(body.result === undefined ? {} : { result: body.result }),
        ...(body.error === undefined ? {} : { error: body.error }),
      });
      return wire(job);
    } catch (err) {
      if (err instanceof ZodError) throw new ApiError(400, 'invalid_request', zodSummary(err, 'body'), { cause: err });
      throw err;
    }
  });
}
