// ICMP echo through the host without privileges: Linux's "ping sockets", socket(AF_INET, SOCK_DGRAM,
// IPPROTO_ICMP) and socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6), as passt and podman's slirp use.
// The kernel owns the identifier (the socket's port) and the checksum; only echo requests go out and
// only their replies come in. Node.js has no such socket, so they come from the optional native
// helper (native/tap.c, loaded like the native TAP transport); without it, or when the sysctl
// net.ipv4.ping_group_range leaves this process's group out (the kernel then says EACCES), the
// uplink counts a refusal and says why once.
import { loadNative } from '../transports/native.js';
import { constants } from 'node:os';

interface NativePing {
  pingOpen(v6: boolean): number;
  pingSend(fd: number, v6: boolean, address: string, message: Uint8Array): number;
  pingRecv(fd: number, buf: Uint8Array): [number, string] | null | number;
  poll(fd: number, cb: () => void): object;
  stop(handle: object): void;
  close(fd: number): void;
}

let native: NativePing | null | undefined;

// The native helper (src/transports/native.ts), if it is built with the ping sockets.
function load(): NativePing | null {
  if (native !== undefined) return native;
  const n = loadNative() as Partial<NativePing> | null;
  native = typeof n?.pingOpen === 'function' ? n as NativePing : null;
  return native;
}

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v as number, k]));
export const errnoName = (n: number): string => errnoNames.get(n) ?? `errno ${n}`;

export class PingError extends Error {
  constructor(readonly code: string, message: string) { super(message); }
}

// One ping socket. Opened by the constructor (throws PingError: code 'ENATIVE' without the helper,
// else the errno name, EACCES for ping_group_range); `onReply` gets each echo reply message (type on,
// the kernel's identifier) and its source address.
export class PingSocket {
  private readonly n: NativePing;
  private readonly fd: number;
  private readonly poller: object;
  private readonly buf = new Uint8Array(65536);
  private closed = false;

  constructor(readonly v6: boolean, onReply: (message: Uint8Array, from: string) => void) {
    const n = load();
    if (!n) throw new PingError('ENATIVE', 'the native helper with ping sockets is not built (npm run build:native)');
    this.n = n;
    const fd = n.pingOpen(v6);
    if (fd < 0) throw new PingError(errnoName(-fd), `socket(${v6 ? 'AF_INET6' : 'AF_INET'}, SOCK_DGRAM, ${v6 ? 'IPPROTO_ICMPV6' : 'IPPROTO_ICMP'}): ${errnoName(-fd)}`);
    this.fd = fd;
    this.poller = n.poll(fd, () => {
      for (let i = 0; i < 64 && !this.closed; i++) {
        const r = n.pingRecv(fd, this.buf);
        if (r === null || typeof r === 'number') return;
        onReply(this.buf.subarray(0, r[0]), r[1]);
      }
    });
  }

  // Sends an echo request message (type on) to `address`: bytes sent, or the errno name.
  send(address: string, message: Uint8Array): number | string {
    const r = this.n.pingSend(this.fd, this.v6, address, message);
    return r < 0 ? errnoName(-r) : r;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.n.stop(this.poller);
    this.n.close(this.fd);
  }
}

export const pingAvailable = (): boolean => process.platform === 'linux' && load() !== null;
