//! A YAML loader that keeps positions.
//!
//! The document becomes a `serde_json::Value` (for the JSON Schema and for serde)
//! plus a map from JSON pointers to positions, so that any finding about
//! `/audience/from/0/csv/path` can name its line and column in the file.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

use crate::diagnostic::Position;

/// Where a node sits in the file and how its scalar was written.
#[derive(Debug, Clone, Copy)]
pub struct NodeSpan {
    pub start: Position,
    /// Width of the node's first line, in characters, for underlining.
    pub width: u32,
    pub style: ScalarStyle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    Plain,
    Quoted,
    Block,
    Collection,
}

#[derive(Debug, Default)]
pub struct Spans {
    values: HashMap<String, NodeSpan>,
    keys: HashMap<String, NodeSpan>,
}

impl Spans {
    /// The span of the value at `pointer`, or of its nearest ancestor.
    pub fn value(&self, pointer: &str) -> Option<NodeSpan> {
        let mut p = pointer;
        loop {
            if let Some(s) = self.values.get(p) {
                return Some(*s);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }

    /// The span of the key that introduces `pointer` (falls back to the value).
    pub fn key(&self, pointer: &str) -> Option<NodeSpan> {
        self.keys
            .get(pointer)
            .copied()
            .or_else(|| self.value(pointer))
    }
}

#[derive(Debug)]
pub struct YamlError {
    pub position: Position,
    pub message: String,
}

pub struct Document {
    pub value: serde_json::Value,
    pub spans: Spans,
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn position(m: &Marker) -> Position {
    Position {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX),
        col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
    }
}

pub fn parse(text: &str) -> Result<Document, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|e| YamlError {
        position: position(e.marker()),
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    if builder.documents > 1 {
        return Err(YamlError {
            position: builder.second_document.unwrap_or_default(),
            message: "a campaign file holds one YAML document; found a second `---`".into(),
        });
    }
    let value = builder.root.unwrap_or(serde_json::Value::Null);
    Ok(Document {
        value,
        spans: builder.spans,
    })
}

enum Frame {
    Seq {
        pointer: String,
        items: Vec<serde_json::Value>,
        anchor: usize,
    },
    Map {
        pointer: String,
        map: serde_json::Map<String, serde_json::Value>,
        pending_key: Option<String>,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<serde_json::Value>,
    spans: Spans,
    anchors: HashMap<usize, serde_json::Value>,
    error: Option<YamlError>,
    documents: usize,
    second_document: Option<Position>,
}

impl Builder {
    /// Pointer of the node about to be inserted, or None when the node is a key.
    fn next_pointer(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Seq { pointer, items, .. }) => Some(format!("{pointer}/{}", items.len())),
            Some(Frame::Map {
                pointer,
                pending_key: Some(k),
                ..
            }) => Some(format!("{pointer}/{}", pointer_segment(k))),
            Some(Frame::Map {
                pending_key: None, ..
            }) => None,
        }
    }

    fn fail(&mut self, mark: Marker, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(YamlError {
                position: position(&mark),
                message: message.into(),
            });
        }
    }

    fn insert(&mut self, value: serde_json::Value, mark: Marker, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map {
                map, pending_key, ..
            }) => match pending_key.take() {
                Some(k) => {
                    map.insert(k, value);
                }
                None => {
                    let key = match value {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => "null".to_string(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        serde_json::Value::Number(n) => n.to_string(),
                        _ => {
                            self.fail(
                                mark,
                                "a mapping key must be a plain value, not a list or a mapping",
                            );
                            return;
                        }
                    };
                    if map.contains_key(&key) {
                        let msg =
                            format!("duplicate key `{key}`: each key may appear once in a mapping");
                        self.fail(mark, msg);
                        return;
                    }
                    *pending_key = Some(key);
                }
            },
        }
    }
}

