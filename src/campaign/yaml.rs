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
    SingleQuoted,
    DoubleQuoted,
    /// `|`, `|-`, `|+` (chomping changes only the end of the value).
    Literal,
    /// `>`, `>-`, `>+`.
    Folded,
    Collection,
}

impl ScalarStyle {
    fn is_quoted(self) -> bool {
        matches!(self, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted)
    }

    fn is_block(self) -> bool {
        matches!(self, ScalarStyle::Literal | ScalarStyle::Folded)
    }
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
    /// True when the document broke a size bound (aliases, nesting) rather
    /// than YAML's grammar.
    pub over_limit: bool,
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

/// How deep mappings and lists may nest. Campaigns need a handful of levels;
/// the bound keeps hostile nesting (`- - - - …`) from exhausting the stack of
/// everything that walks the document afterwards.
pub const MAX_DEPTH: usize = 64;

/// Nodes that aliases may add on top of the document's size in bytes. Without
/// aliases a document has fewer nodes than bytes, so this only ever stops
/// alias expansion ("billion laughs"), at the first alias that crosses it.
pub const ALIAS_EXPANSION_ALLOWANCE: usize = 10_000;

/// Bytes of JSON pointers (for positions) allowed per byte of document, plus
/// 1 MiB. An inline `users:` list takes about 40 per row of 10 fields, or 4 per
/// byte; long keys repeated over many nodes take far more.
const POINTER_BYTES_PER_BYTE: usize = 32;

pub fn parse(text: &str) -> Result<Document, YamlError> {
    let mut builder = Builder {
        node_budget: text.len().saturating_add(ALIAS_EXPANSION_ALLOWANCE),
        node_budget_total: text.len().saturating_add(ALIAS_EXPANSION_ALLOWANCE),
        pointer_budget: text
            .len()
            .saturating_mul(POINTER_BYTES_PER_BYTE)
            .saturating_add(1 << 20),
        ..Builder::default()
    };
    // Events are pulled one at a time rather than through `Parser::load`,
    // which recurses once per nesting level and overflows the stack on
    // `- - - - …` long before the builder's depth bound can refuse it.
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError {
            position: position(e.marker()),
            message: e.info().to_string(),
            over_limit: false,
        })?;
        let end = event == Event::StreamEnd;
        builder.on_event(event, mark);
        if end || builder.error.is_some() {
            break;
        }
    }
    if let Some(err) = builder.error {
        return Err(err);
    }
    if builder.documents > 1 {
        return Err(YamlError {
            position: builder.second_document.unwrap_or_default(),
            message: "a campaign file holds one YAML document; found a second `---`".into(),
            over_limit: false,
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
        /// Nodes in this collection, itself included (aliases expanded).
        nodes: usize,
    },
    Map {
        pointer: String,
        map: serde_json::Map<String, serde_json::Value>,
        pending_key: Option<String>,
        anchor: usize,
        nodes: usize,
    },
}

impl Frame {
    fn nodes_mut(&mut self) -> &mut usize {
        match self {
            Frame::Seq { nodes, .. } | Frame::Map { nodes, .. } => nodes,
        }
    }
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<serde_json::Value>,
    spans: Spans,
    /// Anchored values with their node counts, for aliases.
    anchors: HashMap<usize, (serde_json::Value, usize)>,
    /// Nodes the document may still hold, aliases expanded.
    node_budget: usize,
    node_budget_total: usize,
    /// Bytes of JSON pointers the position table may still hold.
    pointer_budget: usize,
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
        self.fail_as(mark, message, false);
    }

    fn fail_as(&mut self, mark: Marker, message: impl Into<String>, over_limit: bool) {
        if self.error.is_none() {
            self.error = Some(YamlError {
                position: position(&mark),
                message: message.into(),
                over_limit,
            });
        }
    }

    /// Charges `nodes` against the document's budget; false (with the error
    /// recorded at `mark`) when the budget is spent.
    fn charge(&mut self, nodes: usize, mark: Marker, what: &str) -> bool {
        match self.node_budget.checked_sub(nodes) {
            Some(left) => {
                self.node_budget = left;
                true
            }
            None => {
                let message = format!(
                    "{what} makes the document expand past {} bytes; \
                     a campaign never needs that (is this a \"billion laughs\" alias bomb?)",
                    self.node_budget_total
                );
                self.fail_as(mark, message, true);
                false
            }
        }
    }

    /// Positions are kept by JSON pointer, one string per node: long keys
    /// over many nodes would make that table quadratic in the file's size,
    /// so its bytes have a budget of their own.
    fn charge_pointer(&mut self, pointer: &str, mark: Marker) -> bool {
        match self.pointer_budget.checked_sub(pointer.len()) {
            Some(left) => {
                self.pointer_budget = left;
                true
            }
            None => {
                self.fail_as(
                    mark,
                    "keys here are so long, or nested so deep, that the document's positions would \
                     take too much memory; a campaign never needs that",
                    true,
                );
                false
            }
        }
    }

    fn insert(&mut self, value: serde_json::Value, nodes: usize, mark: Marker, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (value.clone(), nodes));
        }
        if let Some(frame) = self.stack.last_mut() {
            let total = frame.nodes_mut();
            *total = total.saturating_add(nodes);
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
                    TScalarStyle::SingleQuoted => ScalarStyle::SingleQuoted,
                    TScalarStyle::DoubleQuoted => ScalarStyle::DoubleQuoted,
                    TScalarStyle::Folded => ScalarStyle::Folded,
                    _ => ScalarStyle::Literal,
                };
                let first_line = text.split('\n').next().unwrap_or("");
                let width = u32::try_from(first_line.chars().count()).unwrap_or(1)
                    + if span_style.is_quoted() { 2 } else { 0 };
                let span = NodeSpan {
                    start,
                    width: width.max(1),
                    style: span_style,
                };
                match self.next_pointer() {
                    Some(pointer) => {
                        if !self.charge_pointer(&pointer, mark) {
                            return;
                        }
                        self.spans.values.insert(pointer, span);
                    }
                    None => {
                        if let Some(Frame::Map { pointer, .. }) = self.stack.last() {
                            let key_pointer = format!("{pointer}/{}", pointer_segment(&text));
                            if !self.charge_pointer(&key_pointer, mark) {
                                return;
                            }
                            self.spans.keys.insert(key_pointer, span);
                        }
                    }
                }
                // A scalar costs its length: an alias to a long one copies it.
                let cost = text.len().max(1);
                if !self.charge(cost, mark, "this value") {
                    return;
                }
                let value = scalar_value(text, style, tag.as_ref());
                self.insert(value, cost, mark, anchor);
            }
            Event::Alias(id) => {
                // Charged before cloning: the clone is what a bomb multiplies.
                let nodes = match self.anchors.get(&id) {
                    Some((_, nodes)) => *nodes,
                    None => {
                        self.fail(mark, "alias to an unknown anchor");
                        return;
                    }
                };
                if !self.charge(nodes, mark, "this alias") {
                    return;
                }
                let Some((value, _)) = self.anchors.get(&id).map(|(v, n)| (v.clone(), *n)) else {
                    return;
                };
                if let Some(pointer) = self.next_pointer() {
                    let span = NodeSpan {
                        start: position(&mark),
                        width: 1,
                        style: ScalarStyle::Plain,
                    };
                    if !self.charge_pointer(&pointer, mark) {
                        return;
                    }
                    self.spans.values.insert(pointer, span);
                }
                self.insert(value, nodes, mark, 0);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let Some(pointer) = self.next_pointer() else {
                    self.fail(
                        mark,
                        "a mapping key must be a plain value, not a list or a mapping",
                    );
                    return;
                };
                if self.stack.len() >= MAX_DEPTH {
                    self.fail_as(
                        mark,
                        format!("lists and mappings nest deeper than {MAX_DEPTH} levels here"),
                        true,
                    );
                    return;
                }
                if !self.charge(1, mark, "this value") {
                    return;
                }
                let span = NodeSpan {
                    start: position(&mark),
                    width: 1,
                    style: ScalarStyle::Collection,
                };
                // The frame keeps a second copy of the pointer.
                if !self.charge_pointer(&pointer, mark) || !self.charge_pointer(&pointer, mark) {
                    return;
                }
                self.spans.values.insert(pointer.clone(), span);
                let frame = if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq {
                        pointer,
                        items: Vec::new(),
                        anchor,
                        nodes: 1,
                    }
                } else {
                    Frame::Map {
                        pointer,
                        map: serde_json::Map::new(),
                        pending_key: None,
                        anchor,
                        nodes: 1,
                    }
                };
                self.stack.push(frame);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor, nodes) = match self.stack.pop() {
                    Some(Frame::Seq {
                        items,
                        anchor,
                        nodes,
                        ..
                    }) => (serde_json::Value::Array(items), anchor, nodes),
                    Some(Frame::Map {
                        map, anchor, nodes, ..
                    }) => (serde_json::Value::Object(map), anchor, nodes),
                    None => return,
                };
                self.insert(value, nodes, mark, anchor);
            }
            _ => {}
        }
    }
}

