"""Pure, stdlib-only logic the bridge's modules share (no I/O, no threads)."""
