// Classic libpcap capture files: the format (reading and writing in memory) is src/pcap-format.ts,
// shared with the browser bundle; this file adds PcapWriter, which streams records to a file.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Bytes } from './frames.ts';
import { fileHeader, record, checkSnaplen, type PcapSink, type PcapWriteOptions } from './pcap-format.js';

export { LINKTYPE_ETHERNET, writePcap, readPcap, PcapRecorder, type PcapRecord, type PcapWriteOptions, type PcapFile, type PcapSink } from './pcap-format.js';

/** Streams records to a pcap file as they come, for long captures. The header is written on open. */
export class PcapWriter implements PcapSink {
  private fd: number | undefined;
  private readonly nanosecond: boolean;
  private readonly snaplen: number;

  // `path` is opened (created or truncated) here; or the caller opens the file its own way and hands
  // over `fd` (the daemon creates captures only inside its capture directory, never following a
  // symlink), with `append` when the file already holds this writer's header and records.
  constructor(readonly path: string, { nanosecond = false, snaplen = 262144, fd, append = false }: PcapWriteOptions & { fd?: number; append?: boolean } = {}) {
    this.nanosecond = nanosecond;
    this.snaplen = checkSnaplen(snaplen);
    this.fd = fd ?? openSync(path, 'w');
    try {
      if (!append) writeAll(this.fd, fileHeader(nanosecond, snaplen));
    } catch (e) {
      this.close();
      throw e;
    }
  }

  write(data: Bytes, timestampMs: number): void {
    if (this.fd === undefined) throw new Error(`pcap writer for ${this.path} is closed`);
    writeAll(this.fd, record(data, timestampMs, undefined, this.nanosecond, this.snaplen));
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }
}

// writeSync may write less than asked (a full disk, a pipe); a record must not be left half written
// without the caller hearing of it, so keep going until all is written or it throws.
function writeAll(fd: number, bytes: Bytes): void {
  for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
}
