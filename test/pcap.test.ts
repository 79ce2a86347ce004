// pcap files are how captures move between netplane and Wireshark/tcpdump, so the writer is checked
// byte for byte against the file format and the reader against files built by hand, including the
// big-endian form written by capture hosts of that byte order.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapWriter, readPcap, writePcap } from '../src/pcap.ts';

const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, '').match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');

const frameA = hex('ffffffffffff 020000000001 0806');
const frameB = Uint8Array.from({ length: 1514 }, (_, i) => i & 0xff);

test('writePcap: exact file and record header bytes', () => {
  const file = writePcap([{ timestamp: 1_700_000_000_123.456, data: hex('01 02 03') }]);
  assert.is(toHex(file), toHex(hex(`
    d4 c3 b2 a1 02 00 04 00 00 00 00 00 00 00 00 00 00 00 04 00 01 00 00 00
    00 f1 53 65 40 e2 01 00 03 00 00 00 03 00 00 00 01 02 03`)));
  // 1700000000 = 0x6553f100 s, 123456 = 0x0001e240 µs, snaplen 262144 = 0x00040000, link type 1.
  const ns = writePcap([{ timestamp: 5000.000001, data: hex('aa') }], { nanosecond: true, snaplen: 65535 });
  assert.is(toHex(ns.subarray(0, 4)), '4d 3c b2 a1');
  assert.is(toHex(ns.subarray(16, 20)), 'ff ff 00 00');
  assert.is(toHex(ns.subarray(24, 32)), '05 00 00 00 01 00 00 00', '5 s and 1 ns');
});

test('write -> read round trip keeps data, lengths, and timestamps to the microsecond', () => {
  const records = [
    { timestamp: 1_700_000_000_123.456, data: frameA },
    { timestamp: 1_700_000_000_999.9996, data: frameB, originalLength: 9000 }, // rounds up into the next second
    { timestamp: 0, data: new Uint8Array(0) },
  ];
  const file = writePcap(records);
  // Record 2 starts at 24 + 16 + 14: 1700000001 s and 0 µs, not 1700000000 s and 1000000 µs.
  assert.is(toHex(file.subarray(54, 62)), '01 f1 53 65 00 00 00 00');
  const back = readPcap(file);
  assert.equal([back.linkType, back.snaplen, back.nanosecond], [1, 262144, false]);
  assert.is(back.records.length, 3);
  back.records.forEach((r, i) => {
    assert.ok(Math.abs(r.timestamp - records[i].timestamp) <= 0.0005, `record ${i} timestamp ${r.timestamp}`);
    assert.is(toHex(r.data), toHex(records[i].data));
    assert.is(r.originalLength, records[i].originalLength ?? records[i].data.length);
  });
  assert.is(back.records[1].timestamp, 1_700_000_001_000);
});

test('nanosecond files round trip to the nanosecond where a double can hold it', () => {
  const records = [{ timestamp: 1234.567891, data: frameA }, { timestamp: 86_400_000.000001, data: frameB }];
  const back = readPcap(writePcap(records, { nanosecond: true }));
  assert.ok(back.nanosecond);
  assert.ok(Math.abs(back.records[0].timestamp - 1234.567891) < 1e-9);
  assert.ok(Math.abs(back.records[1].timestamp - 86_400_000.000001) < 1e-8);
});

test('a frame longer than snaplen is cut, keeping its original length', () => {
  const back = readPcap(writePcap([{ timestamp: 1, data: frameB }], { snaplen: 64 }));
  assert.is(back.records[0].data.length, 64);
  assert.is(back.records[0].originalLength, 1514);
  assert.is(toHex(back.records[0].data), toHex(frameB.subarray(0, 64)));
  assert.throws(() => writePcap([{ timestamp: 1, data: frameA, originalLength: 3 }]), /originalLength/);
  assert.throws(() => writePcap([{ timestamp: -1, data: frameA }]), /non-negative/);
});

