//! The direction of imports (docs/ARCHITECTURE.md, "Imports"), checked over the sources: a
//! module uses only modules of lower layers and the helpers every layer may use; within a
//! layer, modules do not use one another. A module's submodules count as the module.

use std::collections::BTreeSet;
use std::path::Path;

/// The layers, lowest first.
const LAYERS: &[&[&str]] = &[
    &["sys"],
    &["netns"],
    &["netlink"],
    &["tap"],
    &["macvtap", "physical", "sysctl", "trusted_dir", "vhost_user"],
    &["scan"],
    &["endpoint"],
    &["journal"],
    &["guest"],
    &["model", "static_config"],
    &["state"],
    &["sandbox"],
    &["ops"],
    &["watch", "vmm", "guest_formats", "cni"],
];

/// What every layer may use (they use nothing above `sys`).
const HELPERS: &[&str] = &["error", "failpoint", "rate", "mac", "names"];

/// The layer of a module, or None for a helper.
fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level modules `text` (a source file, comments and tests left out) names as
/// `crate::X`.
fn uses(text: &str) -> BTreeSet<String> {
    let code: String = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or_default()
                .split(',')
                .map(|n| n.trim().split("::").next().unwrap_or_default())
                .collect(),
            None => vec![
                rest.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or_default(),
            ],
        };
        out.extend(
            names
                .into_iter()
                .filter(|n| n.starts_with(|c: char| c.is_ascii_lowercase()))
                .map(String::from),
        );
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_flow_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap_or(&file);
        let module = rel
            .components()
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .unwrap_or_default();
        if matches!(module.as_str(), "lib" | "layers") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let own = layer(&module);
        assert!(
            own.is_some() || HELPERS.contains(&module.as_str()),
            "{}: module {module} is in no layer and is no helper",
            rel.display()
        );
        for used in uses(&text) {
            if used == module || HELPERS.contains(&used.as_str()) && own.is_some() {
                continue;
            }
            let ok = match (own, layer(&used)) {
                (Some(own), Some(theirs)) => theirs < own,
                // A helper uses only `sys` (and other helpers).
                (None, theirs) => theirs == Some(0) || HELPERS.contains(&used.as_str()),
                (Some(_), None) => false,
            };
            if !ok {
                wrong.push(format!("{}: {module} uses {used}", rel.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}
