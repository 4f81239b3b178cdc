#!/bin/busybox sh
# PID 1 of the throw-away QEMU guest in which tests/bras.rs runs its BRAS
# scenario when the host's kernel has no PPP. Two stages:
#
# 1. From the initramfs the test builds (this file is its /init, with a
#    static busybox, the virtio and 9p modules and /bras.env): load the
#    modules, mount the host's root file system read-only over virtio-9p,
#    writable tmpfs on /run (/var/run and /var/lock point there on Debian)
#    and /var/tmp (the temporary files), /dev with pseudo-terminals
#    (pppoe-server's pppd talks to its PPPoE relay through one), the test's
#    output directory (a second, writable 9p share), and switch to the
#    host's root.
# 2. On the host's root (this file again, at its place in the repository):
#    run the test binary with the variable that tells it to run the
#    scenario here, write its exit status and output to the output share,
#    and power off. The host test reads them.

bb=/bin/busybox
fail() {
    echo "bras guest: $*"
    [ -d /run/out ] && echo "guest init: $*" > /run/out/init-error
    sync
    $bb poweroff -f
}

if [ "$1" != stage2 ]; then
    $bb mount -t proc proc /proc
    $bb mount -t sysfs sysfs /sys
    $bb mount -t devtmpfs devtmpfs /dev
    . /bras.env
    for module in $($bb cat /modules.order); do
        $bb insmod "/modules/$module" || fail "cannot load $module"
    done
    opts=trans=virtio,version=9p2000.L,msize=512000
    $bb mount -t 9p -o "$opts,ro,cache=loose" hostroot /newroot ||
        fail "cannot mount the host's root over 9p"
    # The host's /tmp stays visible (a test binary may be built there);
    # temporary files go to /var/tmp.
    $bb mount -t tmpfs -o mode=755 tmpfs /newroot/run || fail "cannot mount /run"
    $bb mount -t tmpfs -o mode=1777 tmpfs /newroot/var/tmp || fail "cannot mount /var/tmp"
    $bb mkdir -p /newroot/run/out /newroot/run/lock
    $bb mount -t 9p -o "$opts" out /newroot/run/out || fail "cannot mount the output share"
    $bb mount --move /dev /newroot/dev
    # pppd's pty option (pppoe-server's sessions) needs pseudo-terminals.
    $bb mkdir -p /newroot/dev/pts /newroot/dev/shm
    $bb mount -t devpts -o mode=620,ptmxmode=666 devpts /newroot/dev/pts
    $bb mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
    $bb mount --move /proc /newroot/proc
    $bb mount --move /sys /newroot/sys
    export BRAS_TEST_BIN BRAS_TEST_NAME BRAS_INIT BRAS_CI BRAS_LOGS
    exec $bb switch_root /newroot /usr/bin/busybox sh "$BRAS_INIT" stage2
    fail "switch_root failed"
fi

# Stage 2, on the host's root file system.
bb=/usr/bin/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/var/tmp RUST_BACKTRACE=1 LIBERAD_BRAS_SCENARIO=here
[ -n "$BRAS_CI" ] && export CI="$BRAS_CI"
[ -n "$BRAS_LOGS" ] && export LIBERAD_BRAS_LOGS="$BRAS_LOGS"
# The host's name, which its /etc/hosts resolves (pppd's radiusclient looks
# its own address up).
$bb hostname -F /etc/hostname 2>/dev/null || $bb hostname bras-guest
$bb ip link set lo up
cd /var/tmp || fail "no /var/tmp"
echo "bras guest: running the scenario"
"$BRAS_TEST_BIN" --exact "$BRAS_TEST_NAME" --nocapture --test-threads=1 \
    > /run/out/output.txt 2>&1
echo $? > /run/out/status
echo "bras guest: scenario exited with status $($bb cat /run/out/status)"
sync
$bb umount /run/out
$bb poweroff -f
