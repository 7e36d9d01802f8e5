#!/usr/bin/env bash
# Builds the firmware (release), runs it in QEMU and diffs what it prints with expected.txt.
# Exits non-zero when the build fails, the firmware fails or hangs, or the output differs.
#
#   ./run.sh          build, run, compare, print the flash and RAM sizes
#   ./run.sh --bless  the same, but write the output to expected.txt instead of comparing
#
# Needs qemu-system-arm and the thumbv7m-none-eabi target (`rustup target add
# thumbv7m-none-eabi`). The QEMU command line is the runner in .cargo/config.toml.
set -euo pipefail

cd "$(dirname "$0")"

export TARGET=thumbv7m-none-eabi
export ELF="target/${TARGET}/release/zendaemon-cortex-m"
exec ../qemu-run.sh "$@"
