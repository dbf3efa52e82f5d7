/**
 * Real-Redis test harness: spawns `redis-server` processes (standalone or a
 * Redis Cluster) on loopback ports, with process control (kill / restart /
 * pause / resume) for failure tests.
 *
 * Backends, in order of preference:
 *   1. the `redis-server` binary on PATH (or $REDIS_SERVER_BIN) — full support;
 *   2. Docker via testcontainers (`redis:7`, or $REDIS_IMAGE) — standalone only,
 *      no kill/restart/pause;
 *   3. nothing: a clear error naming what to install.
 *
 * `startSharedStandalone()` additionally honours $REDIS_URL (an external server
 * that is never spawned, stopped or flushed).
 *
 * redis-server processes are started by the shipped launcher in
 * src/cli/demo/redis-process.ts (the demo's and the benchmarks' too), so there is
 * one implementation of ports, readiness and leak protection: every spawned
 * server is killed when the Node process exits, by a watchdog shell when it dies
 * abruptly (SIGKILL), and by the next demo's sweep if both were killed. This file
 * adds what only tests need: clusters, the Docker fallback and $REDIS_URL.
 */
import { execFile, spawnSync } from 'node:child_process';
import {
  askRedis,
  binaryRuns,
  findFreeClusterPort,
  findFreePort,
  LOOPBACK,
  parseInfo,
  redisServerBin,
  startRedisProcess,
  type RedisProcess,
} from '../../src/cli/demo/redis-process.js';
import { sleep } from '../../src/core/state.js';

export { findFreeClusterPort, findFreePort, LOOPBACK, parseInfo };

export interface HostPort {
  host: string;
  port: number;
}

/** `process`: a spawned redis-server; `container`: testcontainers; `external`: $REDIS_URL. */
export type RedisServerKind = 'process' | 'container' | 'external';

export interface RedisServerHandle {
  readonly kind: RedisServerKind;
  readonly host: string;
  readonly port: number;
  /** `redis://host:port` (or $REDIS_URL verbatim for `external`). */
  readonly url: string;
  /** PID of the running redis-server, `undefined` when not running or not a local process. */
  readonly pid: number | undefined;
  /** Data directory (AOF, nodes.conf) for `process` servers. */
  readonly dir: string | undefined;
  /** True when kill/restart/pause/resume are supported (only `process`). */
  readonly controllable: boolean;
  /** SIGTERM, then SIGKILL after a timeout; removes the temp dir. Idempotent, never throws for an already dead server. */
  stop(): Promise<void>;
  /** Sends `signal` (default SIGKILL); for terminating signals, resolves once the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Graceful stop (if running) and start again on the same port and dir, so AOF data and nodes.conf survive. */
  restart(): Promise<void>;
  /** SIGSTOP: the server stops answering, connections stay open. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Last lines of the server's own log output (for diagnostics). */
  logs(): string;
}

export interface StartRedisServerOptions {
  /** default false */
  appendonly?: boolean;
  /** Data directory; default a fresh temp dir that stop() removes. A caller-supplied dir is never removed. */
  dir?: string;
  /** Extra `--name value` arguments for redis-server. */
  extraArgs?: string[];
  /** Fixed port; default a free loopback port. */
  port?: number;
  /** How long to wait for PING to answer; default 20s. */
  startTimeoutMs?: number;
  /** Config file passed first (needed by `redis-server --sentinel`, which rewrites it). */
  configFile?: string;
}

export interface StartRedisClusterOptions {
  /** Number of masters (no replicas); default 3, minimum 3. */
  masters?: number;
  /** default false */
  appendonly?: boolean;
  /** cluster-node-timeout in ms; default 2000. */
  nodeTimeoutMs?: number;
  extraArgs?: string[];
  /** How long to wait for the cluster to become healthy; default 30s. */
  readyTimeoutMs?: number;
}

