#!/bin/bash
# The built-in guest boots under QEMU too (its multiboot header), so that a
# benchmark can run the same binary under xtk and under QEMU: it prints on
# the serial port, and its counter (read through QEMU's monitor) moves.
# QEMU here needs -enable-kvm and a CPU without cmpxchg16b (kvm-pvm cannot
# emulate it) nor the ARCH_CAPABILITIES MSR (kvm-pvm refuses QEMU's value).
set -eu
qemu=$(command -v qemu-system-x86_64 || true)
[ -n "$qemu" ] || { echo "qemu-system-x86_64 missing (Debian qemu-system-x86)" >&2; exit 1; }
[ -w /dev/kvm ] || { echo "SKIP: /dev/kvm not usable" >&2; exit 77; }
guest=$top_builddir/guests/xtk-guest.elf
dir=$(mktemp -d /tmp/xtk-qemu.XXXXXX)
trap 'kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT

"$qemu" -enable-kvm -cpu host,-cx16,-arch-capabilities -smp 1 -m 64 \
    -nodefaults -no-user-config -display none -no-reboot \
    -kernel "$guest" -append "workload=counter" \
    -serial "file:$dir/serial" -qmp "unix:$dir/qmp,server=on,wait=off" &
pid=$!

for _ in $(seq 200); do
    grep -q "xtk-guest: running" "$dir/serial" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || { echo "QEMU exited" >&2; exit 1; }
    sleep 0.1
done
cat "$dir/serial" >&2
grep -q "xtk-guest: booting on 1 vCPU(s), 6[34] MiB, multiboot" "$dir/serial"
grep -q "xtk-guest: running" "$dir/serial"
! grep -q FAILED "$dir/serial"

# The counter at 0x2000 + 40 (guests/abi.h), twice, 200 ms apart.
"$PYTHON3" - "$dir/qmp" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rw")
def cmd(c, **a):
    f.write(json.dumps({"execute": c, "arguments": a}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            return r
json.loads(f.readline())
cmd("qmp_capabilities")
def counter():
    out = cmd("human-monitor-command", **{"command-line": "xp /1gx 0x2028"})["return"]
    return int(out.split()[-1], 16)
a = counter(); time.sleep(0.2); b = counter()
print("counter %d -> %d" % (a, b), file=sys.stderr)
sys.exit(0 if b > a > 0 else 1)
PY