test('readPcap reads a big-endian file written by hand', () => {
  const file = hex(`
    a1 b2 c3 d4 00 02 00 04 00 00 00 00 00 00 00 00 00 00 ff ff 00 00 00 01
    00 00 00 0a 00 07 a1 20 00 00 00 04 00 00 00 3c de ad be ef
    00 00 00 0b 00 00 00 00 00 00 00 02 00 00 00 02 ca fe`);
  const pcap = readPcap(file);
  assert.equal([pcap.linkType, pcap.snaplen, pcap.nanosecond], [1, 65535, false]);
  assert.equal(pcap.records.map((r) => [r.timestamp, toHex(r.data), r.originalLength]), [
    [10_500, 'de ad be ef', 60], // 10 s + 500000 µs
    [11_000, 'ca fe', 2],
  ]);
  // The same in big-endian nanoseconds, and an unsupported link type, which is only reported.
  const ns = file.slice(0, 24 + 20);
  ns.set(hex('a1 b2 3c 4d'), 0);
  ns.set(hex('00 00 00 71'), 20); // LINKTYPE_LINUX_SLL
  ns.set(hex('1d cd 65 00'), 28); // 500000000 ns
  const back = readPcap(ns);
  assert.equal([back.linkType, back.nanosecond, back.records[0].timestamp], [113, true, 10_500]);
});

test('readPcap error messages say what and where', () => {
  const good = writePcap([{ timestamp: 1, data: frameA }, { timestamp: 2, data: frameA }]);
  assert.throws(() => readPcap(hex('0a 0d 0d 0a 00 00 00 1c 4d 3c 2b 1a 01 00 00 00 ff ff ff ff ff ff ff ff')),
    (e: Error) => e.message.startsWith('bad pcap magic 0x0a0d0d0a') && e.message.includes('pcapng'));
  assert.throws(() => readPcap(hex('de ad be ef' + '00'.repeat(20))), (e: Error) => e.message.startsWith('bad pcap magic 0xdeadbeef'));
  assert.throws(() => readPcap(good.subarray(0, 10)), /pcap file header truncated: 10 of 24 bytes/);
  // The second record starts at 24 + 16 + 14 = 54.
  assert.throws(() => readPcap(good.subarray(0, good.length - 1)),
    (e: Error) => e.message === 'pcap record 2 truncated at byte offset 54: captured length 14, 13 bytes remain', 'data cut');
  assert.throws(() => readPcap(good.subarray(0, 54 + 5)),
    (e: Error) => e.message === 'pcap record 2 truncated at byte offset 54: its header needs 16 bytes, 5 remain', 'header cut');
  const small = writePcap([{ timestamp: 1, data: frameA }], { snaplen: 100 });
  new DataView(small.buffer).setUint32(16, 10, true); // snaplen now 10, record holds 14
  assert.throws(() => readPcap(small), (e: Error) => e.message === 'pcap record 1: captured length 14 exceeds snaplen 10');
  const v3 = good.slice();
  v3[4] = 3;
  assert.throws(() => readPcap(v3), /unsupported pcap version 3.4/);
});

test('PcapWriter streams to a file that readPcap reads back', () => {
  const dir = mkdtempSync(join(tmpdir(), 'netplane-pcap-'));
  try {
    const path = join(dir, 'out.pcap');
    const w = new PcapWriter(path, { nanosecond: true });
    assert.is(readFileSync(path).length, 24, 'header written on open');
    w.write(frameA, 1_700_000_000_000.5);
    w.write(frameB, 1_700_000_000_001);
    w.close();
    w.close(); // closing twice is harmless
    assert.throws(() => w.write(frameA, 0), /closed/);
    const bytes = readFileSync(path);
    const pcap = readPcap(bytes);
    assert.ok(pcap.nanosecond);
    assert.equal(pcap.records.map((r) => [r.timestamp, r.data.length]), [[1_700_000_000_000.5, 14], [1_700_000_000_001, 1514]]);
    assert.is(toHex(pcap.records[1].data), toHex(frameB));
    assert.is(bytes.length, 24 + 16 + 14 + 16 + 1514);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
