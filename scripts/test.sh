#!/usr/bin/env bash
# The test suite: installs what it needs from Debian, checks formatting and lints, runs
# every unit and integration test (as root, in private network namespaces), then the demo.
# Usage: sudo ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: the tests create network namespaces and taps; run as root" >&2
    exit 2
fi

# Debian packages: iproute2 (ip, tc) to cross-check what sandbox-net built, and
# containernetworking-plugins (the reference CNI plugins crates/cli/tests/it/cni.rs chains
# with), and qemu-system-x86, busybox-static and cpio for the guest VM of
# crates/cli/tests/e2e_qemu.rs.
need=()
for pkg in iproute2 containernetworking-plugins qemu-system-x86 busybox-static cpio iptables; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "== installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
for tool in cargo rustfmt; do
    command -v "$tool" >/dev/null || { echo "scripts/test.sh: $tool not found (install Rust with rustup)" >&2; exit 2; }
done
if ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add clippy rustfmt
fi
[ -e /dev/net/tun ] || { echo "scripts/test.sh: /dev/net/tun is missing" >&2; exit 2; }

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test --workspace"
cargo test --workspace -- --test-threads "${TEST_THREADS:-4}"
echo "== library examples (the runtime flow, and the same under tokio; each checks that nothing is left)"
cargo run --quiet -p sandbox-net --example runtime
cargo run --quiet -p sandbox-net --example runtime_tokio
echo "== library dependency tree: no CLI-only crates"
if cargo tree -p sandbox-net -e normal --prefix none | grep -E '^(clap|tracing-subscriber|tokio) '; then
    echo "scripts/test.sh: the library depends on a CLI-only crate" >&2
    exit 1
fi
echo "== cargo doc -p sandbox-net (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc -p sandbox-net --no-deps --quiet
echo "== demo"
demo_state=$(mktemp -d)
cargo run --release --quiet --bin sandbox-net -- --state-dir "$demo_state" demo | tail -n 14
rmdir "$demo_state"
echo "== benchmark smoke run (scripts/bench.sh --smoke: every section, few iterations; timings are not checked)"
./scripts/bench.sh --smoke
