// A DHCP client's side for the model's tests (host, daemon): BOOTP/DHCP messages built and replies
// parsed here, independently of the server's encoder (RFC 2131 §2, RFC 2132). test/dhcp.test.ts has
// the server's own, fuller unit tests.
import * as assert from 'uvu/assert';
import { ethernet, ipv4, udp, dissect, verifyChecksums } from '../src/frames.js';

export const DISCOVER = 1, OFFER = 2, REQUEST = 3, ACK = 5, NAK = 6, RELEASE = 7;

export interface ClientMessage { type: number; mac: string; xid?: number; ciaddr?: string; requested?: string; server?: string; broadcast?: boolean }

const ipBytes = (s: string) => s.split('.').map(Number);

// A client message in a frame: broadcast from 0.0.0.0 unless the client has an address (ciaddr),
// then unicast to the server (`to`).
export function dhcpFrame(m: ClientMessage, to?: { mac: string; ip: string }): Uint8Array {
  const opts = [53, 1, m.type, ...(m.requested ? [50, 4, ...ipBytes(m.requested)] : []), ...(m.server ? [54, 4, ...ipBytes(m.server)] : []), 255];
  const b = new Uint8Array(240 + opts.length);
  const v = new DataView(b.buffer);
  b[0] = 1; b[1] = 1; b[2] = 6;
  v.setUint32(4, m.xid ?? 0x1234abcd);
  v.setUint16(10, m.broadcast ? 0x8000 : 0);
  b.set(ipBytes(m.ciaddr ?? '0.0.0.0'), 12);
  m.mac.split(':').forEach((h, i) => (b[28 + i] = parseInt(h, 16)));
  v.setUint32(236, 0x63825363);
  b.set(opts, 240);
  const dst = to ?? { mac: 'ff:ff:ff:ff:ff:ff', ip: '255.255.255.255' };
  return ethernet({ src: m.mac, dst: dst.mac, payload: ipv4({ src: m.ciaddr ?? '0.0.0.0', dst: dst.ip, payload: udp({ srcPort: 68, dstPort: 67, payload: b }) }) });
}

export interface ServerReply { ethSrc: string; ethDst: string; ipSrc: string; ipDst: string; type: number; yiaddr: string; chaddr: string; opts: Map<number, number[]> }

export function parseReply(f: Uint8Array): ServerReply {
  assert.ok(verifyChecksums(f), 'IPv4 and UDP checksums correct');
  const d = dissect(f);
  assert.equal([d.udp?.srcPort, d.udp?.dstPort], [67, 68], 'from the server port to the client port');
  const b = f.subarray(14 + 20 + 8);
  assert.is(new DataView(b.buffer, b.byteOffset).getUint32(236), 0x63825363, 'magic cookie');
  const opts = new Map<number, number[]>();
  for (let i = 240; b[i] !== 255;) {
    assert.ok(i + 1 < b.length, 'options end inside the message');
    opts.set(b[i], [...b.subarray(i + 2, i + 2 + b[i + 1])]);
    i += 2 + b[i + 1];
  }
  return {
    ethSrc: d.src!, ethDst: d.dst!, ipSrc: d.ipv4!.src, ipDst: d.ipv4!.dst, type: opts.get(53)![0],
    yiaddr: [...b.subarray(16, 20)].join('.'), chaddr: [...b.subarray(28, 34)].map((x) => x.toString(16).padStart(2, '0')).join(':'), opts,
  };
}

export const ipOpt = (o: number[] | undefined): string[] => {
  const out: string[] = [];
  for (let i = 0; o && i + 4 <= o.length; i += 4) out.push(o.slice(i, i + 4).join('.'));
  return out;
};
export const u32Opt = (o: number[] | undefined): number => (o ? ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0 : NaN);
