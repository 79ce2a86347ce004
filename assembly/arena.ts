// The region the fixed tables live in. create() and create_l3() add up what their tables need, in
// 64 bits, as a sum with one term per table (each table module's bytes()); grow linear memory once by
// exactly that sum, or refuse with an error code; and then hand the tables their parts of the region.
//
// Why not the allocator's heap (TLSF): it caps one block at 1 GiB and traps above it, rounds a large
// request up by as much as 1/16, doubles memory whenever it grows (a 530 MiB set of tables took
// 1 GiB), and traps when the host refuses to grow memory. None of that can be checked before the
// trap. Here a refusal is a return value, the region is exactly the sum, and freshly grown memory is
// zero (the WebAssembly spec), so the tables need not clear it. The heap keeps what configuration
// allocates later (ACL rule sets, backend lists, port bitmaps): a reservation always leaves HEAP_ROOM
// of the 4 GiB address space for it.
export const ALIGN: u64 = 64;                     // a cache line: every table starts on one
export const MEMORY_LIMIT: u64 = <u64>1 << 32;    // wasm32: 65536 pages of 64 KiB
export const HEAP_ROOM: u64 = <u64>16 << 20;

let next: u64 = 0;
let end: u64 = 0;

// The bytes `n` records of `size` bytes take in the region, aligned; in 64 bits, so no product wraps.
@inline export function span(n: u64, size: u64): u64 { return (n * size + ALIGN - 1) & ~(ALIGN - 1); }

// What memory can still grow by, less the heap's room: the most a reservation may ask for.
export function room(): u64 {
  let have = <u64>memory.size() << 16;
  return MEMORY_LIMIT - have > HEAP_ROOM ? MEMORY_LIMIT - have - HEAP_ROOM : 0;
}

// Grows memory by `bytes` (rounded up to pages) for the tables about to be taken; false, with nothing
// changed, when that does not fit in wasm32 or the host refuses to grow.
export function reserve(bytes: u64): bool {
  // The allocator claims all memory there is when first used: make that happen before the region
  // exists, so the region is never also the heap's.
  heap.free(heap.alloc(16));
  if (bytes > room()) return false;
  let pages = (bytes + 0xffff) >> 16;
  let before = memory.grow(<i32>pages);
  if (before < 0) return false;
  next = <u64>before << 16;
  end = next + (pages << 16);
  return true;
}

// The next `n` x `size` bytes of the reserved region.
export function take(n: u64, size: u64): usize {
  let p = next;
  next += span(n, size);
  assert(next <= end, "arena: a table was taken that its create call did not count");
  return <usize>p;
}

// Whether memory can still grow by what the heap needs for `bytes` more (a configuration-time
// allocation, which would trap if it could not): the allocator's rounding and two pages of headers.
// Conservative: free blocks inside the heap are not counted.
export function heapCanGrow(bytes: u64): bool {
  return bytes + (bytes >> 4) + (<u64>2 << 16) <= MEMORY_LIMIT - (<u64>memory.size() << 16);
}
