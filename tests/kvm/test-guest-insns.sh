#!/bin/bash
# The built-in guest contains none of the instructions kvm-pvm cannot run
# (int3, int1/icebp, cmpxchg16b: the VM stops with an emulation failure),
# whatever the compiler (CC=gcc or clang) put in it.
set -eu
guest=$top_builddir/guests/xtk-guest.elf
objdump=$(command -v objdump || true)
[ -n "$objdump" ] || { echo "objdump missing (Debian binutils)" >&2; exit 1; }
dis=$("$objdump" -d --no-show-raw-insn "$guest")
n=$(echo "$dis" | grep -c . || true)
[ "$n" -gt 100 ] || { echo "no code in $guest?" >&2; exit 1; }
bad=$(echo "$dis" | grep -E -w 'int3|int1|icebp|cmpxchg16b' || true)
if [ -n "$bad" ]; then
    echo "instructions kvm-pvm cannot run, in $guest:" >&2
    echo "$bad" >&2
    exit 1
fi
echo "$n lines of guest code, no int3, int1 or cmpxchg16b"