/// Where the character at byte `offset` of a scalar's `value` was written:
/// its line and column (1-based, in characters) in `text`, the file that
/// holds the scalar at `span`.
///
/// The value is the scalar after YAML has read it: block scalars lose their
/// indentation and start on the line after their indicator (the span starts
/// at their first content character), folded ones and multi-line flow
/// scalars turn line breaks into spaces, quoted ones resolve escapes (`\t`,
/// `\u00e9`, `''`). The value is walked alongside the source, undoing each
/// of these; should the two ever disagree, the position reached so far is
/// returned (the right line, the column near).
pub fn scalar_position(text: &str, span: &NodeSpan, value: &str, offset: usize) -> Position {
    if !(span.style.is_quoted() || span.style.is_block() || span.style == ScalarStyle::Plain) {
        return span.start;
    }
    let mut line = (span.start.line as usize).saturating_sub(1);
    // Leading empty lines of a block scalar are in its value (one `\n`
    // each) but before the span's start: the walk begins with them.
    let leading = if span.style.is_block() {
        value.chars().take_while(|c| *c == '\n').count()
    } else {
        0
    };
    line = line.saturating_sub(leading);
    // Lines are read from the scalar's first on, as far as the walk goes.
    let mut rest = text.split('\n').skip(line);
    let first: Vec<char> = rest.next().map(line_chars).unwrap_or_default();
    let col = if leading > 0 {
        first.len()
    } else {
        (span.start.col as usize).saturating_sub(1) + usize::from(span.style.is_quoted())
    };
    let mut walker = Walker {
        rest,
        current: first,
        style: span.style,
        // Block content is indented by the column its first line starts at.
        indent: (span.start.col as usize).saturating_sub(1),
        line,
        col,
    };
    for (i, c) in value.char_indices() {
        let here = walker.consume(c);
        if i >= offset || here.is_none() {
            return here.unwrap_or_else(|| walker.position());
        }
    }
    walker.position()
}

