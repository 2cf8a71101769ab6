#!/usr/bin/env bash
# Run tests in a throwaway VM whose kernel has every cgroup controller on the
# unified (v2) hierarchy, for hosts that bind memory and cpu to cgroup v1.
#
#   sudo tools/cgroup2-vm.sh [PYTEST ARGS...]     (default: the limits tests)
#
# Debian/Ubuntu, as root. Installs qemu-system-x86, a Debian kernel and
# initramfs-tools; adds an initramfs boot script that mounts the host's root
# read-only over 9p. The guest boots with cgroup_no_v1=all, mounts cgroup2 on
# /sys/fs/cgroup and a tmpfs on /tmp, and runs pytest from this checkout
# with the host's Python (the package installed with `pip install -e .`).
# The VM runs under software emulation (TCG): slow, but it boots everywhere;
# under nested KVM the guest kernel was seen to hang at boot.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
python=$(command -v python3)
work=$(mktemp -d /var/tmp/procctl-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
(($#)) || set -- tests/engine/test_cgroups.py tests/cli/test_limits.py

DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    qemu-system-x86 linux-image-amd64 initramfs-tools >/dev/null
kernel=$(ls -1 /boot/vmlinuz-* | sort -V | tail -n 1)
version=${kernel#/boot/vmlinuz-}

if [ ! -f /etc/initramfs-tools/scripts/ninep ]; then
    cat >/etc/initramfs-tools/scripts/ninep <<'EOF'
# boot=ninep: the root file system is the 9p share "hostroot", read-only.
mountroot() {
    modprobe virtio_pci
    modprobe 9pnet_virtio
    modprobe 9p
    mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot "${rootmnt}"
}
EOF
    printf 'virtio_pci\n9pnet_virtio\n9p\n' >>/etc/initramfs-tools/modules
    update-initramfs -u -k "$version" >/dev/null
fi

printf '%q ' "$@" >"$work/args"
cat >"$work/init" <<EOF
#!/bin/sh
mount -t proc proc /proc
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t cgroup2 none /sys/fs/cgroup
echo "cgroup2 controllers: \$(cat /sys/fs/cgroup/cgroup.controllers)"
export HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PATH=$(dirname "$python"):/usr/local/bin:/usr/bin:/bin
# A delegated group, as systemd gives one: the supervisor alone in it must
# move into a leaf, run its job in a group of its own, and put it all back.
echo "+memory +cpu" >/sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/delegated /tmp/delegated
printf '[process.job]\ncmd = "cat /proc/self/cgroup /sys/fs/cgroup/delegated/procctl.*/1-job/memory.max"\nlimits = { memory = "150MiB" }\n' >/tmp/delegated/procfile.toml
(cd /tmp/delegated && sh -c 'echo \$\$ >/sys/fs/cgroup/delegated/cgroup.procs; exec $python -m procctl run --plain' | grep ' job  *|')
echo "delegated group afterwards: subtree_control [\$(cat /sys/fs/cgroup/delegated/cgroup.subtree_control)], entries [\$(ls /sys/fs/cgroup/delegated | grep procctl)]"
cd $repo
eval "set -- \$(cat $work/args)"
$python -m pytest -q -rs --color=no -p no:cacheprovider "\$@" 2>&1
echo "vm-exit-status \$?"
echo o >/proc/sysrq-trigger
EOF
chmod +x "$work/init"

qemu-system-x86_64 -accel tcg -cpu max -m 3072 -smp 2 -nographic -no-reboot \
    -kernel "$kernel" -initrd "/boot/initrd.img-$version" \
    -append "boot=ninep ro console=ttyS0 edd=off cgroup_no_v1=all init=$work/init panic=-1 quiet" \
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" |
    tee "$work/console.log" | grep -v '^\[ *[0-9.]*\]'
grep -q '^vm-exit-status 0' "$work/console.log"
