// The native TAP attach (Linux): a TAP device read and written by netplane's own small native helper
// (native/tap.c, built by node-gyp when a compiler is there), without socat and a UDP socket in
// between. Without the helper this transport is not available (`nativeTapAvailable()` says so) and
// the UDP transport with socat does the job.
//
// Large segments. By default the TAP is opened with IFF_VNET_HDR and offloads (TUNSETOFFLOAD:
// checksum partial, TSO4/6 with ECN, USO where the kernel has it, Linux 6.2): a TCP sender in the
// namespace hands the TAP 64 KiB super-frames instead of 1500-byte frames, each read with its 12-byte
// virtio-net header; the offloads the kernel accepted become the port's caps (sw.setOffload, the
// shared offload contract), so the switch decides once per super-frame and hands this port
// super-frames and partial checksums back, which the kernel behind the TAP takes whole (no
// segmentation anywhere between two TAPs). `offload: false` opens a plain TAP (no header, frames
// within the MTU), for hosts that want plain frames and to compare.
// A super-frame longer than 65535 bytes with its Ethernet header does not fit the ABI's u16 frame
// length. Linux hands a device only super-frames shorter than its gso_max_size (65536 by default;
// it segments longer ones itself), so one comes only from a TAP whose gso_max_size was raised (BIG
// TCP, `ip link set ... gso_max_size`): it is counted in `rxTooLong` and dropped, not segmented here
// (the sender loses it as on a lossy link; TCP retransmits).
//
// Batched I/O. Readiness comes from a libuv poll; one native call then drains up to a batch of frames
// (header + frame each) into a pooled staging buffer, their lengths into a Uint32Array, and each goes
// into the switch's batch (Pump.receive). Leaving frames are copied into a pooled tx staging buffer
// as the switch delivers them, and at the end of the delivery (Switch.onDelivered) one native call
// writes the whole batch, one writev(header, frame) per frame in a C loop. A frame the device refuses
// (its queue full) is counted in txDropped. Memory is bounded: 64 slots of 64 KiB + 12 each way.
//
// The transport holds the SwitchPort object it attached to (see pump.ts): frames go in only while
// that object is still the switch's port, and close clears only its own handler, never one another
// endpoint set on a port that reuses the id.
import { loadNative } from './native.js';
import { Offload, VNET_HDR_LEN, type Switch, type SwitchPort } from '../dataplane.js';
import { Pump, newStats, attachTx, MAX_FRAME, type TransportStats } from './pump.js';

export function nativeTapAvailable(): boolean {
  return loadNative() !== null;
}

// linux/if_tun.h's TUN_F_* (what we take from the kernel).
const TUN_F = { CSUM: 0x01, TSO4: 0x02, TSO6: 0x04, TSO_ECN: 0x08, USO4: 0x20, USO6: 0x40 } as const;
export const TUN_F_ALL = TUN_F.CSUM | TUN_F.TSO4 | TUN_F.TSO6 | TUN_F.TSO_ECN | TUN_F.USO4 | TUN_F.USO6;

// The port caps that the offloads the kernel accepted stand for: CSUM and TSO* are the same bits;
// USO needs both families.
export function capsOfTunOffloads(tun: number): number {
  if (tun <= 0) return 0;
  const uso = TUN_F.USO4 | TUN_F.USO6;
  return (tun & (Offload.CSUM | Offload.TSO4 | Offload.TSO6 | Offload.TSO_ECN)) | ((tun & uso) === uso ? Offload.USO : 0);
}

const VNET = VNET_HDR_LEN;             // struct virtio_net_hdr_v1
const GSO_TYPE = 1;                    // its gso_type byte; 0 = VIRTIO_NET_HDR_GSO_NONE (| 0x80 ECN)
const SLOT = VNET + MAX_FRAME + 1;     // a header and the longest frame, + 1 to tell a longer one
const BATCH = 64;                      // 64 x 65548 bytes: 4 MiB staging each way
const PLAIN_SLOT = 9216;               // offload: false: the largest frame read (jumbo)
const PLAIN_BATCH = 256;
const TX_FRAMES = 1024;                // frames per tx batch (1500-byte frames: 1.5 MB)

export interface TapOptions {
  offload?: boolean;   // default true: IFF_VNET_HDR and the kernel's offloads; false: plain frames
}

export interface TapStats extends TransportStats {
  rxBatches: number;       // native read calls that returned frames
  txBatches: number;       // native write calls (one per delivery that had frames for this port)
  rxSuperFrames: number;   // frames read with a GSO type (a TSO/USO super-frame)
  txSuperFrames: number;   // frames written with a GSO type
  rxTooLong: number;       // super-frames longer than 65535 bytes with the Ethernet header: dropped
}

