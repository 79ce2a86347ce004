// Classic libpcap capture files (https://wiki.wireshark.org/Development/LibpcapFileFormat,
// draft-ietf-opsawg-pcap), link type Ethernet.
//
// Why: pcap is how frames get into and out of netplane for people — replaying captured traffic
// through a policy set, and opening what the switch emitted in Wireshark. Pipeline tests read and
// write it too, so the reader is strict and says exactly where a file is wrong instead of returning
// a short list of records.
//
// Choices:
// - We write little-endian, microsecond (magic 0xa1b2c3d4) or nanosecond (0xa1b23c4d) files, the
//   forms every tool reads. We read both byte orders and both resolutions.
// - Timestamps are milliseconds since the epoch, as Date.now() gives them, fractional for sub-ms.
//   Note that a double near today's epoch holds about 0.25 µs, so a nanosecond file read back
//   cannot be exact to the nanosecond in this unit.
// - A record longer than snaplen is cut to snaplen on write, keeping its original length, the way a
//   capture does. On read, a captured length beyond snaplen is an error: the file is inconsistent.
// - Records are numbered from 1 in error messages, as Wireshark and tcpdump number frames.
// - The link type is reported, never refused: a reader of a Linux cooked capture can still see why
//   its frames do not look like Ethernet.
//
// This file is the format, in memory, with no file system: it is shared by the Node.js entry and the
// browser bundle. PcapWriter, which streams to a file, is in src/pcap.ts.

import type { Bytes } from './frames.ts';

export const LINKTYPE_ETHERNET = 1;

const MAGIC_MICROSECOND = 0xa1b2c3d4;
const MAGIC_NANOSECOND = 0xa1b23c4d;
const FILE_HEADER_LENGTH = 24;
const RECORD_HEADER_LENGTH = 16;

export interface PcapRecord {
  /** Milliseconds since the epoch, fractional allowed. */
  timestamp: number;
  data: Bytes;
  /** The length of the frame on the wire, when more than `data` was seen; defaults to data.length. */
  originalLength?: number;
}

export interface PcapWriteOptions {
  /** Nanosecond timestamps (magic 0xa1b23c4d) instead of microseconds. */
  nanosecond?: boolean;
  /** The largest captured length; longer frames are cut. Default 262144, as tcpdump. */
  snaplen?: number;
}

export interface PcapFile {
  linkType: number;
  snaplen: number;
  nanosecond: boolean;
  records: PcapRecord[];
}

export function fileHeader(nanosecond: boolean, snaplen: number): Bytes {
  const h = new Uint8Array(FILE_HEADER_LENGTH);
  const v = new DataView(h.buffer);
  v.setUint32(0, nanosecond ? MAGIC_NANOSECOND : MAGIC_MICROSECOND, true);
  v.setUint16(4, 2, true); // version 2.4
  v.setUint16(6, 4, true);
  // thiszone and sigfigs stay 0.
  v.setUint32(16, snaplen, true);
  v.setUint32(20, LINKTYPE_ETHERNET, true);
  return h;
}

export function checkSnaplen(snaplen: number): number {
  if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > 0xffffffff) throw new RangeError(`pcap snaplen must be a positive 32-bit integer, got ${snaplen}`);
  return snaplen;
}

export function record(data: Bytes, timestamp: number, originalLength: number | undefined, nanosecond: boolean, snaplen: number): Bytes {
  if (!Number.isFinite(timestamp) || timestamp < 0) throw new RangeError(`pcap timestamp must be non-negative milliseconds, got ${timestamp}`);
  const perSecond = nanosecond ? 1e9 : 1e6;
  let seconds = Math.floor(timestamp / 1000);
  let fraction = Math.round((timestamp - seconds * 1000) * (perSecond / 1000));
  if (fraction >= perSecond) {
    seconds += 1;
    fraction -= perSecond;
  }
  if (seconds > 0xffffffff) throw new RangeError(`pcap timestamp ${timestamp} is past the year 2106, beyond 32-bit seconds`);
  const original = originalLength ?? data.length;
  if (!Number.isInteger(original) || original < data.length || original > 0xffffffff) {
    throw new RangeError(`pcap originalLength must be a 32-bit integer no less than the ${data.length} bytes given, got ${original}`);
  }
  const captured = Math.min(data.length, snaplen);
  const r = new Uint8Array(RECORD_HEADER_LENGTH + captured);
  const v = new DataView(r.buffer);
  v.setUint32(0, seconds, true);
  v.setUint32(4, fraction, true);
  v.setUint32(8, captured, true);
  v.setUint32(12, original, true);
  r.set(data.subarray(0, captured), RECORD_HEADER_LENGTH);
  return r;
}