export interface RedisClusterHandle {
  readonly nodes: RedisServerHandle[];
  readonly startupNodes: HostPort[];
  /** `redis://127.0.0.1:<first node port>` */
  readonly url: string;
  /** Resolves when every running node reports cluster_state:ok, all 16384 slots assigned and ok, and knows every node. */
  waitForHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const CLUSTER_SLOTS = 16384;
const REDIS_SERVER_BIN = redisServerBin();
const REDIS_CLI_BIN = process.env.REDIS_CLI_BIN ?? 'redis-cli';

export const INSTALL_HINT =
  'Install Redis (Debian/Ubuntu: `apt-get install -y redis-server redis-tools`), ' +
  'or start Docker (the harness then runs `redis:7` via testcontainers), ' +
  'or set REDIS_URL to an existing server for the shared standalone fixture.';

// ---------------------------------------------------------------------------
// Availability checks
// ---------------------------------------------------------------------------

/** True when `redis-server` (and `redis-cli`, needed for clusters) can be executed. */
export function redisBinaryAvailable(): boolean {
  return binaryRuns(REDIS_SERVER_BIN) && binaryRuns(REDIS_CLI_BIN);
}

let dockerAvailableCache: boolean | undefined;

/** True when a Docker daemon answers (used only as a fallback for standalone servers). */
export function dockerAvailable(): boolean {
  if (dockerAvailableCache === undefined) {
    const r = spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], { stdio: 'ignore', timeout: 15_000 });
    dockerAvailableCache = r.error === undefined && r.status === 0;
  }
  return dockerAvailableCache;
}

// ---------------------------------------------------------------------------
// Spawned redis-server: the one launcher in src/cli/demo/redis-process.ts
// (ports, readiness, process control, and the leak protection that also
// covers a test run killed with SIGKILL).
// ---------------------------------------------------------------------------

/** A {@link RedisProcess} seen through the harness interface. */
class ProcessRedisServer implements RedisServerHandle {
  readonly kind = 'process' as const;
  readonly controllable = true;
  constructor(private readonly proc: RedisProcess) {}
  get host(): string {
    return this.proc.host;
  }
  get port(): number {
    return this.proc.port;
  }
  get url(): string {
    return this.proc.url;
  }
  get pid(): number | undefined {
    return this.proc.pid;
  }
  get dir(): string {
    return this.proc.dir;
  }
  stop(): Promise<void> {
    return this.proc.stop();
  }
  kill(signal?: NodeJS.Signals): Promise<void> {
    return this.proc.kill(signal);
  }
  restart(): Promise<void> {
    return this.proc.restart();
  }
  pause(): void {
    this.proc.pause();
  }
  resume(): void {
    this.proc.resume();
  }
  logs(): string {
    return this.proc.logs();
  }
}

async function startProcessServer(opts: StartRedisServerOptions, pickPort: () => Promise<number>): Promise<ProcessRedisServer> {
  return new ProcessRedisServer(await startRedisProcess({ ...opts, pickPort }));
}

// ---------------------------------------------------------------------------
// Container (testcontainers) and external ($REDIS_URL) servers
// ---------------------------------------------------------------------------

function unsupported(kind: RedisServerKind, what: string): Error {
  return new Error(
    `${what} is not supported for a ${kind} Redis server (only for a spawned redis-server). ` + `Install redis-server to run this test. ${INSTALL_HINT}`,
  );
}

abstract class UncontrollableServer implements RedisServerHandle {
  abstract readonly kind: RedisServerKind;
  readonly controllable = false;
  readonly pid = undefined;
  readonly dir = undefined;
  constructor(
    readonly host: string,
    readonly port: number,
    readonly url: string,
  ) {}
  abstract stop(): Promise<void>;
  kill(): Promise<void> {
    return Promise.reject(unsupported(this.kind, 'kill()'));
  }
  restart(): Promise<void> {
    return Promise.reject(unsupported(this.kind, 'restart()'));
  }
  pause(): void {
    throw unsupported(this.kind, 'pause()');
  }
  resume(): void {
    throw unsupported(this.kind, 'resume()');
  }
  logs(): string {
    return '';
  }
}

class ExternalRedisServer extends UncontrollableServer {
  readonly kind = 'external' as const;
  /** Never touches the external server. */
  stop(): Promise<void> {
    return Promise.resolve();
  }
}

