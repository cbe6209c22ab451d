//! The integration tests: one binary, one module per area. They run as root against the
//! real kernel, in network namespaces with unique names that are removed even when a test
//! fails (see the test kit, `crates/testkit`); iproute2 is the independent witness of what
//! was built, the fake guest proves that traffic flows. `cargo test --test it MODULE::`
//! runs one area.

/// The fuzz targets' properties, run over the committed seeds (`fuzz_seeds`) and the
/// captured dumps of a hostile pod (`hostile_tenant`).
#[path = "../../../../fuzz/checks.rs"]
mod checks;
mod common;
mod watch_child;

mod bad_input;
mod cli_json;
mod cli_pipe;
mod cli_rates;
mod cli_state_dir;
mod cli_status;
mod cli_taps;
mod cli_watch;
mod cni;
mod cni_bed;
mod cni_del;
mod cni_gc;
mod cni_id;
mod cni_lock;
mod cni_status;
mod concurrency;
mod crash;
mod dataplane;
mod detach;
mod endpoints;
mod exit_codes;
mod failpoints;
mod fuzz_seeds;
mod gc;
mod guest_on_demand;
mod handoff;
mod hostile_netns;
mod hostile_state;
mod hostile_tenant;
mod hostile_watch;
mod hotplug;
mod l3;
mod lock_wait;
mod models;
mod named_netns;
mod netns_entry;
mod old_state;
mod qdisc_conflict;
mod ratelimit;
mod readback;
mod rollback;
mod scan;
mod smoke;
mod state_file;
mod static_config;
mod tap_queue_len;
mod vmm;
mod watch;
