#!/usr/bin/env bash
# The benchmark of issue #8: sandbox-net against its peers, in one run.
#
#   sudo ./scripts/bench.sh [--full | --smoke] [--rounds N]
#
# Installs what the peers need (Debian packages from ../shared/baselines/README.md), builds
# sandbox-net (release), its benchmark runner (crates/cli/examples/bench.rs) and the peers from
# ../shared/baselines into target/bench/, then runs everything on identically prepared
# network namespaces, interleaved so machine drift hits every tool alike, and writes
# target/bench/report.json (and prints a table; a copy goes to target/bench/report.txt).
# Then the datapath section (crates/cli/examples/datapath/): packets per second, loss and CPU per
# packet through each model against the bare veth, merged into the same report.json
# (`datapath`, `datapath_queue_len`) and printed next to the setup ratios.
# --full (default) takes about 15 minutes on 2 cores; --smoke runs every section with a
# few iterations (CI). Namespaces have unique names and are removed on exit, Ctrl-C
# included; the host's netns is never touched. See docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=--full
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
    --full | --smoke) mode=$1 ;;
    --rounds) extra+=(--rounds "$2"); shift ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "scripts/bench.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/bench.sh: creates network namespaces and taps; run as root" >&2
    exit 2
fi

BASELINES=${BASELINES:-../shared/baselines}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=target/bench
PREFIX="snb$$"
STATE_DISK=/run/sandbox-net-bench-$$
STATE_TMPFS=/dev/shm/sandbox-net-bench-$$
mkdir -p "$OUT"

cleanup() {
    local ns
    for ns in /run/netns/"$PREFIX"-*; do
        [ -e "$ns" ] || continue
        ip netns del "$(basename "$ns")" 2>/dev/null || { umount -l "$ns" 2>/dev/null; rm -f "$ns"; }
    done
    # tcbench -fresh uses fixed names (blpN); the runner lists them here while it runs.
    if [ -f "$OUT/fresh-netns-owned" ]; then
        while read -r ns; do
            [ -e "$ns" ] && ip netns del "$(basename "$ns")" 2>/dev/null
        done <"$OUT/fresh-netns-owned"
        rm -f "$OUT/fresh-netns-owned"
    fi
    rm -rf "$STATE_DISK" "$STATE_TMPFS" "$STATE_TMPFS-datapath"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- Debian packages (apt-get update once, only when something is missing)
# tcbench needs only the netlink, netns and x/sys Go sources of the baselines' list (the CNI
# ones serve cni_setup/cnilite, which this benchmark does not use).
pkgs=(iproute2 gcc libc6-dev golang-go golang-github-vishvananda-netlink-dev
    golang-github-vishvananda-netns-dev golang-golang-x-sys-dev hyperfine strace)
need=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "== installing ${need[*]}"
    if ! { timeout 300 apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${need[@]}" >/dev/null; }; then
        echo "scripts/bench.sh: warning: could not install ${need[*]}; the peers that need them are skipped" >&2
    fi
fi
command -v ip >/dev/null || { echo "scripts/bench.sh: iproute2 (ip) is required" >&2; exit 2; }

# ---- builds
echo "== building sandbox-net and the benchmark runner (release)"
cargo build --release --quiet --bin sandbox-net
# A separate invocation: building an example enables the dev-dependency features
# (failpoints) for the library, and the measured CLI must not get them.
cargo build --release --quiet --example bench --example datapath
runner=(--cli "$TARGET/release/sandbox-net" --baselines "$BASELINES")
if command -v go >/dev/null; then
    echo "== building the Go harness (tcbench)"
    if env GO111MODULE=off GOPROXY=off GOFLAGS= GOENV=off GOPATH="$PWD/$OUT/gopath:/usr/share/gocode" \
        GOCACHE="$PWD/$OUT/gocache" go build -o "$OUT/tcbench" "$BASELINES/gobench/tcbench.go"; then
        runner+=(--tcbench "$OUT/tcbench")
    else
        echo "scripts/bench.sh: warning: tcbench did not build; Go rows are skipped" >&2
    fi
else
    echo "scripts/bench.sh: warning: no Go toolchain; Go rows are skipped" >&2
fi
if command -v gcc >/dev/null &&
    gcc -O2 -Wall -o "$OUT/nlbench" "$BASELINES/lowerbound/nlbench.c" -lm; then
    runner+=(--nlbench "$OUT/nlbench")
else
    echo "scripts/bench.sh: warning: nlbench did not build; C rows are skipped" >&2
fi

# ---- run
if [ "$mode" = --full ] && [ -x "$BASELINES/wait_idle.sh" ]; then
    echo "== waiting for an idle machine (max 300 s)"
    "$BASELINES/wait_idle.sh" 300 || true
fi
echo "== running ($mode); netns prefix $PREFIX"
"$TARGET/release/examples/bench" run "$mode" "${runner[@]}" "${extra[@]}" \
    --state-disk "$STATE_DISK" --state-tmpfs "$STATE_TMPFS" --prefix "$PREFIX" \
    --out "$OUT/report.json" --work "$OUT" --command "scripts/bench.sh $mode ${extra[*]}" |
    tee "$OUT/report.txt"
echo "== datapath ($mode): packets per second through each model"
"$TARGET/release/examples/datapath" run "$mode" --prefix "$PREFIX" \
    --state-dir "$STATE_TMPFS-datapath" --report "$OUT/report.json" |
    tee -a "$OUT/report.txt"
