// The package's version, from its package.json, looked for upwards from this module (src/ in the
// source, build/dist/ in the bundle), so a moved bundle still finds it. The CLI prints it; a cluster
// member publishes it in its hosts/ record.
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export function version(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++, dir = dirname(dir)) {
    try {
      const p = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (p.name === 'netplane' && p.version) return p.version;
    } catch { /* not here: one level up */ }
  }
  return 'unknown';
}
