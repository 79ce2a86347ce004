// netplane's native helper (native/tap.c, built by node-gyp at install where a compiler is there):
// the TAP attach, the UDP transport's batches, the underlay's, the ping sockets, the ring's bulk copy
// and the dataplane memory's huge pages. It is optional: everything that uses it has a way without it.
// Its own module, which imports nothing of netplane's, so that the dataplane (src/dataplane.ts) and
// the transports can both load it without an import cycle.
import { createRequire } from 'node:module';

export interface Native {
  open(name: string, offloads: number): [fd: number, accepted: number];
  read(fd: number, buf: Uint8Array, lens: Uint32Array, slot: number): number;
  write(fd: number, base: Uint8Array, desc: Uint32Array, n: number, hdrLen: number): number;
  poll(fd: number, cb: () => void): object;
  stop(handle: object): void;
  close(fd: number): void;
  udpOpen(addr: Uint8Array): [fd: number, port: number];
  udpRecv(fd: number, buf: Uint8Array, lens: Uint32Array, slot: number, from: Uint8Array, segs?: Uint32Array): number;
  udpSend(fd: number, base: Uint8Array, desc: Uint32Array, n: number, to: Uint8Array): number;
  udpDf(fd: number): number;
  udpGro(fd: number): number;
  udpGso(fd: number): number;
  udpSendOnly(fd: number): number;
  udpSendSegments(base: Uint8Array, desc: Uint32Array, n: number, iovs: Uint32Array): number;
  sndBuf(fd: number, bytes: number): number;
  rcvBuf(fd: number, bytes: number): number;
  copy(dst: Uint8Array, at: number, src: Uint8Array): void;
  hugePages(mem: Uint8Array): number;   // 0 or the errno of madvise(MADV_HUGEPAGE)
}

let native: Native | null | undefined;

// The helper, or null where it is not built (or not Linux). The UDP transport batches with it too.
export function loadNative(): Native | null {
  if (process.platform !== 'linux') return null;
  if (native !== undefined) return native;
  const require = createRequire(import.meta.url);
  // native/build/Release/ (scripts/native.mjs) is two levels up both from the bundle
  // (build/dist/*.js) and from here (src/transports/, run from source with tsx).
  try { native = require('../../native/build/Release/netplane_tap.node') as Native; } catch { native = null; }
  return native;
}
