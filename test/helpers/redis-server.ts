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
 * Every spawned redis-server is killed when the Node process exits, and also
 * by a tiny watchdog shell process when this process dies abruptly (SIGKILL),
 * so a crashed test run does not leak servers.
 */
import { spawn, spawnSync, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

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

export const LOOPBACK = '127.0.0.1';
const CLUSTER_SLOTS = 16384;
const CLUSTER_BUS_OFFSET = 10000;
// Port ranges below the Linux ephemeral range (32768+), so outgoing client
// connections never grab a port a stopped server wants back on restart.
// Standalone servers and cluster nodes use disjoint ranges (cluster bus = port+10000).
const STANDALONE_PORT_RANGE: readonly [number, number] = [26000, 32700];
const CLUSTER_PORT_RANGE: readonly [number, number] = [10000, 16000];

const REDIS_SERVER_BIN = process.env.REDIS_SERVER_BIN ?? 'redis-server';
const REDIS_CLI_BIN = process.env.REDIS_CLI_BIN ?? 'redis-cli';

export const INSTALL_HINT =
  'Install Redis (Debian/Ubuntu: `apt-get install -y redis-server redis-tools`), ' +
  'or start Docker (the harness then runs `redis:7` via testcontainers), ' +
  'or set REDIS_URL to an existing server for the shared standalone fixture.';

// ---------------------------------------------------------------------------
// Availability checks
// ---------------------------------------------------------------------------

let binaryAvailableCache: boolean | undefined;

/** True when `redis-server` (and `redis-cli`, needed for clusters) can be executed. */
export function redisBinaryAvailable(): boolean {
  if (binaryAvailableCache === undefined) {
    binaryAvailableCache = [REDIS_SERVER_BIN, REDIS_CLI_BIN].every((bin) => {
      const r = spawnSync(bin, ['--version'], { stdio: 'ignore', timeout: 10_000 });
      return r.error === undefined && r.status === 0;
    });
  }
  return binaryAvailableCache;
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
// Ports
// ---------------------------------------------------------------------------

function canBind(port: number, host = LOOPBACK): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

function randomInt(min: number, maxExclusive: number): number {
  return min + Math.floor(Math.random() * (maxExclusive - min));
}

/**
 * A port that is currently free on 127.0.0.1, chosen at random from a range below
 * the ephemeral range. Another process may still grab it before you bind it:
 * the start functions below retry on "address already in use".
 */
export async function findFreePort(range: readonly [number, number] = STANDALONE_PORT_RANGE): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = randomInt(range[0], range[1]);
    if (await canBind(port)) return port;
  }
  throw new Error(`findFreePort: no free loopback port found in [${range[0]}, ${range[1]})`);
}

/** A port p such that both p and its cluster bus port p+10000 are free on 127.0.0.1. */
export async function findFreeClusterPort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = randomInt(CLUSTER_PORT_RANGE[0], CLUSTER_PORT_RANGE[1]);
    if ((await canBind(port)) && (await canBind(port + CLUSTER_BUS_OFFSET))) return port;
  }
  throw new Error('findFreeClusterPort: no free port pair (p, p+10000) found');
}

// ---------------------------------------------------------------------------
// Minimal RESP client (no retries, no reconnects: just "ask once")
// ---------------------------------------------------------------------------

export type RespValue = string | number | null | RespValue[];

export class RespError extends Error {}

type Parsed = { value: RespValue | RespError; next: number } | undefined;

function parseResp(buf: Buffer, offset: number): Parsed {
  const lineEnd = buf.indexOf('\r\n', offset);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buf[offset] ?? 0);
  const line = buf.toString('utf8', offset + 1, lineEnd);
  const after = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, next: after };
    case '-':
      return { value: new RespError(line), next: after };
    case ':':
      return { value: Number(line), next: after };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, next: after };
      if (buf.length < after + len + 2) return undefined;
      return { value: buf.toString('utf8', after, after + len), next: after + len + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, next: after };
      const items: RespValue[] = [];
      let pos = after;
      for (let i = 0; i < count; i++) {
        const item = parseResp(buf, pos);
        if (!item) return undefined;
        if (item.value instanceof RespError) return item;
        items.push(item.value);
        pos = item.next;
      }
      return { value: items, next: pos };
    }
    default:
      return { value: new RespError(`unexpected RESP type byte ${JSON.stringify(type)}`), next: buf.length };
  }
}

