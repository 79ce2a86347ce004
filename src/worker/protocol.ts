// What an IoWorker (src/worker/io.ts) and its thread (src/worker/io-thread.ts) tell each other by
// postMessage: control only (attach, detach, close); frames go through the rings (src/worker/ring.ts).
export interface IoThreadData { rx: SharedArrayBuffer; tx: SharedArrayBuffer; counters: SharedArrayBuffer; native: string; maxPorts: number }
// hdr: the bytes of vnet header before each frame the device reads and writes (0 or 12); caps: the
// port's offload caps (non-zero: the headers read are meaningful and go to the switch).
export type IoCommand = { op: 'tap'; port: number; fd: number; hdr: number; caps: number } | { op: 'detach'; port: number } | { op: 'close' };
export type IoReply = { op: 'ready' } | { op: 'detached'; port: number } | { op: 'closed' };

// Per port, in `counters` (Float64, COUNTERS a port; written by the I/O thread, read without
// synchronization: exact once it is idle): frames read, frames written, frames the TAP refused (its
// queue full) or that came for a port with no TAP here, reads that were no frame (shorter than the
// vnet header, or longer than 65535 bytes after it).
export const COUNTERS = 4;
export const READ = 0, WRITTEN = 1, WRITE_FAILED = 2, READ_REFUSED = 3;

