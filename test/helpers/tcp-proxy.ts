/**
 * A small TCP proxy (node:net) in front of one server, for the failures a
 * writer meets on a slow network or in a long GC pause: `hold()` stops
 * forwarding in both directions and buffers what arrives, `release()` delivers
 * the buffered bytes in order and forwards again. Nothing is dropped or
 * reordered, so a held command reaches the server late but intact, exactly as
 * a delayed packet would.
 *
 * The proxy holds every connection made through it: point only the one client
 * you want to delay at it (its duplicates, e.g. a subscriber, go through it
 * too, which is what a partitioned process sees).
 */
import net from 'node:net';
import { LOOPBACK } from './redis-server.js';

/** One proxied connection: the client side, the server side, and what is buffered each way. */
interface Pipe {
  client: net.Socket;
  server: net.Socket;
  toServer: Buffer[];
  toClient: Buffer[];
}

/** A running proxy. */
export class TcpProxy {
  private readonly pipes = new Set<Pipe>();
  private held = false;
  /** Bytes that arrived from the client while held (what a test can wait on to know a command is stuck). */
  private heldClientBytes = 0;

  private constructor(
    private readonly listener: net.Server,
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  /** Listens on a free loopback port and forwards to `target`. */
  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const listener = net.createServer();
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen({ host: LOOPBACK, port: 0 }, () => resolve());
    });
    const addr = listener.address() as net.AddressInfo;
    const proxy = new TcpProxy(listener, addr.port, target);
    listener.on('connection', (socket) => proxy.accept(socket));
    return proxy;
  }

  /** `redis://127.0.0.1:<proxy port>`. */
  get url(): string {
    return `redis://${LOOPBACK}:${this.port}`;
  }

  /** Connections currently open through the proxy. */
  get connections(): number {
    return this.pipes.size;
  }

  /** Bytes buffered from clients since the last hold(). */
  get bufferedFromClients(): number {
    return this.heldClientBytes;
  }

  private accept(client: net.Socket): void {
    const server = net.connect({ host: this.target.host, port: this.target.port });
    const pipe: Pipe = { client, server, toServer: [], toClient: [] };
    this.pipes.add(pipe);
    client.setNoDelay(true);
    server.setNoDelay(true);
    client.on('data', (chunk: Buffer) => {
      if (this.held) {
        pipe.toServer.push(chunk);
        this.heldClientBytes += chunk.length;
      } else server.write(chunk);
    });
    server.on('data', (chunk: Buffer) => {
      if (this.held) pipe.toClient.push(chunk);
      else client.write(chunk);
    });
    const end = (): void => {
      if (!this.pipes.delete(pipe)) return;
      client.destroy();
      server.destroy();
    };
    client.on('close', end);
    server.on('close', end);
    client.on('error', end);
    server.on('error', end);
  }

  /** Stops forwarding in both directions; bytes that arrive meanwhile are buffered. */
  hold(): void {
    this.held = true;
    this.heldClientBytes = 0;
  }

  /** Delivers everything buffered, in order, and forwards again. */
  release(): void {
    this.held = false;
    for (const p of this.pipes) {
      for (const chunk of p.toServer.splice(0)) p.server.write(chunk);
      for (const chunk of p.toClient.splice(0)) p.client.write(chunk);
    }
  }

  /** Closes the listener and every proxied connection. */
  async close(): Promise<void> {
    for (const p of this.pipes) {
      p.client.destroy();
      p.server.destroy();
    }
    this.pipes.clear();
    await new Promise<void>((resolve) => this.listener.close(() => resolve()));
  }
}
