// Token buckets for what the router sends on its own (ICMP errors, ARP requests): a flood of expiring
// or unroutable packets must not turn into a flood of replies. Tokens are counted in thousandths so
// the refill is exact in integers: `rate` per second is `rate` thousandths per millisecond.

@unmanaged
export class Bucket {
  rate: u32;             // tokens per second
  burst: u32;            // bucket size
  tokens: u64;           // thousandths of a token
  last: u32;             // ms of the last refill

  take(now: u32): bool {
    let dt = now - this.last;
    this.last = now;
    let cap = <u64>this.burst * 1000;
    let t = this.tokens + <u64>dt * <u64>this.rate;
    if (t > cap || dt > 0x7fffffff) t = cap;
    if (t < 1000) {
      this.tokens = t;
      return false;
    }
    this.tokens = t - 1000;
    return true;
  }

  set(rate: u32, burst: u32): void {
    this.rate = rate;
    this.burst = burst;
    this.tokens = <u64>burst * 1000;
  }
}

// Static memory, not heap objects: the module allocates nothing before create().
export const icmpErrors = changetype<Bucket>(memory.data(24, 8));
export const arpRequests = changetype<Bucket>(memory.data(24, 8));

// Defaults: 100 a second, bursts of 50.
export function initBuckets(): void {
  icmpErrors.set(100, 50);
  arpRequests.set(100, 50);
}
