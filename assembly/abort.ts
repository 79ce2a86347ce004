// The module imports nothing, so that any WebAssembly host can instantiate it with an empty import
// object. AssemblyScript's `abort` (reached only through a failed assertion in the debug build) records
// where it happened in exported globals and traps; the host reads them after catching the trap.

export let abortMessage: usize = 0;
export let abortFile: usize = 0;
export let abortLine: u32 = 0;
export let abortColumn: u32 = 0;

export function trap(message: string | null, fileName: string | null, lineNumber: u32, columnNumber: u32): void {
  abortMessage = changetype<usize>(message);
  abortFile = changetype<usize>(fileName);
  abortLine = lineNumber;
  abortColumn = columnNumber;
  unreachable();
}
