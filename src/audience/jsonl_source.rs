use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use minijinja::Value;

use super::{Origin, Row, RowEvent};
use crate::campaign::io_reason;

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
    let mut reader = BufReader::with_capacity(1 << 16, handle);
    let mut buffer = Vec::new();
    let mut line = 0u64;
    let mut done = false;
    Box::new(std::iter::from_fn(move || loop {
        if done {
            return None;
        }
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) => {
                done = true;
                return None;
            }
            Ok(_) => {
                line += 1;
                let mut bytes = buffer.as_slice();
                if line == 1 {
                    bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
                }
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let origin = Origin {
                    file: file.clone(),
                    line,
                };
                return Some(match serde_json::from_slice::<serde_json::Value>(bytes) {
                    Ok(v @ serde_json::Value::Object(_)) => RowEvent::Row(Row {
                        origin,
                        fields: Value::from_serialize(&v),
                    }),
                    Ok(_) => RowEvent::Broken {
                        origin,
                        reason: "the line is JSON but not an object `{...}`".into(),
                    },
                    Err(e) if std::str::from_utf8(bytes).is_err() => {
                        let _ = e;
                        RowEvent::Broken {
                            origin,
                            reason: "the line is not valid UTF-8".into(),
                        }
                    }
                    Err(e) => RowEvent::Broken {
                        origin,
                        reason: format!(
                            "the line is not valid JSON: {}",
                            strip_position(&e.to_string())
                        ),
                    },
                });
            }
            Err(e) => {
                done = true;
                return Some(RowEvent::SourceFailed {
                    file: file.clone(),
                    reason: io_reason(&e),
                });
            }
        }
    }))
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
