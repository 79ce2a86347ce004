// `netplane serve`: a Host (model, dataplane, state directory) behind a management API, HTTP + JSON on
// localhost and on a unix socket. Objects: /networks, /endpoints, /namespaces, /loadbalancers (GET
// the list, POST to create, GET/PUT/DELETE /<kind>/<ID>). Views: /mac, /connections, /stats, and
// POST /trace. Errors are JSON { error: { code, field, reason } } with 400 (InvalidArgument), 404
// (NotFound) or 409 (AlreadyExists, Conflict). SIGINT / SIGTERM close the listeners and exit; the
// state is saved on every change already, so nothing is lost at any moment.
import { createServer, type Server, type IncomingMessage, type ServerResponse } from 'node:http';
import { existsSync, unlinkSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Host } from './host.js';
import { ModelError } from './model/validate.js';
import type { Kind, Transport } from './model/types.js';
import { openTransport } from './host.js';
import type { HostConfig } from './compile/host.js';

export interface DaemonConfig {
  stateDir: string;
  listen?: { host?: string; port?: number; socket?: string | false };
  uplink?: HostConfig['uplink'] & { transport?: Transport };
  defaults?: { network?: boolean };   // create the default NAT network when the state is empty
}

export const DEFAULT_PORT = 7073;
const KINDS: Record<string, Kind> = { networks: 'network', endpoints: 'endpoint', namespaces: 'namespace', loadbalancers: 'loadbalancer' };
const STATUS: Record<string, number> = { InvalidArgument: 400, NotFound: 404, AlreadyExists: 409, Conflict: 409 };

// The network `npm start` begins with: one NAT network with a gateway.
export const DEFAULT_NETWORK = {
  ID: 'nat', Name: 'nat', Type: 'NAT',
  Ipams: [{ Type: 'Static', Subnets: [{ IpAddressPrefix: '172.20.0.0/24', Routes: [{ NextHop: '172.20.0.1', DestinationPrefix: '0.0.0.0/0' }] }] }],
};

export function readConfig(file: string): DaemonConfig {
  let c: DaemonConfig;
  try { c = JSON.parse(readFileSync(file, 'utf8')); } catch (e) { throw new Error(`${file}: ${(e as Error).message}`); }
  if (typeof c.stateDir !== 'string') throw new Error(`${file}: stateDir: must be the path of the state directory`);
  return c;
}

export class Daemon {
  readonly host: Host;
  private servers: Server[] = [];
  socketPath?: string;
  port?: number;
  private closeUplink?: () => Promise<void>;

  constructor(readonly config: DaemonConfig) {
    this.host = new Host({ stateDir: config.stateDir, config: { uplink: config.uplink } });
    if (config.defaults?.network && this.host.store.list('network').length === 0) this.host.store.create('network', DEFAULT_NETWORK);
  }

  async listen(): Promise<void> {
    const l = this.config.listen ?? {};
    if (this.config.uplink?.transport) {
      const port = this.host.addUplinkPort();
      this.closeUplink = await openTransport(this.host.sw, port, this.config.uplink.transport, 'uplink.transport');
    }
    await this.host.syncTransports();
    const handler = (req: IncomingMessage, res: ServerResponse) => { this.handle(req, res).catch((e) => reply(res, 500, { error: { code: 'Internal', reason: String(e) } })); };
    const tcp = createServer(handler);
    await new Promise<void>((ok, fail) => { tcp.once('error', fail); tcp.listen(l.port ?? DEFAULT_PORT, l.host ?? '127.0.0.1', () => ok()); });
    const addr = tcp.address();
    this.port = typeof addr === 'object' && addr ? addr.port : undefined;
    this.servers.push(tcp);
    if (l.socket !== false) {
      const path = l.socket ?? join(this.config.stateDir, 'netplane.sock');
      if (existsSync(path)) unlinkSync(path);
      const unix = createServer(handler);
      await new Promise<void>((ok, fail) => { unix.once('error', fail); unix.listen(path, () => ok()); });
      this.socketPath = path;
      this.servers.push(unix);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => new Promise<void>((ok) => s.close(() => ok()))));
    await this.host.closeTransports();
    await this.closeUplink?.();
    this.servers = [];
    if (this.socketPath && existsSync(this.socketPath)) unlinkSync(this.socketPath);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://netplane');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const body = req.method === 'POST' || req.method === 'PUT' ? await readBody(req) : undefined;
    try {
      const [top, id] = parts;
      const store = this.host.store, sw = this.host.sw;
      if (top && KINDS[top]) {
        const kind = KINDS[top];
        if (!id && req.method === 'GET') return reply(res, 200, store.list(kind));
        if (id && req.method === 'GET') return reply(res, 200, store.get(kind, id));
        // A change, then the transports it implies; if one cannot open, the change is undone.
        const before = store.snapshot();
        let result: unknown;
        if (!id && req.method === 'POST') result = store.create(kind, json(body));
        else if (id && req.method === 'PUT') result = store.modify(kind, id, json(body));
        else if (id && req.method === 'DELETE') { store.delete(kind, id); result = { deleted: id }; }
        if (result !== undefined) {
          try {
            await this.host.syncTransports();
          } catch (e) {
            this.host.restore(before);
            await this.host.syncTransports().catch(() => {});
            throw e;
          }
          return reply(res, !id ? 201 : 200, result);
        }
      }
      if (req.method === 'GET' && top === 'mac') return reply(res, 200, sw.macTable());
      if (req.method === 'GET' && top === 'connections') return reply(res, 200, sw.router.connections());
      if (req.method === 'GET' && top === 'stats') return reply(res, 200, { ...sw.counters(), ports: [...sw.ports.keys()].map((p) => ({ port: p, ...sw.portCounters(p) })) });
      if (req.method === 'POST' && top === 'trace') {
        const t = json(body) as { port?: unknown; frame?: unknown };
        if (typeof t.port !== 'number' || !sw.ports.has(t.port)) throw new ModelError('InvalidArgument', 'port', `no port ${JSON.stringify(t.port)}`);
        if (typeof t.frame !== 'string' || !/^([0-9a-fA-F]{2})+$/.test(t.frame)) throw new ModelError('InvalidArgument', 'frame', 'must be the frame in hex');
        const r = sw.trace(t.port, Buffer.from(t.frame, 'hex'));
        return reply(res, 200, { steps: r.steps, text: r.text, dropped: r.dropped, output: r.output.map((o) => ({ port: o.port, frame: Buffer.from(o.frame).toString('hex') })) });
      }
      reply(res, 404, { error: { code: 'NotFound', field: 'path', reason: `no such resource: ${req.method} ${url.pathname}` } });
    } catch (e) {
      if (e instanceof ModelError) return reply(res, STATUS[e.code] ?? 400, { error: { code: e.code, field: e.field, reason: e.reason } });
      const err = e as Error & { field?: string; reason?: string };
      reply(res, 400, { error: { code: 'InvalidArgument', field: err.field ?? '', reason: err.reason ?? err.message } });
    }
  }
}

function json(body: string | undefined): unknown {
  try { return JSON.parse(body ?? ''); } catch { throw new ModelError('InvalidArgument', 'body', 'must be a JSON document'); }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((ok, fail) => {
    let s = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { s += c; if (s.length > 1 << 20) { fail(new Error('request body over 1 MiB')); req.destroy(); } });
    req.on('end', () => ok(s));
    req.on('error', fail);
  });
}

function reply(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
