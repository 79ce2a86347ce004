// Hash mixing shared by the tables: the MurmurHash3 64-bit finalizer, which spreads every input bit over
// the whole output so that masking the low bits for a power-of-two table is safe.

// The secret key of the tables whose keys a guest or a remote host picks (conntrack, MAC, fragments,
// IPv6 addresses, endpoint-independent mappings, neighbours), xored into each hash's input before the
// mixing: without it, anyone who reads this file can compute keys that share a home slot and grow one
// probe run until every lookup in it walks thousands of slots (a hash flooding attack, as on Linux's
// conntrack before its hash took a random seed, nf_conntrack_hash_rnd; Open vSwitch keys its hashes with
// a random basis the same way). The host sets it before create() (set_hash_seed): the Node.js and
// browser entries from 64 random bits. Hashes that must agree across hosts take none: the load
// balancer's backend choice (nodes/nat.ts backendHash), the VXLAN source port.
export let seed: u64 = 0;
export function setSeed(s: u64): void { seed = s; }

@inline export function mix64(h: u64): u64 {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccd;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53;
  h ^= h >> 33;
  return h;
}

@inline export function hash3(a: u64, b: u64, c: u64): u32 {
  return <u32>mix64(a ^ mix64(b ^ mix64(c)));
}

@inline export function nextPow2(n: u32): u32 {
  let s: u32 = 16;
  while (s < n) s <<= 1;
  return s;
}

// The 8-byte index slots of the record tables (conntrack, interned addresses): the key's 32-bit hash
// in the low word (0 = empty slot), the record reference in the high word.
export function indexSlotUsed(s: usize): bool { return load<u64>(s) != 0; }
export function indexSlotHome(s: usize): u32 { return load<u32>(s); }

// Backward-shift deletion for the linear-probing tables (Knuth's Algorithm R): empties slot i, then
// moves each later record of the probe run up into the hole unless its home slot lies cyclically
// between the hole and itself. No tombstones, so lookups never slow down as entries come and go.
// `used` says whether a slot holds a record; `home` is the slot a record hashes to. Configuration and
// expiry paths only: the two calls per moved record are indirect.
export function eraseAt(base: usize, size: usize, mask: u32, i: u32, used: (s: usize) => bool, home: (s: usize) => u32): void {
  let j = i;
  while (true) {
    j = (j + 1) & mask;
    let sj = base + <usize>j * size;
    if (!used(sj)) break;
    let h = home(sj) & mask;
    let stays = i <= j ? (h > i && h <= j) : (h > i || h <= j);
    if (!stays) {
      memory.copy(base + <usize>i * size, sj, size);
      i = j;
    }
  }
  memory.fill(base + <usize>i * size, 0, size);
}