class ContainerRedisServer extends UncontrollableServer {
  readonly kind = 'container' as const;
  constructor(
    host: string,
    port: number,
    private readonly container: { stop(): Promise<unknown> },
  ) {
    super(host, port, `redis://${host}:${port}`);
  }
  private stopping: Promise<unknown> | undefined;
  async stop(): Promise<void> {
    this.stopping ??= this.container.stop();
    await this.stopping;
  }
}

async function startContainerServer(opts: StartRedisServerOptions): Promise<ContainerRedisServer> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const image = process.env.REDIS_IMAGE ?? 'redis:7';
  const container = await new GenericContainer(image)
    .withExposedPorts(6379)
    .withCommand(['redis-server', '--save', '', '--appendonly', opts.appendonly ? 'yes' : 'no', ...(opts.extraArgs ?? [])])
    .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
    .start();
  return new ContainerRedisServer(container.getHost(), container.getMappedPort(6379), container);
}

/** An external server from a URL (REDIS_URL); stop() leaves it alone and process control is unsupported. */
export function externalRedisServer(url: string): RedisServerHandle {
  const u = new URL(url);
  return new ExternalRedisServer(u.hostname || LOOPBACK, u.port ? Number(u.port) : 6379, url);
}

// ---------------------------------------------------------------------------
// Public start functions
// ---------------------------------------------------------------------------

/**
 * Starts a standalone Redis on 127.0.0.1 on a free port with a temp dir
 * (`--save ""`, `--appendonly yes|no`). Falls back to a Docker container when
 * redis-server is not installed; throws a clear message when neither exists.
 */
export async function startRedisServer(opts: StartRedisServerOptions = {}): Promise<RedisServerHandle> {
  if (redisBinaryAvailable()) return startProcessServer(opts, () => findFreePort());
  if (dockerAvailable()) return startContainerServer(opts);
  throw new Error(
    `Cannot start a Redis server for tests: \`${REDIS_SERVER_BIN}\`/\`${REDIS_CLI_BIN}\` are not on PATH and Docker is not available. ${INSTALL_HINT}`,
  );
}

/** The standalone server shared by a whole test run: $REDIS_URL if set, else a fresh server. */
export async function startSharedStandalone(): Promise<RedisServerHandle> {
  const external = process.env.REDIS_URL;
  if (external) return externalRedisServer(external);
  return startRedisServer({ appendonly: false });
}

async function clusterHealth(node: RedisServerHandle, expectedNodes: number): Promise<string | undefined> {
  try {
    const info = parseInfo(String(await askRedis(node.port, (c) => c.cluster('INFO'), 1000, node.host)));
    if (info.cluster_state !== 'ok') return `cluster_state:${info.cluster_state ?? '?'}`;
    if (info.cluster_slots_assigned !== String(CLUSTER_SLOTS)) return `cluster_slots_assigned:${info.cluster_slots_assigned ?? '?'}`;
    if (info.cluster_slots_ok !== String(CLUSTER_SLOTS)) return `cluster_slots_ok:${info.cluster_slots_ok ?? '?'}`;
    if (info.cluster_known_nodes !== String(expectedNodes)) return `cluster_known_nodes:${info.cluster_known_nodes ?? '?'}`;
    return undefined;
  } catch (err) {
    return String(err);
  }
}

function runRedisCli(args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(REDIS_CLI_BIN, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${REDIS_CLI_BIN} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout + stderr);
    });
    child.stdin?.end();
  });
}

/**
 * Starts `masters` redis-server nodes in cluster mode (each with its own dir and
 * nodes.conf, so a restarted node rejoins), creates the cluster with
 * `redis-cli --cluster create ... --cluster-replicas 0`, and waits until it is healthy.
 */
