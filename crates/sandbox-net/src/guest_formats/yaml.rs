//! A small YAML emitter for the documents sandbox-net writes: block mappings and sequences
//! of strings and integers. Strings are always double-quoted (YAML 1.1 readers such as
//! PyYAML would take `52:54:00:12:34:56` for a base-60 integer); keys are written plain
//! only when they are unambiguous words.

/// A YAML node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Str(String),
    Int(u64),
    Map(Vec<(String, Node)>),
    List(Vec<Node>),
}

impl Node {
    pub fn str(s: impl Into<String>) -> Node {
        Node::Str(s.into())
    }

    fn is_collection(&self) -> bool {
        matches!(self, Node::Map(m) if !m.is_empty())
            || matches!(self, Node::List(l) if !l.is_empty())
    }
}

/// A double-quoted YAML scalar.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A mapping key: plain when it is a word no YAML reader takes for anything else.
fn key(k: &str) -> String {
    const RESERVED: &[&str] = &[
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
    ];
    let plain = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !RESERVED.contains(&k.to_ascii_lowercase().as_str());
    if plain { k.to_string() } else { quote(k) }
}

fn scalar(node: &Node) -> String {
    match node {
        Node::Str(s) => quote(s),
        Node::Int(i) => i.to_string(),
        Node::Map(_) => "{}".into(),
        Node::List(_) => "[]".into(),
    }
}

fn emit_map(
    entries: &[(String, Node)],
    indent: usize,
    first_prefix: Option<&str>,
    out: &mut String,
) {
    for (i, (k, v)) in entries.iter().enumerate() {
        match (i, first_prefix) {
            (0, Some(prefix)) => out.push_str(prefix),
            _ => out.push_str(&" ".repeat(indent)),
        }
        out.push_str(&key(k));
        out.push(':');
        if v.is_collection() {
            out.push('\n');
            emit(v, indent + 2, out);
        } else {
            out.push(' ');
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
}

/// Write `node` as a block at `indent` spaces.
pub fn emit(node: &Node, indent: usize, out: &mut String) {
    match node {
        Node::Map(entries) if !entries.is_empty() => emit_map(entries, indent, None, out),
        Node::List(items) if !items.is_empty() => {
            for item in items {
                let dash = format!("{}- ", " ".repeat(indent));
                match item {
                    Node::Map(entries) if !entries.is_empty() => {
                        emit_map(entries, indent + 2, Some(&dash), out)
                    }
                    Node::List(inner) if !inner.is_empty() => {
                        out.push_str(dash.trim_end());
                        out.push('\n');
                        emit(item, indent + 2, out);
                    }
                    other => {
                        out.push_str(&dash);
                        out.push_str(&scalar(other));
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            out.push_str(&" ".repeat(indent));
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

/// A whole document.
pub fn to_string(node: &Node) -> String {
    let mut out = String::new();
    emit(node, 0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: Vec<(&str, Node)>) -> Node {
        Node::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    #[test]
    fn strings_are_quoted_and_escaped() {
        assert_eq!(quote("52:54:00:12:34:56"), "\"52:54:00:12:34:56\"");
        assert_eq!(quote("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\x01\"");
    }

    #[test]
    fn keys_are_plain_only_when_unambiguous() {
        assert_eq!(key("eth0"), "eth0");
        assert_eq!(key("set-name"), "set-name");
        assert_eq!(key("on"), "\"on\"");
        assert_eq!(key("0eth"), "\"0eth\"");
        assert_eq!(key("a b"), "\"a b\"");
        assert_eq!(key("a:b"), "\"a:b\"");
    }

    #[test]
    fn nested_blocks() {
        let doc = map(vec![
            ("version", Node::Int(2)),
            (
                "ethernets",
                map(vec![(
                    "eth0",
                    map(vec![
                        (
                            "match",
                            map(vec![("macaddress", Node::str("02:00:00:00:00:01"))]),
                        ),
                        ("addresses", Node::List(vec![Node::str("10.0.0.2/24")])),
                        (
                            "routes",
                            Node::List(vec![map(vec![
                                ("to", Node::str("0.0.0.0/0")),
                                ("via", Node::str("10.0.0.1")),
                                ("metric", Node::Int(100)),
                            ])]),
                        ),
                        ("empty", Node::List(vec![])),
                    ]),
                )]),
            ),
        ]);
        let expected = "\
version: 2
ethernets:
  eth0:
    match:
      macaddress: \"02:00:00:00:00:01\"
    addresses:
      - \"10.0.0.2/24\"
    routes:
      - to: \"0.0.0.0/0\"
        via: \"10.0.0.1\"
        metric: 100
    empty: []
";
        assert_eq!(to_string(&doc), expected);
    }

    #[test]
    fn lists_of_lists() {
        let doc = Node::List(vec![
            Node::List(vec![Node::Int(1), Node::Int(2)]),
            Node::Int(3),
        ]);
        assert_eq!(to_string(&doc), "-\n  - 1\n  - 2\n- 3\n");
    }
}
