/**
 * The one launcher of local `redis-server` processes. The demo's throwaway
 * server (./throwaway-redis.ts), the benchmarks (bench/) and the test harness
 * (test/helpers/redis-server.ts) all start their servers here; the harness adds
 * clusters and a Docker fallback on top, the demo adds its safety checks.
 *
 * A server started here must never outlive the process that started it. Four
 * layers make sure of it, because each covers a way the others miss:
 *  1. `stop()`: SIGTERM, then SIGKILL, and the data dir removed.
 *  2. An `exit` handler SIGKILLs every live child: a normal end, an uncaught
 *     error, or `process.exit()` after a signal handler ran.
 *  3. A watchdog shell reads our children's pids on a pipe. When the pipe
 *     closes (this process died, SIGKILL included) it kills the ones that still
 *     carry this session's tag. It ignores SIGHUP, so a closed terminal does not
 *     take it down before it has done its job.
 *  4. {@link sweepLeftovers}: every session leaves a marker file in
 *     os.tmpdir(). A later start finds the sessions whose owner is gone and stops
 *     their servers, but only a process whose command line still carries the
 *     session's random tag (redis-server shows it through
 *     `--proc-title-template`), so a reused pid is never killed.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { sleep } from '../../core/state.js';

/** Every server listens here only. */
export const LOOPBACK = '127.0.0.1';

// Port ranges below the Linux ephemeral range (32768+), so outgoing client
// connections never take a port a stopped server wants back on restart.
// Standalone servers and cluster nodes use disjoint ranges (cluster bus = port + 10000).
const STANDALONE_PORT_RANGE: readonly [number, number] = [26000, 32700];
const CLUSTER_PORT_RANGE: readonly [number, number] = [10000, 16000];
const CLUSTER_BUS_OFFSET = 10000;

/** Prefix of the session dirs in os.tmpdir(); {@link sweepLeftovers} looks only at these. */
export const SESSION_DIR_PREFIX = 'orch-migrate-redis-';
const OWNER_FILE = 'owner.json';
const OWNER_MARKER = 'orch-migrate throwaway redis session v1';
/** The word before the session tag in a server's process title. */
export const PROC_TITLE_TAG = 'orch-migrate-throwaway:';

/** The redis-server binary: $REDIS_SERVER_BIN, else `redis-server` on PATH. */
export function redisServerBin(): string {
  return process.env.REDIS_SERVER_BIN ?? 'redis-server';
}

/** True when `bin --version` runs (cached per binary). */
const availability = new Map<string, boolean>();
export function binaryRuns(bin: string): boolean {
  let ok = availability.get(bin);
  if (ok === undefined) {
    const r = spawnSync(bin, ['--version'], { stdio: 'ignore', timeout: 10_000 });
    ok = r.error === undefined && r.status === 0;
    availability.set(bin, ok);
  }
  return ok;
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: LOOPBACK, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

function randomInt(min: number, maxExclusive: number): number {
  return min + Math.floor(Math.random() * (maxExclusive - min));
}

/**
 * A port that is free on 127.0.0.1 now, chosen at random below the ephemeral
 * range. Another process may still take it before redis-server binds it:
 * {@link startRedisProcess} retries on "address already in use".
 */
export async function findFreePort(range: readonly [number, number] = STANDALONE_PORT_RANGE): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = randomInt(range[0], range[1]);
    if (await canBind(port)) return port;
  }
  throw new Error(`findFreePort: no free loopback port found in [${range[0]}, ${range[1]})`);
}

/** A port p such that both p and its cluster bus port p + 10000 are free on 127.0.0.1. */
export async function findFreeClusterPort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = randomInt(CLUSTER_PORT_RANGE[0], CLUSTER_PORT_RANGE[1]);
    if ((await canBind(port)) && (await canBind(port + CLUSTER_BUS_OFFSET))) return port;
  }
  throw new Error('findFreeClusterPort: no free port pair (p, p+10000) found');
}