export async function startRedisCluster(opts: StartRedisClusterOptions = {}): Promise<RedisClusterHandle> {
  const masters = opts.masters ?? 3;
  if (masters < 3) throw new Error('startRedisCluster: Redis Cluster needs at least 3 masters');
  if (!redisBinaryAvailable()) {
    throw new Error(
      `Cannot start a Redis Cluster for tests: \`${REDIS_SERVER_BIN}\` and \`${REDIS_CLI_BIN}\` are required (Docker is not used for clusters). Install them: \`apt-get install -y redis-server redis-tools\`.`,
    );
  }
  const clusterArgs = [
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    'nodes.conf',
    '--cluster-node-timeout',
    String(opts.nodeTimeoutMs ?? 2000),
    ...(opts.extraArgs ?? []),
  ];
  const started = await Promise.allSettled(
    Array.from({ length: masters }, () => startProcessServer({ appendonly: opts.appendonly ?? false, extraArgs: clusterArgs }, findFreeClusterPort)),
  );
  const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const stopAll = async (): Promise<void> => {
    await Promise.allSettled(nodes.map((n) => n.stop()));
  };
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stopAll();
    throw failed.reason;
  }

  const waitForHealthy = async (timeoutMs = opts.readyTimeoutMs ?? 30_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    let problems: string[] = [];
    while (Date.now() < deadline) {
      const results = await Promise.all(nodes.map(async (n) => [n.port, await clusterHealth(n, masters)] as const));
      problems = results.filter(([, p]) => p !== undefined).map(([port, p]) => `${port}: ${p}`);
      if (problems.length === 0) return;
      await sleep(100);
    }
    throw new Error(`Redis Cluster not healthy after ${timeoutMs}ms: ${problems.join('; ')}`);
  };

  try {
    await runRedisCli(['--cluster', 'create', ...nodes.map((n) => `${LOOPBACK}:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], 60_000);
    await waitForHealthy();
  } catch (err) {
    const logs = nodes.map((n) => `--- node ${n.port} ---\n${n.logs().slice(-1500)}`).join('\n');
    await stopAll();
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${logs}`, { cause: err });
  }

  const first = nodes[0];
  if (!first) throw new Error('unreachable: cluster has no nodes');
  let stopping: Promise<void> | undefined;
  return {
    nodes,
    startupNodes: nodes.map((n) => ({ host: n.host, port: n.port })),
    url: first.url,
    waitForHealthy,
    stop: () => (stopping ??= stopAll()),
  };
}

// ---------------------------------------------------------------------------
// TLS servers (test/integration/conn-tls.test.ts)
// ---------------------------------------------------------------------------

/** Certificate files of a TLS server. */
export interface TlsServerFiles {
  certFile: string;
  keyFile: string;
  /** CA(s) the server trusts for client certificates. */
  caFile: string;
}

/** A spawned redis-server with a TLS port beside its plain one (the plain port serves the harness: readiness, admin). */
export interface TlsRedisServerHandle extends RedisServerHandle {
  readonly tlsPort: number;
  /** `rediss://127.0.0.1:<tlsPort>` */
  readonly tlsUrl: string;
}

/**
 * Starts redis-server with `--tls-port` and the given certificate files;
 * `authClients` is redis' `tls-auth-clients` (yes = mutual TLS). The plain
 * port stays open on loopback so the launcher can check readiness; tests
 * connect to the TLS port.
 */
export async function startTlsRedisServer(
  files: TlsServerFiles,
  authClients: 'yes' | 'no' | 'optional',
  extraArgs: string[] = [],
): Promise<TlsRedisServerHandle> {
  if (!redisBinaryAvailable()) throw new Error(`TLS tests need the redis-server binary built with TLS. ${INSTALL_HINT}`);
  let lastErr: unknown;
  // The TLS port is picked before redis-server binds it: another process may take it first.
  for (let attempt = 0; attempt < 5; attempt++) {
    const tlsPort = await findFreePort();
    try {
      const server = await startProcessServer(
        {
          extraArgs: [
            '--tls-port',
            String(tlsPort),
            '--tls-cert-file',
            files.certFile,
            '--tls-key-file',
            files.keyFile,
            '--tls-ca-cert-file',
            files.caFile,
            '--tls-auth-clients',
            authClients,
            ...extraArgs,
          ],
        },
        () => findFreePort(),
      );
      return Object.assign(server, { tlsPort, tlsUrl: `rediss://${LOOPBACK}:${tlsPort}` });
    } catch (err) {
      lastErr = err;
      if (!/already in use|exited during startup/i.test(String(err))) throw err;
    }
  }
  throw lastErr;
}
