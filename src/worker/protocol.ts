// What an IoWorker (src/worker/io.ts) and its thread (src/worker/io-thread.ts) tell each other by
// postMessage: control only (attach, detach, close); frames go through the rings (src/worker/ring.ts).
export interface IoThreadData { rx: SharedArrayBuffer; tx: SharedArrayBuffer; counters: SharedArrayBuffer; native: string; maxPorts: number }
// batched: the helper's write takes a batch (write(fd, base, desc, n, hdrLen)), else one frame a call.
export type IoCommand = { op: 'tap'; port: number; fd: number; batched: boolean } | { op: 'detach'; port: number } | { op: 'close' };
export type IoReply = { op: 'ready' } | { op: 'detached'; port: number } | { op: 'closed' };

// Per port, in `counters` (Float64, COUNTERS a port): frames read, frames written, frames the TAP
// refused (its queue full) or that came for a port with no TAP here.
export const COUNTERS = 3;
export const READ = 0, WRITTEN = 1, WRITE_FAILED = 2;

