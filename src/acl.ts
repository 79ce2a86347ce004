// ACLs in the SDK: rule sets at network level and at endpoint (port) level, in HNS's shape, with an
// explicit default action per port and direction (HNS silently turns to default-deny once any ACL
// exists; here the default is a visible setting, Allow unless set). A port's effective rules are its
// network's plus its own; each direction compiles into one classifier (src/compile/acl.ts) bound to
// the port in the dataplane. A change compiles everything it touches before binding anything, so a
// refused rule set leaves every port as it was; every binding starts a new policy generation, which
// re-classifies established connections on their next packet.
import { NetplaneError, ABI_ERRORS, abi, type DataplaneView } from './abi.js';
import { tcpFlags, type ConntrackTcp } from './router.js';
import { compileAcl, readHits, normalize, AclError, type AclRule, type AclAction } from './compile/acl.js';

export type { AclRule, AclAction };

export interface PortAclSpec {
  rules?: AclRule[];
  defaultIn?: AclAction;    // to the endpoint; default Allow
  defaultOut?: AclAction;   // from the endpoint; default Allow
  tcp?: ConntrackTcp;        // TCP tracking of the port's connections; default not liberal, no pickup
}

interface Bound { blob: number; ids: string[] }

const DIRS = ['Out', 'In'] as const;
const ACL_ZONE_BASE = 1024;

export class Acls {
  private networkRules = new Map<number, AclRule[]>();
  private portSpecs = new Map<number, PortAclSpec>();
  private bound = new Map<string, Bound>();

  constructor(private readonly dp: DataplaneView, private readonly networkOf: (port: number) => number | undefined,
              private readonly portsOf: (network: number) => number[]) {}

  // Rules every endpoint (port) of the network gets, before its own.
  setNetworkRules(network: number, rules: AclRule[]): void {
    if (!Number.isInteger(network) || network < 0 || network > 65535) throw new NetplaneError('network', `must be an integer from 0 to 65535, got ${network}`);
    validate(rules);
    const old = this.networkRules.get(network);
    if (rules.length) this.networkRules.set(network, rules); else this.networkRules.delete(network);
    try {
      this.applyAll(this.portsOf(network));
    } catch (e) {
      if (old) this.networkRules.set(network, old); else this.networkRules.delete(network);
      throw e;
    }
  }

  // A port's own rules and default actions (replacing what it had).
  setPortAcl(port: number, spec: PortAclSpec): void {
    if (this.networkOf(port) === undefined) throw new NetplaneError('port', `no port ${port}`);
    validate(spec.rules ?? []);
    for (const k of ['defaultIn', 'defaultOut'] as const) {
      const a = spec[k];
      if (a !== undefined && a !== 'Allow' && a !== 'Block') throw new NetplaneError(k, `must be "Allow" or "Block", got ${JSON.stringify(a)}`);
    }
    // The port's conntrack zone (1024 + port): its ACL connections. Pickup is off unless asked for
    // (assembly/nodes/ct.ts says why).
    const tcp = tcpFlags({ pickup: false, ...spec.tcp });
    const old = this.portSpecs.get(port);
    this.portSpecs.set(port, spec);
    try {
      this.applyAll([port]);
    } catch (e) {
      if (old) this.portSpecs.set(port, old); else this.portSpecs.delete(port);
      throw e;
    }
    abi('tcp', this.dp.exports.ct_zone_set_tcp(ACL_ZONE_BASE + port, tcp));
  }

  // Called when a port is added (it gets its network's rules) or removed (its bindings go).
  portAdded(port: number): void { this.applyAll([port]); }
  portRemoved(port: number): void {
    this.portSpecs.delete(port);
    for (const d of DIRS) this.release(`${port}/${d}`);
    this.dp.exports.ct_zone_set_tcp(ACL_ZONE_BASE + port, tcpFlags({ pickup: false }));
  }

  // Hits per rule Id (rules without an Id are named by their position), for a port or all ports.
  hits(port?: number): Record<string, number> {
    const out: Record<string, number> = {};
    this.dp.views();
    for (const [key, b] of this.bound) {
      if (port !== undefined && !key.startsWith(`${port}/`) || !b.blob) continue;
      readHits(this.dp.dv, b.blob).forEach((h, i) => { out[b.ids[i]] = (out[b.ids[i]] ?? 0) + h; });
    }
    return out;
  }

  generation(): number { return this.dp.exports.acl_generation(); }

  // The rule Ids of a port's direction (0 Out, 1 In) by precedence: what the dataplane's rule numbers mean.
  ruleIds(port: number, dir: number): string[] {
    return this.bound.get(`${port}/${DIRS[dir]}`)?.ids ?? [];
  }

  // Compiles every (port, direction) first, then binds them: a compile error binds nothing.
  private applyAll(ports: number[]): void {
    const plans: Array<{ port: number; dir: number; bytes?: Uint8Array; ids: string[]; def: number; active: boolean }> = [];
    for (const port of ports) {
      const network = this.networkOf(port);
      if (network === undefined) continue;
      const spec = this.portSpecs.get(port) ?? {};
      const rules = [...(this.networkRules.get(network) ?? []), ...(spec.rules ?? [])];
      DIRS.forEach((d, dir) => {
        const mine = rules.filter((r) => r.Direction === d);
        const def = (d === 'In' ? spec.defaultIn : spec.defaultOut) ?? 'Allow';
        let compiled;
        try {
          compiled = mine.length ? compileAcl(mine) : undefined;
        } catch (e) {
          if (e instanceof AclError) throw new NetplaneError(e.field, e.reason);
          throw e;
        }
        plans.push({ port, dir, bytes: compiled?.bytes, ids: compiled?.ruleIds ?? [], def: def === 'Allow' ? 1 : 0, active: mine.length > 0 || def === 'Block' });
      });
    }
    const x = this.dp.exports;
    for (const p of plans) {
      const anyActive = plans.some((q) => q.port === p.port && q.active);
      const key = `${p.port}/${DIRS[p.dir]}`;
      if (!anyActive) {
        this.release(key);
        continue;
      }
      let blob = 0;
      if (p.bytes) {
        blob = x.acl_alloc(p.bytes.length);
        if (!blob) throw new NetplaneError('rules', `no memory for a rule set of ${p.bytes.length} bytes`);
        this.dp.views();
        this.dp.u8.set(p.bytes, blob);
      }
      const e = x.acl_bind(p.port, p.dir, blob, p.bytes?.length ?? 0, p.def);
      if (e < 0) {
        if (blob) x.acl_free(blob);
        throw new NetplaneError('acl', ABI_ERRORS[e] ?? `error ${e}`);
      }
      const old = this.bound.get(key);
      if (old?.blob) x.acl_free(old.blob);
      this.bound.set(key, { blob, ids: p.ids });
    }
  }

  private release(key: string): void {
    const b = this.bound.get(key);
    if (!b) return;
    const [port, d] = key.split('/');
    this.dp.exports.acl_unbind(Number(port), d === 'Out' ? 0 : 1);
    if (b.blob) this.dp.exports.acl_free(b.blob);
    this.bound.delete(key);
  }
}

function validate(rules: AclRule[]): void {
  if (!Array.isArray(rules)) throw new NetplaneError('rules', 'must be an array');
  rules.forEach((r, i) => {
    try { normalize(r, i); } catch (e) {
      if (e instanceof AclError) throw new NetplaneError(e.field, e.reason);
      throw e;
    }
  });
}
