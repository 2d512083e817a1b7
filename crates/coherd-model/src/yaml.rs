//! A YAML document as a tree of nodes that remember their line and column,
//! so that validation can point at every mistake.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::error::IntentError;

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

/// Parses YAML (or JSON, which is YAML) into a [`Node`].
pub fn parse(src: &str) -> Result<Node, IntentError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(src);
    parser.load(&mut builder, false).map_err(|e| IntentError {
        line: e.marker().line(),
        column: e.marker().col() + 1,
        path: String::new(),
        message: format!("not valid YAML: {}", e.info()),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root.unwrap_or(Node {
        kind: NodeKind::Null,
        line: 1,
        column: 1,
    }))
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
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<IntentError>,
}

impl Builder {
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
        let (line, column) = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(value, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                let kind = if plain && matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    NodeKind::Null
                } else {
                    NodeKind::Scalar { value, plain }
                };
                let node = Node { kind, line, column };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(
                Node {
                    kind: NodeKind::Seq(Vec::new()),
                    line,
                    column,
                },
                anchor,
            )),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map(
                Node {
                    kind: NodeKind::Map(Vec::new()),
                    line,
                    column,
                },
                anchor,
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(n, a)) | Some(Frame::Map(n, a, _)) => (n, a),
                    None => return,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push_value(node);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(n) => {
                    let n = n.clone();
                    self.push_value(n);
                }
                None => {
                    self.error.get_or_insert(IntentError {
                        line,
                        column,
                        path: String::new(),
                        message: "alias to an unknown anchor".into(),
                    });
                }
            },
            Event::DocumentStart
            | Event::DocumentEnd
            | Event::StreamStart
            | Event::StreamEnd
            | Event::Nothing => {}
        }
    }
}

/// Reads a YAML configuration document into `T` with serde; an empty document
/// is an empty mapping, and errors name the path of the key at fault.
pub fn from_str<T: serde::de::DeserializeOwned>(src: &str) -> Result<T, String> {
    let value = to_json(&parse(src).map_err(|e| e.to_string())?);
    let value = if value.is_null() {
        serde_json::json!({})
    } else {
        value
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
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
    fn syntax_errors_have_a_line() {
        let e = parse("services:\n  a: [1, 2\n").unwrap_err();
        assert!(e.line >= 2, "{e}");
        assert!(e.message.contains("not valid YAML"));
    }
}