fn scalar_value(
    text: String,
    style: TScalarStyle,
    tag: Option<&yaml_rust2::parser::Tag>,
) -> serde_json::Value {
    if let Some(tag) = tag {
        if tag.handle == "!!" && tag.suffix == "str" {
            return serde_json::Value::String(text);
        }
    }
    if style != TScalarStyle::Plain {
        return serde_json::Value::String(text);
    }
    match Yaml::from_str(&text) {
        Yaml::Integer(i) => i.into(),
        Yaml::Real(r) => match r.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            Some(n) => serde_json::Value::Number(n),
            None => serde_json::Value::String(text),
        },
        Yaml::Boolean(b) => b.into(),
        Yaml::Null => serde_json::Value::Null,
        _ => serde_json::Value::String(text),
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 {
                    self.second_document = Some(position(&mark));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let start = position(&mark);
                let span_style = match style {
                    TScalarStyle::Plain => ScalarStyle::Plain,
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => ScalarStyle::Quoted,
                    _ => ScalarStyle::Block,
                };
                let first_line = text.split('\n').next().unwrap_or("");
                let width = u32::try_from(first_line.chars().count()).unwrap_or(1)
                    + if span_style == ScalarStyle::Quoted {
                        2
                    } else {
                        0
                    };
                let span = NodeSpan {
                    start,
                    width: width.max(1),
                    style: span_style,
                };
                match self.next_pointer() {
                    Some(pointer) => {
                        self.spans.values.insert(pointer, span);
                    }
                    None => {
                        if let Some(Frame::Map { pointer, .. }) = self.stack.last() {
                            let key_pointer = format!("{pointer}/{}", pointer_segment(&text));
                            self.spans.keys.insert(key_pointer, span);
                        }
                    }
                }
                let value = scalar_value(text, style, tag.as_ref());
                self.insert(value, mark, anchor);
            }
            Event::Alias(id) => {
                let value = match self.anchors.get(&id) {
                    Some(v) => v.clone(),
                    None => {
                        self.fail(mark, "alias to an unknown anchor");
                        return;
                    }
                };
                if let Some(pointer) = self.next_pointer() {
                    let span = NodeSpan {
                        start: position(&mark),
                        width: 1,
                        style: ScalarStyle::Plain,
                    };
                    self.spans.values.insert(pointer, span);
                }
                self.insert(value, mark, 0);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let Some(pointer) = self.next_pointer() else {
                    self.fail(
                        mark,
                        "a mapping key must be a plain value, not a list or a mapping",
                    );
                    return;
                };
                let span = NodeSpan {
                    start: position(&mark),
                    width: 1,
                    style: ScalarStyle::Collection,
                };
                self.spans.values.insert(pointer.clone(), span);
                let frame = if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq {
                        pointer,
                        items: Vec::new(),
                        anchor,
                    }
                } else {
                    Frame::Map {
                        pointer,
                        map: serde_json::Map::new(),
                        pending_key: None,
                        anchor,
                    }
                };
                self.stack.push(frame);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { items, anchor, .. }) => {
                        (serde_json::Value::Array(items), anchor)
                    }
                    Some(Frame::Map { map, anchor, .. }) => {
                        (serde_json::Value::Object(map), anchor)
                    }
                    None => return,
                };
                self.insert(value, mark, anchor);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_values_and_keys() {
        let doc = parse("name: x\naudience:\n  from:\n    - csv: a.csv\n").unwrap();
        assert_eq!(doc.value["audience"]["from"][0]["csv"], "a.csv");
        let v = doc.spans.value("/audience/from/0/csv").unwrap();
        assert_eq!((v.start.line, v.start.col), (4, 12));
        let k = doc.spans.key("/audience/from/0/csv").unwrap();
        assert_eq!((k.start.line, k.start.col), (4, 7));
    }

    #[test]
    fn resolves_scalars_as_yaml_1_2_core() {
        let doc = parse("a: 1\nb: '1'\nc: true\nd: 2026-11-01\ne: ~\nf: 1.50\ng: 0912\n").unwrap();
        assert_eq!(doc.value["a"], 1);
        assert_eq!(doc.value["b"], "1");
        assert_eq!(doc.value["c"], true);
        assert_eq!(doc.value["d"], "2026-11-01");
        assert!(doc.value["e"].is_null());
        assert_eq!(doc.value["f"], 1.5);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\na: 2\n").err().unwrap();
        assert_eq!(err.position.line, 2);
        assert!(err.message.contains("duplicate key"));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").err().unwrap();
        assert!(err.position.line >= 1);
    }
}
