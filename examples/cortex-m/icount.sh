#!/usr/bin/env bash
# Instructions per event on a Cortex-M3 (QEMU lm3s6965evb, -icount shift=0): see
# src/bin/icount.rs. Prints one line per scenario; BENCHMARKS.md reports them.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --quiet --bin icount
timeout 300 qemu-system-arm -cpu cortex-m3 -machine lm3s6965evb -nographic -icount shift=0 \
    -semihosting-config enable=on,target=native -kernel target/thumbv7m-none-eabi/release/icount \
    2> >(grep -v 'Timer with period zero' >&2)