// ---------------------------------------------------------------------------
// Asking a local server something (ioredis, one connection, no retries)
// ---------------------------------------------------------------------------

/** Parses `INFO` / `CLUSTER INFO` style `key:value` lines. */
export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    if (!line || line.startsWith('#')) continue;
    const idx = line.indexOf(':');
    if (idx > 0) out[line.slice(0, idx)] = line.slice(idx + 1);
  }
  return out;
}

/**
 * Opens one connection to `host:port`, runs `fn`, closes. No reconnects and no
 * offline queue: a server that is not up yet fails at once, so a caller that
 * polls decides how often to ask.
 */
export async function askRedis<T>(port: number, fn: (client: Redis) => Promise<T>, timeoutMs = 1000, host = LOOPBACK): Promise<T> {
  const client = new Redis({
    host,
    port,
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    retryStrategy: () => null,
  });
  // Errors reach the caller through the rejected promise; the event would only be logged.
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await fn(client);
  } finally {
    client.disconnect();
  }
}

// ---------------------------------------------------------------------------
// The session: marker file, watchdog, exit handler
// ---------------------------------------------------------------------------

interface OwnerRecord {
  marker: string;
  ownerPid: number;
  /** Start time of the owner (Linux /proc ticks), so a reused pid does not look like a live owner. */
  ownerStart: string | null;
  watchdogPid: number | null;
  /** Random tag in every server's process title. */
  tag: string;
  createdAt: number;
}

interface Session {
  root: string;
  tag: string;
  watchdog: ChildProcess | undefined;
}

const liveChildren = new Set<ChildProcess>();
let session: Session | undefined;

/** Start time of a process from /proc/<pid>/stat (field 22), or null where there is no /proc. */
function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: fields count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

/** True when `pid` runs and is not a zombie (an exited child nobody reaped is dead for our purposes). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc (macOS): kill(0) is all we have
  }
}

/** The command line of `pid` (/proc, else `ps`), or null when it cannot be read. */
export function commandLine(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+/g, ' ').trim();
  } catch {
    const r = spawnSync('ps', ['-o', 'args=', '-p', String(pid)], { encoding: 'utf8', timeout: 5000 });
    return r.status === 0 ? r.stdout.trim() : null;
  }
}

// On stdin it reads "pid" and "-pid" lines. When stdin closes (the owner ended,
// however abruptly) it SIGKILLs every registered pid whose command line still
// carries the session tag ($2), then removes the session dir ($1).
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
  if [ -r "/proc/$p/cmdline" ]; then cmd=$(tr '\\000' ' ' < "/proc/$p/cmdline"); else cmd=$(ps -o args= -p "$p" 2>/dev/null); fi
  case "$cmd" in *"${PROC_TITLE_TAG}$2"*) kill -KILL "$p" 2>/dev/null ;; esac
