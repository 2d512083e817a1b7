//! A YAML document as a tree of nodes that remember their line and column,
//! so that validation can point at every mistake.
//!
//! Every input is bounded before it can cost much: at most [`MAX_BYTES`] of
//! text, one document, nesting at most [`MAX_DEPTH`] deep and at most
//! [`MAX_NODES`] nodes once aliases are expanded (so an alias bomb is refused
//! after a few hundred thousand nodes, not after gigabytes).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::error::IntentError;

/// The longest YAML text read, in bytes.
pub const MAX_BYTES: usize = 4 << 20;
/// The deepest nesting of lists and mappings.
pub const MAX_DEPTH: usize = 64;
/// The most nodes one document may hold, counting each alias as the nodes it repeats.
pub const MAX_NODES: usize = 500_000;

/// A node with its place in the source.
#[derive(Debug, Clone)]
pub struct Node {
    /// What the node holds.
    pub kind: NodeKind,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// The shapes a node can take.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// `~`, `null` or nothing.
    Null,
    /// A scalar.
    Scalar {
        /// Its text.
        value: String,
        /// Unquoted, so `true` and `10` may be read as such.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// A short name of the node's shape for error messages.
    pub fn shape(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "nothing",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// Parses YAML (or JSON, which is YAML) into a [`Node`]: one document,
/// within [`MAX_BYTES`], [`MAX_DEPTH`] and [`MAX_NODES`].
pub fn parse(src: &str) -> Result<Node, IntentError> {
    if src.len() > MAX_BYTES {
        return Err(IntentError {
            line: 1,
            column: 1,
            path: String::new(),
            message: format!(
                "the document is {} bytes; at most {MAX_BYTES} are read",
                src.len()
            ),
        });
    }
    check_indentation(src)?;
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(src);
    let loaded = parser.load(&mut builder, true);
    if let Some(err) = builder.error {
        return Err(err);
    }
    loaded.map_err(|e| IntentError {
        line: e.marker().line(),
        column: e.marker().col() + 1,
        path: String::new(),
        message: if e.info().contains("recursion limit") {
            format!("lists and mappings nest more than {MAX_DEPTH} deep")
        } else {
            format!("not valid YAML: {}", e.info())
        },
    })?;
    Ok(builder.root.unwrap_or(Node {
        kind: NodeKind::Null,
        line: 1,
        column: 1,
    }))
}

/// The widest run of indentation and block indicators (`- `, `? `, `: `) a
/// line may start with. Each level of block nesting needs its content one
/// column further right, so this bounds block nesting before the parser
/// (which descends recursively) sees it; flow nesting has its own limit.
const MAX_INDENT: usize = 2 * MAX_DEPTH + 2;

fn check_indentation(src: &str) -> Result<(), IntentError> {
    for (i, line) in src.lines().enumerate() {
        let indent = line
            .bytes()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'-' | b'?' | b':'))
            .count();
        if indent > MAX_INDENT {
            return Err(IntentError {
                line: i + 1,
                column: MAX_INDENT + 1,
                path: String::new(),
                message: format!(
                    "indented past column {MAX_INDENT}: lists and mappings nest more than {MAX_DEPTH} deep"
                ),
            });
        }
    }
    Ok(())
}

/// Converts a JSON value to a node placed at `line`.
pub fn from_json(v: &serde_json::Value, line: usize) -> Node {
    use serde_json::Value;
    let kind = match v {
        Value::Null => NodeKind::Null,
        Value::Bool(b) => NodeKind::Scalar {
            value: b.to_string(),
            plain: true,
        },
        Value::Number(n) => NodeKind::Scalar {
            value: n.to_string(),
            plain: true,
        },
        Value::String(s) => NodeKind::Scalar {
            value: s.clone(),
            plain: false,
        },
        Value::Array(a) => NodeKind::Seq(a.iter().map(|x| from_json(x, line)).collect()),
        Value::Object(o) => NodeKind::Map(
            o.iter()
                .map(|(k, x)| {
                    (
                        Node {
                            kind: NodeKind::Scalar {
                                value: k.clone(),
                                plain: false,
                            },
                            line,
                            column: 1,
                        },
                        from_json(x, line),
                    )
                })
                .collect(),
        ),
    };
    Node {
        kind,
        line,
        column: 1,
    }
}

enum Frame {
    Seq(Node, usize),
    Map(Node, usize, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Anchored nodes, with how many nodes each holds.
    anchors: HashMap<usize, (Node, usize)>,
    /// Node counts of the open collections, innermost last.
    sizes: Vec<usize>,
    root: Option<Node>,
    /// Nodes so far, aliases expanded.
    nodes: usize,
    documents: usize,
    /// The first error; once set, later events are ignored.
    error: Option<IntentError>,
}

impl Builder {
    fn fail(&mut self, line: usize, column: usize, message: String) {
        self.error.get_or_insert(IntentError {
            line,
            column,
            path: String::new(),
            message,
        });
    }