/** Sends one command over a fresh connection and returns its reply (RESP errors are thrown as RespError). */
export function rawCommand(host: string, port: number, args: string[], timeoutMs = 2000): Promise<RespValue> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let settled = false;
    const sock = net.connect({ host, port });
    const finish = (err: Error | undefined, value?: RespValue): void => {
      if (settled) return;
      settled = true;
      sock.destroy();
      if (err) reject(err);
      else resolve(value ?? null);
    };
    sock.setTimeout(timeoutMs, () => finish(new Error(`timeout after ${timeoutMs}ms waiting for ${args[0] ?? ''} on ${host}:${port}`)));
    sock.on('error', (err) => finish(err));
    sock.on('close', () => finish(new Error(`connection to ${host}:${port} closed before a reply`)));
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const parsed = parseResp(buf, 0);
      if (!parsed) return;
      if (parsed.value instanceof RespError) finish(parsed.value);
      else finish(undefined, parsed.value);
    });
    sock.on('connect', () => {
      let out = `*${args.length}\r\n`;
      for (const a of args) out += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
      sock.write(out);
    });
  });
}

/** Parses `INFO`/`CLUSTER INFO` style `key:value` lines. */
export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    if (!line || line.startsWith('#')) continue;
    const idx = line.indexOf(':');
    if (idx > 0) out[line.slice(0, idx)] = line.slice(idx + 1);
  }
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Leak protection: exit handler + watchdog
// ---------------------------------------------------------------------------

const liveChildren = new Set<ChildProcess>();
let session: { root: string; watchdog: ChildProcess | undefined } | undefined;

// Reads "pid" / "-pid" lines on stdin. When stdin closes (this process ended,
// however abruptly), it SIGKILLs every pid still registered that is still a
// redis-server, and removes this process's temp root ($1).
const WATCHDOG_SCRIPT = `
trap '' INT TERM HUP
pids=" "
while IFS= read -r line; do
  case "$line" in
    -*) pids=$(printf '%s' "$pids" | sed "s/ \${line#-} / /") ;;
    *) pids="$pids$line " ;;
  esac
done
for p in $pids; do
  if [ ! -d /proc ] || [ "$(cat /proc/$p/comm 2>/dev/null)" = "redis-server" ]; then
    kill -KILL "$p" 2>/dev/null
  fi
done
sleep 0.2
rm -rf "$1"
`;

/**
 * Per-process temp root holding every server dir this process creates, plus the
 * leak protection: an exit handler and a watchdog that clean up even after SIGKILL.
 */
