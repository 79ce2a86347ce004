// The IoWorker's life without a device (no root needed): its thread starts, a port that does not
// exist is refused before any device is opened, close ends the thread (the promise waits for its
// exit, so nothing is left to hold the process), and a closed worker refuses new TAPs. Its frame
// path is tested on real TAPs in test/e2e-worker.test.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch, IoWorker } from '../src/index.js';
import { nativeOr } from './e2e/netns.js';

test('an I/O worker starts, refuses a port the switch does not have, closes its thread, then refuses TAPs', async () => {
  if (!nativeOr('the I/O worker test did not run')) return;
  const sw = new Switch({ maxPorts: 4 });
  sw.addPort();
  const io = new IoWorker(sw, { ringBytes: 1 << 16 });
  await io.ready;
  assert.throws(() => io.tap(3, 'np-never0'), /no port 3/);
  assert.equal(io.ringDrops, { rx: 0, tx: 0 });
  await io.close();
  await io.close();   // twice: the same promise, no error
  assert.throws(() => io.tap(0, 'np-never1'), /closed/);
});

test.run();