export class TapTransport {
  readonly stats: TapStats = { ...newStats(), rxBatches: 0, txBatches: 0, rxSuperFrames: 0, txSuperFrames: 0, rxTooLong: 0 };
  // The TUN_F_* bits the kernel accepted (-1: a plain TAP without a vnet header), and the offload caps
  // the port got from them (0: plain frames both ways).
  readonly tunOffloads: number;
  readonly caps: number;
  private readonly fd: number;
  private readonly hdr: number;        // VNET with a vnet header, else 0
  private readonly slot: number;
  private readonly batch: number;
  private readonly poller: object;
  private readonly buf: Uint8Array;
  private readonly lens: Uint32Array;
  private readonly txBuf: Uint8Array;
  private readonly txDesc = new Uint32Array(TX_FRAMES * 3);
  private txCount = 0;
  private txUsed = 0;
  private readonly detach: () => void;
  private readonly undelivered: () => void;
  private readonly swPort: SwitchPort;

  constructor(readonly sw: Switch, readonly port: number, readonly name: string, opts: TapOptions = {}) {
    const n = loadNative();
    if (!n) throw new Error('the native TAP helper is not built (npm run build:native needs a C compiler and node-gyp)');
    const swPort = this.swPort = sw.port(port);
    const offload = opts.offload !== false;
    [this.fd, this.tunOffloads] = n.open(name, offload ? TUN_F_ALL : -1);
    this.hdr = offload ? VNET : 0;
    this.caps = capsOfTunOffloads(this.tunOffloads);
    sw.setOffload(port, this.caps);
    this.slot = offload ? SLOT : PLAIN_SLOT;
    this.batch = offload ? BATCH : PLAIN_BATCH;
    this.buf = new Uint8Array(this.slot * this.batch);
    this.lens = new Uint32Array(this.batch);
    this.txBuf = new Uint8Array(offload ? SLOT * BATCH : PLAIN_SLOT * PLAIN_BATCH);
    const pump = Pump.of(sw);
    this.poller = n.poll(this.fd, () => {
      let got: number;
      do {
        got = n.read(this.fd, this.buf, this.lens, this.slot);
        if (got > 0) this.stats.rxBatches++;
        for (let i = 0; i < got; i++) this.received(pump, i * this.slot, this.lens[i]);
      } while (got === this.batch);
    });
    this.detach = attachTx(swPort, (f, _port, vnet?: Uint8Array) => this.queue(f, vnet));
    this.undelivered = sw.onDelivered(() => this.writeBatch());
  }

  private received(pump: Pump, at: number, len: number): void {
    const h = this.hdr;
    if (len > h + MAX_FRAME) { this.stats.rxTooLong++; return; }
    if (len < h) { this.stats.rxRefused++; return; }
    const frame = this.buf.subarray(at + h, at + len);
    let vnet: Uint8Array | undefined;
    if (h) {
      if (this.buf[at + GSO_TYPE] !== 0) this.stats.rxSuperFrames++;
      if (this.caps) vnet = this.buf.subarray(at, at + h);
    }
    if (pump.receive(this.swPort, frame, vnet)) this.stats.rxFrames++;
    else this.stats.rxRefused++;
  }

  // Copies a leaving frame (and its header: zeros when the switch gave none) into the tx staging
  // buffer; a full buffer is written out at once, the rest at the end of the delivery.
  private queue(f: Uint8Array, vnet?: Uint8Array): void {
    const h = this.hdr, need = h + f.length;
    if (this.txCount === TX_FRAMES || this.txUsed + need > this.txBuf.length) this.writeBatch();
    if (need > this.txBuf.length) { this.stats.txDropped++; return; }
    const off = this.txUsed;
    if (h) {
      if (vnet) {
        this.txBuf.set(vnet.subarray(0, VNET), off);
        if (vnet[GSO_TYPE] !== 0) this.stats.txSuperFrames++;
      } else this.txBuf.fill(0, off, off + VNET);
    }
    this.txBuf.set(f, off + h);
    const d = this.txCount * 3;
    this.txDesc[d] = off;
    this.txDesc[d + 1] = off + h;
    this.txDesc[d + 2] = f.length;
    this.txCount++;
    this.txUsed = (off + need + 7) & ~7;
  }

  private writeBatch(): void {
    const count = this.txCount;
    if (count === 0) return;
    this.txCount = 0;
    this.txUsed = 0;
    const written = loadNative()!.write(this.fd, this.txBuf, this.txDesc, count, this.hdr);
    this.stats.txBatches++;
    this.stats.txFrames += written;
    this.stats.txDropped += count - written;
  }

  close(): void {
    const n = loadNative()!;
    this.detach();
    this.undelivered();
    if (this.caps && this.sw.ports.get(this.port) === this.swPort) this.sw.setOffload(this.port, 0);
    n.stop(this.poller);
    n.close(this.fd);
  }
}