fn line_chars(line: &str) -> Vec<char> {
    line.strip_suffix('\r').unwrap_or(line).chars().collect()
}

/// The walk of [`scalar_position`]: the source position of the next
/// character of the value.
struct Walker<'a, I: Iterator<Item = &'a str>> {
    /// The lines after the current one.
    rest: I,
    current: Vec<char>,
    style: ScalarStyle,
    indent: usize,
    /// 0-based line, and character index in it.
    line: usize,
    col: usize,
}

impl<'a, I: Iterator<Item = &'a str>> Walker<'a, I> {
    fn position(&self) -> Position {
        Position {
            line: u32::try_from(self.line + 1).unwrap_or(u32::MAX),
            col: u32::try_from(self.col + 1).unwrap_or(u32::MAX),
        }
    }

    /// Moves to the first character of the next line's content.
    fn next_line(&mut self) -> bool {
        let Some(next) = self.rest.next() else {
            return false;
        };
        self.current = line_chars(next);
        self.line += 1;
        let blank = self
            .current
            .iter()
            .take_while(|c| **c == ' ' || **c == '\t')
            .count();
        self.col = if self.style.is_block() {
            // Only the block's indentation goes; more is content.
            blank.min(self.indent)
        } else {
            // Flow scalars drop a continuation line's leading blanks.
            blank
        };
        true
    }

    /// Steps over the source of value character `c` and returns where that
    /// source starts; None when the source does not hold it where expected.
    fn consume(&mut self, c: char) -> Option<Position> {
        loop {
            let Some(&s) = self.current.get(self.col) else {
                // A line break: it is the `\n` or the space (folding) the
                // value has here, or it was dropped (a fold before an empty
                // line, a flow scalar's trailing blanks).
                let at = self.position();
                if !self.next_line() {
                    return None;
                }
                if c == '\n' || c == ' ' {
                    return Some(at);
                }
                continue;
            };
            if self.style == ScalarStyle::DoubleQuoted && s == '\\' {
                match self.current.get(self.col + 1) {
                    // An escaped line break joins the lines.
                    None => {
                        self.col += 1;
                        if !self.next_line() {
                            return None;
                        }
                        continue;
                    }
                    Some(e) => {
                        let len = match e {
                            'x' => 4,
                            'u' => 6,
                            'U' => 10,
                            _ => 2,
                        };
                        let at = self.position();
                        self.col = (self.col + len).min(self.current.len());
                        return Some(at);
                    }
                }
            }
            if s == c {
                let at = self.position();
                self.col += 1;
                if self.style == ScalarStyle::SingleQuoted
                    && c == '\''
                    && self.current.get(self.col) == Some(&'\'')
                {
                    self.col += 1;
                }
                return Some(at);
            }
            if !self.style.is_block() && (s == ' ' || s == '\t') {
                self.col += 1;
                continue;
            }
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The position `scalar_position` gives for `ERR` in the value at
    /// `pointer`, and where `ERR` really is in the text.
    fn err_positions(text: &str, pointer: &str) -> (Position, Position) {
        let doc = parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let value = doc
            .value
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no string at {pointer}"));
        let offset = value.find("ERR").expect("ERR in the value");
        let span = doc.spans.value(pointer).expect("span");
        let got = scalar_position(text, &span, value, offset);
        let (line, col) = text
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.find("ERR").map(|b| (i + 1, l[..b].chars().count() + 1)))
            .expect("ERR in the text");
        let want = Position {
            line: line as u32,
            col: col as u32,
        };
        (got, want)
    }

    #[test]
    fn positions_inside_scalars_of_every_style_are_exact() {
        let cases = [
            ("/a", "a: x ERR y\n"),
            (
                "/a",
                "a: first line\n  and a second,\n\n   then ERR\nb: 1\n",
            ),
            ("/a", "a: 'it''s ''ERR'''\n"),
            ("/a", r#"a: "tab\t \u00e9 \" \x41 \U0001F389 ERR""#),
            ("/a", "a: \"one \\\n   two\n  three  \n  ERR\"\n"),
            (
                "/a",
                "a: |\n\n  line one\n    indented\n\n  then ERR here\nb: 1\n",
            ),
            (
                "/a",
                "a: |-\n  line one\n  Chào 🎉 ERR\ndelivery:\n  rate: 1\n",
            ),
            ("/a", "a: |+\n  one\n\n  ERR\n\nb: 1\n"),
            (
                "/a",
                "a: >\n  folded\n  lines\n\n    more indented\n  back ERR\nb: 1\n",
            ),
            ("/a", "a: >-\n\n  folded\n  ERR\n"),
            ("/a", "a: |2\n    starts indented\n  ERR\n"),
            ("/a", "a: >+\n  x\n   y\n  ERR\n"),
            (
                "/list/0/text",
                "list:\n  - text: |-\n      Chào {{ x }}\n      {{ ERR }}\n    other: 1\n",
            ),
            ("/k/b", "k: { a: \"🎉 Chào\", b: 'x ERR' }\n"),
        ];
        for (pointer, text) in cases {
            let (got, want) = err_positions(text, pointer);
            assert_eq!(got, want, "{text}");
            // Every offset, and past the end, lands inside the file.
            let doc = parse(text).expect("parses");
            let value = doc
                .value
                .pointer(pointer)
                .and_then(|v| v.as_str())
                .expect("string");
            let span = doc.spans.value(pointer).expect("span");
            let lines = text.split('\n').count() as u32;
            for offset in 0..=value.len() + 1 {
                let p = scalar_position(text, &span, value, offset);
                assert!((1..=lines).contains(&p.line), "{text} {offset} {p:?}");
            }
        }
    }

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

    /// The classic 9-way "billion laughs": a few hundred bytes that expand
    /// to 10^9 nodes.
    pub(crate) fn billion_laughs() -> String {
        let mut text = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for pair in names.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            let refs = vec![format!("*{prev}"); 9].join(",");
            text.push_str(&format!("{next}: &{next} [{refs}]\n"));
        }
        text
    }

    #[test]
    fn alias_bombs_stop_at_the_first_alias_past_the_budget() {
        let text = billion_laughs();
        let err = parse(&text).err().unwrap();
        assert!(err.message.contains("alias"), "{}", err.message);
        // Costs (a scalar costs its bytes): a 28, b 253, c 2278, d 20503: `d`'s
        // aliases cross the budget of the text's length plus the allowance.
        assert_eq!(err.position.line, 4, "{}", err.message);
    }

    #[test]
    fn aliases_within_the_budget_are_expanded() {
        let doc = parse("base: &b { rate: 5 }\nx: *b\ny: *b\n").unwrap();
        assert_eq!(doc.value["y"]["rate"], 5);
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "- ".repeat(MAX_DEPTH + 1) + "x\n";
        let err = parse(&deep).err().unwrap();
        assert!(err.message.contains("nest deeper"), "{}", err.message);
        let fine = "- ".repeat(MAX_DEPTH - 1) + "x\n";
        assert!(parse(&fine).is_ok());
    }

    #[test]
    fn an_alias_costs_the_bytes_it_copies() {
        let long = "x".repeat(200_000);
        let mut text = format!("a: &a \"{long}\"\nb: [");
        text.push_str(&vec!["*a"; 20_000].join(","));
        text.push_str("]\n");
        let err = parse(&text).err().unwrap();
        assert!(err.over_limit, "{}", err.message);
    }

    #[test]
    fn long_keys_over_many_nodes_are_refused() {
        let key = "k".repeat(1 << 20);
        let items = vec!["1"; 3_000_000].join(",");
        let text = format!("? {key}\n: [{items}]\n");
        let err = parse(&text).err().unwrap();
        assert!(err.message.contains("positions"), "{}", err.message);
    }

    #[test]
    fn very_deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = format!("vars:\n  a:\n    {}x\n", "- ".repeat(50_000));
        let err = parse(&deep).err().unwrap();
        assert!(err.message.contains("nest deeper"), "{}", err.message);
    }
}