function harnessSession(): { root: string; watchdog: ChildProcess | undefined } {
  if (session) return session;
  const root = mkdtempSync(path.join(os.tmpdir(), 'orch-migrate-redis-'));
  let watchdog: ChildProcess | undefined;
  try {
    watchdog = spawn('sh', ['-c', WATCHDOG_SCRIPT, 'orch-migrate-redis-watchdog', root], {
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    watchdog.on('error', () => undefined);
    watchdog.stdin?.on('error', () => undefined);
    watchdog.unref();
    (watchdog.stdin as (NodeJS.WritableStream & { unref?: () => void }) | null)?.unref?.();
  } catch {
    watchdog = undefined; // best effort; the exit handler still runs on normal exits
  }
  process.on('exit', () => {
    for (const c of liveChildren) {
      try {
        c.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
    try {
      rmSync(root, { recursive: true, force: true });
    } catch {
      /* the watchdog retries */
    }
  });
  session = { root, watchdog };
  return session;
}

function track(child: ChildProcess): void {
  const { watchdog } = harnessSession();
  liveChildren.add(child);
  const pid = child.pid;
  if (pid === undefined) return;
  watchdog?.stdin?.write(`${pid}\n`);
  child.once('exit', () => {
    liveChildren.delete(child);
    watchdog?.stdin?.write(`-${pid}\n`);
  });
}

// ---------------------------------------------------------------------------
// Spawned redis-server
// ---------------------------------------------------------------------------

class PortInUseError extends Error {}

function isRunning(child: ChildProcess | undefined): boolean {
  return child?.pid !== undefined && child.exitCode === null && child.signalCode === null;
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (!isRunning(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

const TERMINATING_SIGNALS = new Set<NodeJS.Signals>(['SIGKILL', 'SIGTERM', 'SIGINT', 'SIGQUIT']);
const LOG_LIMIT = 64 * 1024;

class ProcessRedisServer implements RedisServerHandle {
  readonly kind = 'process' as const;
  readonly host = LOOPBACK;
  readonly controllable = true;
  private child: ChildProcess | undefined;
  private logBuf = '';
  private stopped = false;

  constructor(
    readonly port: number,
    readonly dir: string,
    private readonly ownsDir: boolean,
    private readonly args: readonly string[],
    private readonly startTimeoutMs: number,
  ) {}

  get url(): string {
    return `redis://${this.host}:${this.port}`;
  }

  get pid(): number | undefined {
    return isRunning(this.child) ? this.child?.pid : undefined;
  }

  logs(): string {
    return this.logBuf;
  }

  private appendLog(chunk: Buffer): void {
    this.logBuf += chunk.toString('utf8');
    if (this.logBuf.length > LOG_LIMIT) this.logBuf = this.logBuf.slice(-LOG_LIMIT);
  }

  /** Spawns redis-server on this.port and waits until it (and not some other server) answers PING. */
  async launch(): Promise<void> {
    if (this.stopped) throw new Error('redis-server handle was stopped; start a new one');
    const argv = [
      '--port', String(this.port),
      '--bind', LOOPBACK,
      '--dir', this.dir,
      '--daemonize', 'no',
      '--logfile', '',
      '--save', '',
      ...this.args,
    ];
    const logStart = this.logBuf.length;
    const child = spawn(REDIS_SERVER_BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    child.stdout?.on('data', (c: Buffer) => this.appendLog(c));
    child.stderr?.on('data', (c: Buffer) => this.appendLog(c));
    child.unref();
    (child.stdout as (NodeJS.ReadableStream & { unref?: () => void }) | null)?.unref?.();
    (child.stderr as (NodeJS.ReadableStream & { unref?: () => void }) | null)?.unref?.();
    track(child);

    const deadline = Date.now() + this.startTimeoutMs;
    let lastErr: unknown;
    let failure: Error | undefined;
    spawnError.then((e) => (failure ??= new Error(`could not spawn ${REDIS_SERVER_BIN}: ${e.message}. ${INSTALL_HINT}`)), () => undefined);
    while (Date.now() < deadline && !failure) {
      if (!isRunning(child)) {
        // Give stdout a moment to flush the reason.
        await sleep(20);
        const log = this.logBuf.slice(logStart);
        failure ??= /Address already in use/i.test(log)
          ? new PortInUseError(`port ${this.port} already in use`)
          : new Error(`redis-server exited during startup (code ${child.exitCode}, signal ${child.signalCode})`);
        break;
      }
      try {
        const pong = await rawCommand(LOOPBACK, this.port, ['PING'], 1000);
        if (pong === 'PONG') {
          const info = parseInfo(String(await rawCommand(LOOPBACK, this.port, ['INFO', 'server'], 1000)));
          if (info.process_id === String(child.pid)) return;
          lastErr = new PortInUseError(`port ${this.port} is answered by another redis-server (pid ${info.process_id ?? '?'})`);
        }
      } catch (err) {
        lastErr = err; // ECONNREFUSED or LOADING while it starts
      }
      await sleep(50);
    }
    failure ??= lastErr instanceof PortInUseError
      ? lastErr
      : new Error(`redis-server on port ${this.port} did not answer PING within ${this.startTimeoutMs}ms (last error: ${String(lastErr)})`);
    await this.terminate();
    if (failure instanceof PortInUseError) throw failure;
    throw new Error(`${failure.message}\n--- redis-server log (dir ${this.dir}) ---\n${this.logBuf.slice(logStart).slice(-4000)}`);
  }

  /** SIGCONT + SIGTERM, then SIGKILL if it has not exited after graceMs. */
  private async terminate(graceMs = 5000): Promise<void> {
    const child = this.child;
    if (!child || !isRunning(child)) return;
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    if (await waitForExit(child, graceMs)) return;
    child.kill('SIGKILL');
    if (!(await waitForExit(child, 5000))) throw new Error(`redis-server pid ${child.pid} did not die after SIGKILL`);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      await this.terminate();
    } finally {
      if (this.ownsDir) await rm(this.dir, { recursive: true, force: true });
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || !isRunning(child)) return;
    child.kill(signal);
    if (!TERMINATING_SIGNALS.has(signal)) return;
    if (signal !== 'SIGKILL') child.kill('SIGCONT'); // a paused server must run to handle SIGTERM/SIGINT
    if (!(await waitForExit(child, 10_000))) throw new Error(`redis-server pid ${child.pid} did not exit after ${signal}`);
  }

  async restart(): Promise<void> {
    await this.terminate();
    // Same port: if something grabbed it meanwhile, retry briefly, then give up.
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await this.launch();
        return;
      } catch (err) {
        if (!(err instanceof PortInUseError) || Date.now() > deadline) throw err;
        await sleep(200);
      }
    }
  }

  pause(): void {
    if (isRunning(this.child)) this.child?.kill('SIGSTOP');
  }

  resume(): void {
    if (isRunning(this.child)) this.child?.kill('SIGCONT');
  }
}

async function startProcessServer(opts: StartRedisServerOptions, pickPort: () => Promise<number>): Promise<ProcessRedisServer> {
  const ownsDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(path.join(harnessSession().root, 'server-')));
  const args = ['--appendonly', opts.appendonly ? 'yes' : 'no', ...(opts.extraArgs ?? [])];
  const attempts = opts.port === undefined ? 8 : 1;
  try {
    for (let attempt = 1; ; attempt++) {
      const port = opts.port ?? (await pickPort());
      const server = new ProcessRedisServer(port, dir, ownsDir, args, opts.startTimeoutMs ?? 20_000);
      try {
        await server.launch();
        return server;
      } catch (err) {
        if (!(err instanceof PortInUseError) || attempt >= attempts) throw err;
      }
    }
  } catch (err) {
    if (ownsDir) await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

// ---------------------------------------------------------------------------
// Container (testcontainers) and external ($REDIS_URL) servers
// ---------------------------------------------------------------------------

function unsupported(kind: RedisServerKind, what: string): Error {
  return new Error(
    `${what} is not supported for a ${kind} Redis server (only for a spawned redis-server). ` +
      `Install redis-server to run this test. ${INSTALL_HINT}`,
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
  throw new Error(`Cannot start a Redis server for tests: \`${REDIS_SERVER_BIN}\`/\`${REDIS_CLI_BIN}\` are not on PATH and Docker is not available. ${INSTALL_HINT}`);
}

/** The standalone server shared by a whole test run: $REDIS_URL if set, else a fresh server. */
export async function startSharedStandalone(): Promise<RedisServerHandle> {
  const external = process.env.REDIS_URL;
  if (external) return externalRedisServer(external);
  return startRedisServer({ appendonly: false });
}

async function clusterHealth(node: RedisServerHandle, expectedNodes: number): Promise<string | undefined> {
  try {
    const info = parseInfo(String(await rawCommand(node.host, node.port, ['CLUSTER', 'INFO'], 1000)));
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
    throw new Error(`Cannot start a Redis Cluster for tests: \`${REDIS_SERVER_BIN}\` and \`${REDIS_CLI_BIN}\` are required (Docker is not used for clusters). Install them: \`apt-get install -y redis-server redis-tools\`.`);
  }
  const clusterArgs = [
    '--cluster-enabled', 'yes',
    '--cluster-config-file', 'nodes.conf',
    '--cluster-node-timeout', String(opts.nodeTimeoutMs ?? 2000),
    ...(opts.extraArgs ?? []),
  ];
  const started = await Promise.allSettled(
    Array.from({ length: masters }, () =>
      startProcessServer({ appendonly: opts.appendonly ?? false, extraArgs: clusterArgs }, findFreeClusterPort),
    ),
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
    await runRedisCli(
      ['--cluster', 'create', ...nodes.map((n) => `${LOOPBACK}:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
      60_000,
    );
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