done
sleep 0.2
rm -rf "$1"
`;

function writeOwner(root: string, record: OwnerRecord): void {
  writeFileSync(path.join(root, OWNER_FILE), `${JSON.stringify(record)}\n`);
}

/** The session of this process: created on the first server it starts. */
function currentSession(): Session {
  if (session) return session;
  const root = mkdtempSync(path.join(os.tmpdir(), SESSION_DIR_PREFIX));
  const tag = randomBytes(8).toString('hex');
  let watchdog: ChildProcess | undefined;
  try {
    watchdog = spawn('sh', ['-c', WATCHDOG_SCRIPT, 'orch-migrate-redis-watchdog', root, tag], { stdio: ['pipe', 'ignore', 'ignore'] });
    watchdog.on('error', () => undefined);
    watchdog.stdin?.on('error', () => undefined);
    watchdog.unref();
    (watchdog.stdin as (NodeJS.WritableStream & { unref?: () => void }) | null)?.unref?.();
  } catch {
    watchdog = undefined; // best effort: the exit handler and the sweep still apply
  }
  writeOwner(root, {
    marker: OWNER_MARKER,
    ownerPid: process.pid,
    ownerStart: processStart(process.pid),
    watchdogPid: watchdog?.pid ?? null,
    tag,
    createdAt: Date.now(),
  });
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
      /* the watchdog or the next sweep removes it */
    }
  });
  session = { root, tag, watchdog };
  return session;
}

function pidFile(pid: number): string {
  return path.join(currentSession().root, `pid-${pid}`);
}

function track(child: ChildProcess, port: number): void {
  const { watchdog } = currentSession();
  liveChildren.add(child);
  const pid = child.pid;
  if (pid === undefined) return;
  watchdog?.stdin?.write(`${pid}\n`);
  writeFileSync(pidFile(pid), `${port}\n`);
  child.once('exit', () => {
    liveChildren.delete(child);
    watchdog?.stdin?.write(`-${pid}\n`);
    try {
      unlinkSync(pidFile(pid));
    } catch {
      /* removed with the session */
    }
  });
}

// ---------------------------------------------------------------------------
// Leftovers of earlier runs
// ---------------------------------------------------------------------------

/** What {@link sweepLeftovers} did about one server of a dead session. */
export interface LeftoverServer {
  pid: number;
  port: number | null;
  ownerPid: number;
  /** `stopped`: it was ours and is gone now; `not-ours`: the pid runs something else, left alone; `unverifiable`: its command line could not be read, left alone. */
  action: 'stopped' | 'not-ours' | 'unverifiable';
}

function readOwner(root: string): OwnerRecord | null {
  try {
    const o = JSON.parse(readFileSync(path.join(root, OWNER_FILE), 'utf8')) as Partial<OwnerRecord>;
    if (o.marker !== OWNER_MARKER || typeof o.ownerPid !== 'number' || typeof o.tag !== 'string' || !/^[0-9a-f]{16}$/.test(o.tag)) return null;
    return o as OwnerRecord;
  } catch {
    return null;
  }
}

function ownerAlive(o: OwnerRecord): boolean {
  if (o.ownerPid === process.pid) return true;
  if (!processAlive(o.ownerPid)) return false;
  // Same pid, different start time: the owner died and the pid was reused.
  const start = processStart(o.ownerPid);
  return o.ownerStart === null || start === null || start === o.ownerStart;
}

async function stopVerified(pid: number, tag: string): Promise<LeftoverServer['action'] | 'gone'> {
  if (!processAlive(pid)) return 'gone';
  const cmd = commandLine(pid);
  if (cmd === null) return 'unverifiable';
  if (!cmd.includes(`${PROC_TITLE_TAG}${tag}`)) return 'not-ours';
  try {
    process.kill(pid, 'SIGCONT'); // a paused server must run to handle SIGTERM
    process.kill(pid, 'SIGTERM');
  } catch {
    return 'gone';
  }
  for (let i = 0; i < 50 && processAlive(pid); i++) await sleep(100);
  if (processAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* exited meanwhile */
    }
  }
  return 'stopped';
}

/**
 * Stops the servers of earlier sessions whose owner is gone (a demo whose
 * terminal was closed, a test run killed with SIGKILL together with its
 * watchdog) and removes their session dirs. A server is stopped only when its
 * command line carries its session's tag; sessions of live owners are not
 * touched, nor are dirs without a valid marker.
 */
export async function sweepLeftovers(tmpdir: string = os.tmpdir()): Promise<LeftoverServer[]> {
  const found: LeftoverServer[] = [];
  let names: string[];
  try {
    names = readdirSync(tmpdir).filter((n) => n.startsWith(SESSION_DIR_PREFIX));
  } catch {
    return found;
  }
  for (const name of names) {
    const root = path.join(tmpdir, name);
    const owner = readOwner(root);
    if (!owner || ownerAlive(owner)) continue;
    let keep = false;
    let entries: string[];
    try {
      entries = readdirSync(root);
    } catch {
      continue;
    }
    for (const entry of entries) {
      const m = /^pid-([0-9]{1,10})$/.exec(entry);
      if (!m) continue;
      const pid = Number(m[1]);
      let port: number | null;
      try {
        const text = readFileSync(path.join(root, entry), 'utf8').trim();
        port = /^[0-9]{1,5}$/.test(text) ? Number(text) : null;
      } catch {
        port = null;
      }
      const action = await stopVerified(pid, owner.tag);
      if (action === 'gone') continue;
      if (action === 'unverifiable') keep = true; // try again next time rather than lose the record
      found.push({ pid, port, ownerPid: owner.ownerPid, action });
    }
    if (!keep) await rm(root, { recursive: true, force: true });
  }
  return found;
}

// ---------------------------------------------------------------------------
// A spawned redis-server
// ---------------------------------------------------------------------------

/** redis-server could not bind its port (another process has it); a caller picking ports retries. */
export class PortInUseError extends Error {}

/** Options of {@link startRedisProcess}. */
export interface RedisProcessOptions {
  /** default false */
  appendonly?: boolean;
  /** Data directory; default a fresh dir in this session, removed by stop(). A caller-supplied dir is never removed. */
  dir?: string;
  /** Extra `--name value` arguments for redis-server. */
  extraArgs?: readonly string[];
  /** Fixed port; default a free loopback port from `pickPort`. */
  port?: number;
  /** How free ports are found (default {@link findFreePort}). */
  pickPort?: () => Promise<number>;
  /** How long to wait for the server to answer; default 20 s. */
  startTimeoutMs?: number;
  /** A config file, passed first (redis-server reads it only there); `redis-server --sentinel` needs one it can rewrite. */
  configFile?: string;
}

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

/** A redis-server child on 127.0.0.1, with process control for failure tests. */
export class RedisProcess {
  readonly host = LOOPBACK;
  private child: ChildProcess | undefined;
  private logBuf = '';
  private stopped = false;

  constructor(
    readonly port: number,
    readonly dir: string,
    private readonly ownsDir: boolean,
    private readonly args: readonly string[],
    private readonly startTimeoutMs: number,
    private readonly configFile?: string,
  ) {}

  get url(): string {
    return `redis://${this.host}:${this.port}`;
  }

  /** PID while running, else undefined. */
  get pid(): number | undefined {
    return isRunning(this.child) ? this.child?.pid : undefined;
  }

  /** The last 64 KiB of the server's own log. */
  logs(): string {
    return this.logBuf;
  }

  private appendLog(chunk: Buffer): void {
    this.logBuf += chunk.toString('utf8');
    if (this.logBuf.length > LOG_LIMIT) this.logBuf = this.logBuf.slice(-LOG_LIMIT);
  }

  /** Spawns redis-server on this.port and waits until it (and not some other server) answers. */
  async launch(): Promise<void> {
    if (this.stopped) throw new Error('redis-server handle was stopped; start a new one');
    const bin = redisServerBin();
    const { tag } = currentSession();
    const argv = [
      ...(this.configFile ? [this.configFile] : []),
      '--port',
      String(this.port),
      '--bind',
      LOOPBACK,
      '--dir',
      this.dir,
      '--daemonize',
      'no',
      '--logfile',
      '',
      '--save',
      '',
      // The tag in the process title is what lets a later sweep prove a pid is ours.
      '--proc-title-template',
      `{title} {listen-addr} {server-mode} ${PROC_TITLE_TAG}${tag}`,
      ...this.args,
    ];
    const logStart = this.logBuf.length;
    const child = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    child.stdout?.on('data', (c: Buffer) => this.appendLog(c));
    child.stderr?.on('data', (c: Buffer) => this.appendLog(c));
    // The owner may exit while the server runs: the exit handler and the watchdog end it then.
    child.unref();
    (child.stdout as (NodeJS.ReadableStream & { unref?: () => void }) | null)?.unref?.();
    (child.stderr as (NodeJS.ReadableStream & { unref?: () => void }) | null)?.unref?.();
    track(child, this.port);

    const deadline = Date.now() + this.startTimeoutMs;
    let lastErr: unknown;
    let failure: Error | undefined;
    spawnError.then(
      (e) => (failure ??= new Error(`could not spawn ${bin}: ${e.message}`)),
      () => undefined,
    );
    while (Date.now() < deadline && !failure) {
      if (!isRunning(child)) {
        await sleep(20); // let stdout flush the reason
        const log = this.logBuf.slice(logStart);
        failure ??= /Address already in use/i.test(log)
          ? new PortInUseError(`port ${this.port} already in use`)
          : new Error(`redis-server exited during startup (code ${child.exitCode}, signal ${child.signalCode})`);
        break;
      }
      try {
        const info = parseInfo(await askRedis(this.port, (c) => c.info('server')));
        // Another server on this port would answer too: only our pid counts.
        if (info.process_id === String(child.pid)) {
          // INFO answers while the dataset loads; PING does not (LOADING).
          await askRedis(this.port, (c) => c.ping());
          return;
        }
        lastErr = new PortInUseError(`port ${this.port} is answered by another redis-server (pid ${info.process_id ?? '?'})`);
      } catch (err) {
        lastErr = err; // refused or LOADING while it starts
      }
      await sleep(50);
    }
    failure ??=
      lastErr instanceof PortInUseError
        ? lastErr
        : new Error(`redis-server on port ${this.port} did not answer within ${this.startTimeoutMs}ms (last error: ${String(lastErr)})`);
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

  /** SIGTERM, then SIGKILL after a grace period; removes an owned dir. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    try {
      await this.terminate();
    } finally {
      if (this.ownsDir) await rm(this.dir, { recursive: true, force: true });
    }
  }

  /** Sends `signal` (default SIGKILL); for terminating signals, resolves once the process has exited. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || !isRunning(child)) return;
    child.kill(signal);
    if (!TERMINATING_SIGNALS.has(signal)) return;
    if (signal !== 'SIGKILL') child.kill('SIGCONT'); // a paused server must run to handle SIGTERM/SIGINT
    if (!(await waitForExit(child, 10_000))) throw new Error(`redis-server pid ${child.pid} did not exit after ${signal}`);
  }

  /** Graceful stop (if running) and start again on the same port and dir, so AOF data and nodes.conf survive. */
  async restart(): Promise<void> {
    await this.terminate();
    // Same port: if something took it meanwhile, retry briefly, then give up.
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

  /** SIGSTOP: the server stops answering; connections stay open. */
  pause(): void {
    if (isRunning(this.child)) this.child?.kill('SIGSTOP');
  }

  /** SIGCONT. */
  resume(): void {
    if (isRunning(this.child)) this.child?.kill('SIGCONT');
  }
}

/**
 * Starts redis-server on 127.0.0.1 (`--save ""`, `--appendonly yes|no`) on a
 * free port (retrying when another process takes it first) with a data dir in
 * this process's session. Throws when the binary cannot be run.
 */
export async function startRedisProcess(opts: RedisProcessOptions = {}): Promise<RedisProcess> {
  const ownsDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(path.join(currentSession().root, 'server-')));
  if (!ownsDir) await mkdir(dir, { recursive: true });
  const args = ['--appendonly', opts.appendonly ? 'yes' : 'no', ...(opts.extraArgs ?? [])];
  const attempts = opts.port === undefined ? 8 : 1;
  const pickPort = opts.pickPort ?? (() => findFreePort());
  try {
    for (let attempt = 1; ; attempt++) {
      const port = opts.port ?? (await pickPort());
      const server = new RedisProcess(port, dir, ownsDir, args, opts.startTimeoutMs ?? 20_000, opts.configFile);
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