    /// Counts `n` more nodes in the open collections and the document.
    fn count(&mut self, n: usize, line: usize, column: usize) -> bool {
        self.nodes = self.nodes.saturating_add(n);
        if let Some(size) = self.sizes.last_mut() {
            *size = size.saturating_add(n);
        }
        if self.nodes > MAX_NODES {
            self.fail(
                line,
                column,
                format!(
                    "the document holds more than {MAX_NODES} nodes once aliases are expanded; write it out or split it"
                ),
            );
            return false;
        }
        true
    }

    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(seq, _)) => {
                if let NodeKind::Seq(items) = &mut seq.kind {
                    items.push(node);
                }
            }
            Some(Frame::Map(map, _, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if let NodeKind::Map(entries) = &mut map.kind {
                        entries.push((k, node));
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let (line, column) = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(value, style, anchor, _tag) => {
                if !self.count(1, line, column) {
                    return;
                }
                let plain = style == TScalarStyle::Plain;
                let kind = if plain && matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    NodeKind::Null
                } else {
                    NodeKind::Scalar { value, plain }
                };
                let node = Node { kind, line, column };
                if anchor > 0 {
                    self.anchors.insert(anchor, (node.clone(), 1));
                }
                self.push_value(node);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(
                        line,
                        column,
                        format!("lists and mappings nest more than {MAX_DEPTH} deep"),
                    );
                    return;
                }
                if !self.count(1, line, column) {
                    return;
                }
                let node = |kind| Node { kind, line, column };
                self.sizes.push(1);
                self.stack.push(match ev {
                    Event::SequenceStart(..) => Frame::Seq(node(NodeKind::Seq(Vec::new())), anchor),
                    _ => Frame::Map(node(NodeKind::Map(Vec::new())), anchor, None),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(n, a)) | Some(Frame::Map(n, a, _)) => (n, a),
                    None => return,
                };
                let size = self.sizes.pop().unwrap_or(1);
                if let Some(outer) = self.sizes.last_mut() {
                    // The opening already counted one node here.
                    *outer = outer.saturating_add(size - 1);
                }
                if anchor > 0 {
                    self.anchors.insert(anchor, (node.clone(), size));
                }
                self.push_value(node);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((n, size)) => {
                    let (n, size) = (n.clone(), *size);
                    if self.count(size, line, column) {
                        self.push_value(n);
                    }
                }
                None => self.fail(line, column, "alias to an unknown anchor".into()),
            },
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(
                        line,
                        column,
                        "a second YAML document (after `---`); give one document only".into(),
                    );
                }
            }
            Event::DocumentEnd | Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
    }
}

/// Reads a YAML configuration document into `T` with serde; an empty document
/// is an empty mapping, and errors name the path of the key at fault.
pub fn from_str<T: serde::de::DeserializeOwned>(src: &str) -> Result<T, String> {
    let node = parse(src).map_err(|e| e.to_string())?;
    check_duplicate_keys(&node).map_err(|e| e.to_string())?;
    let mut value = to_json(&node);
    if value.is_null() {
        value = serde_json::json!({});
    }
    // serde stops at the first error: take the offending key out and go on,
    // so every mistake is reported at once, each with its line.
    let mut errors: Vec<(usize, String)> = Vec::new();
    for _ in 0..MAX_REPORTED_ERRORS {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(parsed) if errors.is_empty() => return Ok(parsed),
            Ok(_) => break,
            Err(e) => e,
        };
        let mut path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        let inner = e.inner().to_string();
        // An unknown key is reported at its parent: point at the key itself.
        if let Some(name) = inner
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
            && path.last().map(String::as_str) != Some(name)
        {
            path.push(name.to_string());
        }
        let at = locate(&node, &path);
        let place = at
            .map(|n| format!("line {}, column {}: ", n.line, n.column))
            .unwrap_or_default();
        let shown = if path.is_empty() {
            inner
        } else {
            format!("{}: {inner}", path.join("."))
        };
        errors.push((at.map_or(0, |n| n.line), format!("{place}{shown}")));
        if path.is_empty() || !remove(&mut value, &path) {
            break;
        }
    }
    errors.sort_by_key(|e| e.0);
    let errors: Vec<String> = errors.into_iter().map(|e| e.1).collect();
    Err(errors.join("\n  "))
}

/// Errors reported for one document at most.
const MAX_REPORTED_ERRORS: usize = 20;

/// The node at `path` (map keys and sequence indices).
fn locate<'a>(node: &'a Node, path: &[String]) -> Option<&'a Node> {
    let Some((first, rest)) = path.split_first() else {
        return Some(node);
    };
    match &node.kind {
        NodeKind::Map(entries) => {
            let (k, v) = entries.iter().find(|(k, _)| k.as_str() == Some(first))?;
            if rest.is_empty() {
                Some(k)
            } else {
                locate(v, rest)
            }
        }
        NodeKind::Seq(items) => locate(items.get(first.parse::<usize>().ok()?)?, rest),
        _ => None,
    }
}

