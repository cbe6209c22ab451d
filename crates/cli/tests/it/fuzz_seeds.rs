//! The fuzz targets' properties (fuzz/checks.rs) over every committed seed input
//! (fuzz/corpus/<target>/): what CI runs of the fuzzing, since cargo-fuzz needs a nightly
//! compiler. Long runs: see docs/testing.md, "Fuzzing".

use std::path::Path;

fn each_seed(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    for seed in &seeds {
        let data = std::fs::read(seed).unwrap_or_else(|e| panic!("read {}: {e}", seed.display()));
        check(&data);
    }
    println!("{target}: {} seeds", seeds.len());
}

#[test]
fn state_file_seeds() {
    each_seed("state_file", crate::checks::state_file);
}

#[test]
fn rate_seeds() {
    each_seed("rate", crate::checks::rate);
}

#[test]
fn mac_seeds() {
    each_seed("mac", crate::checks::mac);
}

#[test]
fn id_seeds() {
    each_seed("id", crate::checks::id);
}

#[test]
fn netlink_answers_seeds() {
    each_seed("netlink_answers", crate::checks::netlink_answers);
}
