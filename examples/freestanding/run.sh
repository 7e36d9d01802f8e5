#!/usr/bin/env bash
# Builds the freestanding program (release), runs it, and checks its exit status, its output,
# and that it is a static executable. Prints its size. Exits non-zero on any failure.
set -euo pipefail

cd "$(dirname "$0")"

BIN=target/x86_64-unknown-linux-gnu/release/zendaemon-freestanding
# The counts the program must report; its timing line varies from run to run.
EXPECTED='freestanding: ticks=10 work=20 deadline=1 events=33 end=Stopped'
TIMEOUT="${TIMEOUT:-30}"

fail() {
    echo "run.sh: $*" >&2
    exit 1
}

echo "+ cargo build --release"
cargo build --release

echo "+ $BIN"
status=0
output="$(timeout "$TIMEOUT" "$BIN")" || status=$?
printf '%s\n' "$output"
[[ $status -eq 0 ]] || fail "the program exited with status $status (0 expected)"
grep -qxF "$EXPECTED" <<<"$output" || fail "no line '$EXPECTED' in the output"
grep -qxF 'check: ok' <<<"$output" || fail "no line 'check: ok' in the output"

# Static: no program interpreter, no dynamic section, nothing for ldd to load.
sysroot_bin="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
echo "+ ldd $BIN"
ldd_out="$(ldd "$BIN" 2>&1 || true)"
printf '%s\n' "$ldd_out"
if grep -qE '=>|ld-linux' <<<"$ldd_out"; then
    fail "ldd lists shared libraries: the program is not static"
fi
# llvm-readobj comes with `rustup component add llvm-tools`; `file` may not be installed.
if [[ -x "$sysroot_bin/llvm-readobj" ]]; then
    echo "+ llvm-readobj --elf-output-style=GNU --program-headers $BIN"
    headers="$("$sysroot_bin/llvm-readobj" --elf-output-style=GNU --program-headers "$BIN")"
    if grep -qE '^\s*(INTERP|DYNAMIC)\b' <<<"$headers"; then
        printf '%s\n' "$headers"
        fail "the program has an interpreter or a dynamic section"
    fi
    echo "no INTERP or DYNAMIC program header"
fi
if command -v file >/dev/null; then
    echo "+ file $BIN"
    file_out="$(file "$BIN")"
    printf '%s\n' "$file_out"
    grep -q 'statically linked' <<<"$file_out" || fail "file does not call it statically linked"
fi

echo "+ size"
echo "$(stat -c %s "$BIN") bytes: $BIN"
if [[ -x "$sysroot_bin/llvm-size" ]]; then
    "$sysroot_bin/llvm-size" "$BIN"
fi
echo "run.sh: ok"