/// Takes the value at `path` out of `value`; false when it is not there.
fn remove(value: &mut serde_json::Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut here = value;
    for p in parents {
        here = match here {
            serde_json::Value::Object(m) => match m.get_mut(p) {
                Some(v) => v,
                None => return false,
            },
            serde_json::Value::Array(a) => match p.parse::<usize>().ok().and_then(|i| a.get_mut(i))
            {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match here {
        serde_json::Value::Object(m) => m.remove(last).is_some(),
        serde_json::Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Refuses a mapping that repeats a key (serde would keep the last silently).
fn check_duplicate_keys(node: &Node) -> Result<(), IntentError> {
    match &node.kind {
        NodeKind::Map(entries) => {
            let mut seen = std::collections::HashSet::new();
            for (k, v) in entries {
                if let Some(key) = k.as_str()
                    && !seen.insert(key)
                {
                    return Err(IntentError {
                        line: k.line,
                        column: k.column,
                        path: key.to_string(),
                        message: "duplicate key".into(),
                    });
                }
                check_duplicate_keys(v)?;
            }
            Ok(())
        }
        NodeKind::Seq(items) => items.iter().try_for_each(check_duplicate_keys),
        NodeKind::Null | NodeKind::Scalar { .. } => Ok(()),
    }
}

/// Converts a node to JSON, reading plain scalars as numbers or booleans
/// where they look like one (for configuration files read with serde).
pub fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &node.kind {
        NodeKind::Null => Value::Null,
        NodeKind::Scalar {
            value,
            plain: false,
        } => Value::String(value.clone()),
        NodeKind::Scalar { value, plain: true } => match value.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            v => v
                .parse::<i64>()
                .map(Value::from)
                .or_else(|_| v.parse::<f64>().map(Value::from))
                .unwrap_or_else(|_| Value::String(v.to_string())),
        },
        NodeKind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        #[serde(default)]
        port: u16,
        #[serde(default)]
        name: String,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(default)]
        size: u8,
    }

    #[test]
    fn every_config_mistake_is_reported_at_once_in_line_order() {
        let src = "port: -1\nnmae: x\ninner:\n  size: 999\n  colour: red\n";
        let err = from_str::<Cfg>(src).unwrap_err();
        let lines: Vec<&str> = err.lines().map(str::trim).collect();
        assert_eq!(lines.len(), 4, "{err}");
        assert!(lines[0].starts_with("line 1, column 1: port:"), "{err}");
        assert!(
            lines[1].starts_with("line 2, column 1: nmae: unknown field"),
            "{err}"
        );
        assert!(
            lines[2].starts_with("line 4, column 3: inner.size:"),
            "{err}"
        );
        assert!(
            lines[3].starts_with("line 5, column 3: inner.colour: unknown field"),
            "{err}"
        );
        assert!(from_str::<Cfg>("port: 80\n").is_ok());
    }

    use super::*;

    #[test]
    fn nodes_know_their_place() {
        let n = parse("services:\n  checkout:\n    report_interval: 10s\n").unwrap();
        let NodeKind::Map(top) = &n.kind else {
            panic!()
        };
        let NodeKind::Map(svcs) = &top[0].1.kind else {
            panic!()
        };
        let NodeKind::Map(fields) = &svcs[0].1.kind else {
            panic!()
        };
        let (k, v) = &fields[0];
        assert_eq!((k.line, k.column), (3, 5));
        assert_eq!(v.as_str(), Some("10s"));
    }

    #[test]
    fn deep_nesting_is_refused_without_a_stack_overflow() {
        let flow = "{a: ".repeat(5000) + &"}".repeat(5000);
        let e = parse(&flow).unwrap_err();
        assert!(e.message.contains("nest more than 64"), "{e}");
        let block: String = (0..2000)
            .map(|i| format!("{}a:\n", " ".repeat(i)))
            .collect();
        let e = parse(&block).unwrap_err();
        assert!(e.message.contains("nest more than 64"), "{e}");
        assert!(parse(&("{a: ".repeat(60) + &"}".repeat(60))).is_ok());
        let seqs = "- ".repeat(1_000_000) + "x";
        let e = parse(&seqs).unwrap_err();
        assert!(e.message.contains("nest more than 64"), "{e}");
    }

    #[test]
    fn an_alias_bomb_is_refused_before_it_expands() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert!(bomb.len() < 1000);
        let e = parse(&bomb).unwrap_err();
        assert!(e.message.contains("500000 nodes"), "{e}");
        // A few aliases of a small anchor are fine.
        assert!(parse("a: &x {k: v}\nb: *x\nc: *x\n").is_ok());
    }

    #[test]
    fn configuration_refuses_a_repeated_key() {
        let e = from_str::<serde_json::Value>("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("duplicate key"), "{e}");
    }

    #[test]
    fn one_document_only() {
        let e = parse("services: {}\n---\nservices: {a: {}}\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("one document"), "{e}");
        assert!(parse("---\nservices: {}\n").is_ok());
    }

    #[test]
    fn oversized_text_is_refused() {
        let big = "#".repeat(MAX_BYTES + 1);
        assert!(parse(&big).unwrap_err().message.contains("bytes"));
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = parse("services:\n  a: [1, 2\n").unwrap_err();
        assert!(e.line >= 2, "{e}");
        assert!(e.message.contains("not valid YAML"));
    }
}