/** A whole pcap file in memory. */
export function writePcap(records: PcapRecord[], { nanosecond = false, snaplen = 262144 }: PcapWriteOptions = {}): Bytes {
  checkSnaplen(snaplen);
  const parts = [fileHeader(nanosecond, snaplen), ...records.map((r) => record(r.data, r.timestamp, r.originalLength, nanosecond, snaplen))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Parses a pcap file of either byte order and resolution. Throws on anything inconsistent. */
export function readPcap(bytes: Bytes): PcapFile {
  if (bytes.length < FILE_HEADER_LENGTH) throw new Error(`pcap file header truncated: ${bytes.length} of ${FILE_HEADER_LENGTH} bytes`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = v.getUint32(0, true);
  let le: boolean, nanosecond: boolean;
  if (magic === MAGIC_MICROSECOND) [le, nanosecond] = [true, false];
  else if (magic === MAGIC_NANOSECOND) [le, nanosecond] = [true, true];
  else if (v.getUint32(0, false) === MAGIC_MICROSECOND) [le, nanosecond] = [false, false];
  else if (v.getUint32(0, false) === MAGIC_NANOSECOND) [le, nanosecond] = [false, true];
  else {
    const seen = `0x${v.getUint32(0, false).toString(16).padStart(8, '0')}`;
    const hint = seen === '0x0a0d0d0a' ? ' (this is a pcapng file; only classic pcap is read)' : '';
    throw new Error(`bad pcap magic ${seen} (first four bytes, big-endian)${hint}`);
  }
  const major = v.getUint16(4, le), minor = v.getUint16(6, le);
  if (major !== 2) throw new Error(`unsupported pcap version ${major}.${minor}`);
  const snaplen = v.getUint32(16, le);
  // The link type is the low 16 bits; the high bits may carry FCS information (draft-ietf-opsawg-pcap §4).
  const linkType = v.getUint32(20, le) & 0xffff;
  const perMillisecond = nanosecond ? 1e6 : 1e3;
  const records: PcapRecord[] = [];
  for (let off = FILE_HEADER_LENGTH, n = 1; off < bytes.length; n++) {
    const remain = bytes.length - off;
    if (remain < RECORD_HEADER_LENGTH) {
      throw new Error(`pcap record ${n} truncated at byte offset ${off}: its header needs ${RECORD_HEADER_LENGTH} bytes, ${remain} remain`);
    }
    const seconds = v.getUint32(off, le), fraction = v.getUint32(off + 4, le);
    const captured = v.getUint32(off + 8, le), original = v.getUint32(off + 12, le);
    if (captured > snaplen) throw new Error(`pcap record ${n}: captured length ${captured} exceeds snaplen ${snaplen}`);
    if (captured > remain - RECORD_HEADER_LENGTH) {
      throw new Error(`pcap record ${n} truncated at byte offset ${off}: captured length ${captured}, ${remain - RECORD_HEADER_LENGTH} bytes remain`);
    }
    const start = off + RECORD_HEADER_LENGTH;
    records.push({
      timestamp: seconds * 1000 + fraction / perMillisecond,
      data: bytes.slice(start, start + captured),
      originalLength: original,
    });
    off = start + captured;
  }
  return { linkType, snaplen, nanosecond, records };
}

/** Where Switch.capture writes: a PcapWriter (a file, Node.js) or a PcapRecorder (memory). */
export interface PcapSink {
  write(data: Bytes, timestampMs: number): void;
  close(): void;
}

/** Keeps captured records in memory; bytes() is the pcap file (to download, or to readPcap). */
export class PcapRecorder implements PcapSink {
  readonly records: PcapRecord[] = [];
  private closed = false;
  constructor(private readonly options: PcapWriteOptions & { limit?: number } = {}) {
    checkSnaplen(options.snaplen ?? 262144);
  }

  write(data: Bytes, timestampMs: number): void {
    if (this.closed) throw new Error('pcap recorder is closed');
    const limit = this.options.limit ?? Infinity;
    if (this.records.length >= limit) this.records.shift();   // bounded: the newest `limit` records
    this.records.push({ timestamp: timestampMs, data: data.slice() });
  }

  close(): void { this.closed = true; }

  bytes(): Bytes { return writePcap(this.records, this.options); }
}
