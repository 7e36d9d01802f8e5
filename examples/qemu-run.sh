#!/usr/bin/env bash
# The QEMU firmware examples' common runner: builds the firmware in the current folder
# (release), runs it in QEMU and diffs what it prints with expected.txt. Exits non-zero when
# the build fails, the firmware fails or hangs, or the output differs. Each example's run.sh
# sets TARGET (the rustup target) and ELF (the built binary), changes into its folder and
# runs this script; `--bless` writes the output to expected.txt instead of comparing.
# The QEMU command line is the runner in each example's .cargo/config.toml.
set -euo pipefail

: "${TARGET:?TARGET (the rustup target) must be set by the example's run.sh}"
: "${ELF:?ELF (the built binary) must be set by the example's run.sh}"
# Seconds the firmware may run; it needs well under one.
TIMEOUT="${TIMEOUT:-60}"

bless=false
if [[ "${1:-}" == "--bless" ]]; then
    bless=true
fi

if ! command -v qemu-system-arm >/dev/null; then
    echo "run.sh: qemu-system-arm not found (Debian: apt-get install qemu-system-arm)" >&2
    exit 2
fi
if ! rustup target list --installed | grep -qx "$TARGET"; then
    echo "run.sh: the $TARGET target is missing (rustup target add $TARGET)" >&2
    exit 2
fi

echo "+ cargo build --release"
cargo build --release

actual="$(mktemp)"
trap 'rm -f "$actual"' EXIT

echo "+ cargo run --release (qemu-system-arm, timeout ${TIMEOUT} s)"
status=0
timeout "$TIMEOUT" cargo run --release --quiet >"$actual" || status=$?
cat "$actual"
if [[ $status -ne 0 ]]; then
    if [[ $status -eq 124 ]]; then
        echo "run.sh: the firmware did not exit within ${TIMEOUT} s" >&2
    else
        echo "run.sh: the firmware exited with status $status" >&2
    fi
    exit 1
fi

if $bless; then
    cp "$actual" expected.txt
    echo "run.sh: wrote expected.txt"
elif diff -u expected.txt "$actual"; then
    echo "run.sh: output matches expected.txt"
else
    echo "run.sh: output differs from expected.txt (diff above: - expected, + actual)" >&2
    exit 1
fi

# Flash holds .vector_table, .text, .rodata and .data's initial values; RAM holds .data and
# .bss (the stack takes the rest). llvm-size comes with `rustup component add llvm-tools`.
size_tool="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-size"
if [[ ! -x "$size_tool" ]]; then
    size_tool="$(command -v llvm-size || command -v arm-none-eabi-size || true)"
fi
if [[ -n "$size_tool" ]]; then
    echo "+ llvm-size -A $ELF"
    "$size_tool" -A "$ELF" | grep -E '^(section|\.vector_table|\.text|\.rodata|\.data|\.bss|\.uninit) '
else
    echo "run.sh: no llvm-size (rustup component add llvm-tools): sizes not shown"
fi
