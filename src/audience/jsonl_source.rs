use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use super::{json_row, Origin, Row, RowEvent};
use crate::human::io_reason;

/// One non-blank line of a JSONL stream.
enum Line {
    Object(serde_json::Map<String, serde_json::Value>),
    Broken(String),
}

/// The non-blank lines of a JSONL stream with their line numbers, parsed.
/// Plans read files whole through it; `validate` reads the start of one
/// through a bounded reader, so both see the same rows.
struct Lines<R> {
    reader: R,
    buffer: Vec<u8>,
    line: u64,
    done: bool,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Self {
        Lines {
            reader,
            buffer: Vec::new(),
            line: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = std::io::Result<(u64, Line)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            self.buffer.clear();
            match self.reader.read_until(b'\n', &mut self.buffer) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {
                    self.line += 1;
                    let mut bytes = self.buffer.as_slice();
                    if self.line == 1 {
                        bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
                    }
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Some(Ok((self.line, parse(bytes))));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

fn parse(bytes: &[u8]) -> Line {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(map)) => Line::Object(map),
        Ok(_) => Line::Broken("the line is JSON but not an object `{...}`".into()),
        Err(_) if std::str::from_utf8(bytes).is_err() => {
            Line::Broken("the line is not valid UTF-8".into())
        }
        Err(e) => Line::Broken(format!(
            "the line is not valid JSON: {}",
            strip_position(&e.to_string())
        )),
    }
}

pub(super) fn open(file: Arc<Path>) -> Box<dyn Iterator<Item = RowEvent> + Send> {
    let handle = match File::open(&file) {
        Ok(f) => f,
        Err(e) => {
            return Box::new(std::iter::once(RowEvent::SourceFailed {
                file,
                reason: io_reason(&e),
            }));
        }
    };
    let lines = Lines::new(BufReader::with_capacity(1 << 16, handle));
    // After a read error `Lines` ends, so SourceFailed is the last event.
    Box::new(lines.map(move |item| match item {
        Ok((line, parsed)) => {
            let origin = Origin {
                file: file.clone(),
                line,
            };
            match parsed {
                Line::Object(map) => RowEvent::Row(Row {
                    origin,
                    fields: json_row::row_value(&map),
                }),
                Line::Broken(reason) => RowEvent::Broken { origin, reason },
            }
        }
        Err(e) => RowEvent::SourceFailed {
            file: file.clone(),
            reason: io_reason(&e),
        },
    }))
}

/// The keys of the objects among the first `lines` non-blank lines of a
/// JSONL file (their union, in first-seen order), reading at most `bytes`
/// of it: what `validate` checks template names against. Broken lines are
/// skipped here (`plan` reports them with their rows).
pub fn jsonl_keys(path: &Path, lines: usize, bytes: u64) -> Result<Vec<String>, String> {
    let file = File::open(path).map_err(|e| io_reason(&e))?;
    let mut keys = indexmap::IndexSet::new();
    for item in Lines::new(BufReader::new(file.take(bytes))).take(lines) {
        match item {
            Ok((_, Line::Object(map))) => {
                for key in map.keys() {
                    if !keys.contains(key.as_str()) {
                        keys.insert(key.clone());
                    }
                }
            }
            Ok((_, Line::Broken(_))) => {}
            Err(e) => return Err(io_reason(&e)),
        }
    }
    Ok(keys.into_iter().collect())
}

/// serde_json says "… at line 1 column 7"; a JSONL line is always line 1.
fn strip_position(s: &str) -> String {
    match s.find(" at line ") {
        Some(i) => match s[i..].find(" column ") {
            Some(c) => format!("{} at character {}", &s[..i], &s[i + c + 8..]),
            None => s[..i].to_owned(),
        },
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_union_over_the_first_lines_within_the_byte_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.jsonl");
        let text =
            "\u{feff}{\"a\":1,\"b\":null}\n\nnot json\n[1]\n{\"c\":2,\"a\":3}\n{\"late\":1}\n";
        std::fs::write(&path, text).expect("write");
        assert_eq!(
            jsonl_keys(&path, 100, 1 << 20),
            Ok(vec!["a".into(), "b".into(), "c".into(), "late".into()])
        );
        // Four non-blank lines: `late` is the fifth.
        assert_eq!(
            jsonl_keys(&path, 4, 1 << 20),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        // A line cut by the byte bound is broken, not an error.
        assert_eq!(jsonl_keys(&path, 100, 20), Ok(vec!["a".into(), "b".into()]));
        assert!(jsonl_keys(&dir.path().join("none.jsonl"), 100, 100).is_err());
    }
}
