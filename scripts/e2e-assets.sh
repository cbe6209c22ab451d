#!/usr/bin/env bash
# Build the guest for the end-to-end test (crates/cli/tests/e2e_qemu.rs): a Debian cloud kernel and a
# busybox initramfs whose /init (crates/cli/tests/e2e/init) loads the virtio-net modules, configures
# the NIC from the kernel `ip=` parameter, pings the peer and answers its pings.
#
# Usage: scripts/e2e-assets.sh OUT_DIR
# Writes OUT_DIR/vmlinuz and OUT_DIR/initramfs.cpio.gz and prints "KERNEL_PACKAGE <name>".
# The kernel package is cached in OUT_DIR; SANDBOX_NET_E2E_KERNEL_PKG picks another one.
# Needs: apt-get, dpkg-deb, busybox-static (/bin/busybox), cpio, gzip.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?usage: scripts/e2e-assets.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

die() { echo "e2e-assets: $*" >&2; exit 1; }
for tool in apt-get apt-cache dpkg-deb cpio gzip; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[ -x /bin/busybox ] || die "/bin/busybox not found (install busybox-static)"

# The kernel: what Debian's cloud meta-package depends on now, e.g. linux-image-6.1.0-56-cloud-amd64.
pkg="${SANDBOX_NET_E2E_KERNEL_PKG:-}"
if [ -z "$pkg" ]; then
    pkg="$(cat "$out/kernel-package" 2>/dev/null || true)"
fi
# What linux-image-cloud-amd64 depends on in the current package lists.
cloud_kernel() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-.*-cloud-amd64\)$/\1/p' | head -n 1
}
# Download $pkg into $out/dl; false when apt can't.
download() {
    rm -rf "$out/dl"
    mkdir -p "$out/dl"
    # apt-get download writes to the current directory as the _apt user when it can.
    chmod 0777 "$out/dl"
    (cd "$out/dl" && apt-get download -q "$pkg") >&2
}
if [ -z "$pkg" ] || ! ls "$out"/dl/"${pkg}"_*.deb >/dev/null 2>&1; then
    fixed="${SANDBOX_NET_E2E_KERNEL_PKG:-}"
    [ -n "$fixed" ] && pkg="$fixed" || pkg="$(cloud_kernel)"
    if [ -z "$pkg" ] || ! download; then
        # Missing or stale package lists (the version they name left the archive).
        apt-get update -qq
        [ -n "$fixed" ] && pkg="$fixed" || pkg="$(cloud_kernel)"
        [ -n "$pkg" ] || die "cannot find the package linux-image-cloud-amd64 depends on"
        download || die "apt-get download $pkg failed"
    fi
    echo "$pkg" > "$out/kernel-package"
fi
deb="$(ls "$out"/dl/"${pkg}"_*.deb | head -n 1)"

# Unpack once per package.
root="$out/kernel-root"
if [ "$(cat "$root/.package" 2>/dev/null || true)" != "$deb" ]; then
    rm -rf "$root"
    mkdir -p "$root"
    dpkg-deb -x "$deb" "$root"
    echo "$deb" > "$root/.package"
fi
vmlinuz="$(ls "$root"/boot/vmlinuz-* | head -n 1)"
moddir="$(ls -d "$root"/lib/modules/* | head -n 1)"
config="$(ls "$root"/boot/config-* | head -n 1)"

# Modules: virtio_net and virtio_pci (and what they depend on), unless built in. The
# package ships no modules.dep (depmod makes it at install), so read each module's
# "depends=" from its .modinfo strings.
declare -A path_of=()
while IFS= read -r ko; do
    name="$(basename "$ko")"
    name="${name%%.ko*}"
    path_of["${name//-/_}"]="$ko"
done < <(find "$moddir" -name '*.ko*')
order=()
declare -A seen=()
add_module() {
    local name="${1//-/_}"
    [ -n "${seen[$name]:-}" ] && return 0
    seen[$name]=1
    if grep -q "/${name}.ko" "$moddir/modules.builtin" 2>/dev/null \
        || grep -q "/${1}.ko" "$moddir/modules.builtin" 2>/dev/null; then
        return 0
    fi
    local ko="${path_of[$name]:-}"
    [ -n "$ko" ] || die "module $name not found in $moddir"
    case "$ko" in *.ko) ;; *) die "module $ko is compressed; the init script loads plain .ko files" ;; esac
    local deps
    deps="$(tr '\0' '\n' < "$ko" | sed -n 's/^depends=//p' | head -n 1)"
    local dep
    for dep in ${deps//,/ }; do
        add_module "$dep"
    done
    order+=("$name")
}
for m in virtio_pci virtio_net; do
    add_module "$m"
done

stage="$out/initramfs.d"
rm -rf "$stage"
mkdir -p "$stage"/{bin,dev,etc,lib/modules,proc,sys,tmp}
cp /bin/busybox "$stage/bin/busybox"
cp "$here/crates/cli/tests/e2e/init" "$stage/init"
chmod 0755 "$stage/init"
: > "$stage/etc/modules.order"
for name in "${order[@]}"; do
    cp "${path_of[$name]}" "$stage/lib/modules/$name.ko"
    echo "$name" >> "$stage/etc/modules.order"
done
(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) > "$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
cp "$vmlinuz" "$out/vmlinuz"
echo "KERNEL_PACKAGE $pkg"
echo "MODULES ${order[*]}"
grep -q '^CONFIG_VIRTIO_NET=y' "$config" && echo "NOTE virtio_net is built in"
exit 0
