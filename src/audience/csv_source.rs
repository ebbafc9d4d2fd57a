use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use minijinja::Value;

use super::line_count::LineCounter;
use super::source::ColumnType;
use super::{Origin, Row, RowEvent};
use crate::human::io_reason;

/// The header row of a CSV file (BOM stripped).
pub fn read_csv_header(path: &Path, delimiter: u8) -> Result<Vec<String>, String> {
    let file = File::open(path).map_err(|e| io_reason(&e))?;
    let mut reader = builder(delimiter).from_reader(BufReader::new(file));
    let header = reader.byte_headers().map_err(|e| e.to_string())?;
    header_strings(header, delimiter)
}

fn builder(delimiter: u8) -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    b.delimiter(delimiter).flexible(true).has_headers(true);
    b
}

fn header_strings(header: &csv::ByteRecord, delimiter: u8) -> Result<Vec<String>, String> {
    if header.is_empty() || header.iter().all(<[u8]>::is_empty) {
        return Err("the file has no header row".into());
    }
    let first = header.get(0).unwrap_or_default();
    // Spreadsheets' "Unicode Text" and some exports write UTF-16: a byte-order
    // mark, or a NUL after every ASCII letter.
    if first.starts_with(b"\xFF\xFE") || first.starts_with(b"\xFE\xFF") || first.contains(&0) {
        return Err(
            "the file is UTF-16 text, not UTF-8: save it as \"CSV UTF-8\" (Excel: File > Save As > CSV UTF-8; LibreOffice: character set Unicode (UTF-8))".into(),
        );
    }
    if header.len() == 1 {
        if let Some((sep, shown)) = [(b';', ";"), (b'\t', "\\t"), (b'|', "|")]
            .into_iter()
            .find(|(sep, _)| *sep != delimiter && first.contains(sep))
        {
            let columns = first.split(|b| *b == sep).count();
            return Err(format!(
                "the header is one column, `{}`, which looks like {columns} columns separated by `{shown}`: write the source as `csv: {{ path: …, delimiter: \"{shown}\" }}` (spreadsheets in many locales export `;`)",
                shorten_to(&String::from_utf8_lossy(first).trim().replace('\t', "\\t"), 80),
            ));
        }
    }
    header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = if i == 0 {
                h.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(h)
            } else {
                h
            };
            String::from_utf8(h.to_vec())
                .map(|s| s.trim().to_owned())
                .map_err(|_| format!("column {} of the header is not valid UTF-8", i + 1))
        })
        .collect()
}

/// Column lookup shared by every row of one file.
#[derive(Debug)]
pub(crate) struct Header {
    names: Vec<Arc<str>>,
    index: std::collections::HashMap<Arc<str>, usize>,
}

/// Up to this many columns, comparing names beats hashing the looked-up name.
const SCAN_COLUMNS: usize = 16;

impl Header {
    fn new(names: Vec<Arc<str>>) -> Header {
        Header {
            index: names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i))
                .collect(),
            names,
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        if self.names.len() <= SCAN_COLUMNS {
            // From the end: a repeated column name resolves to its last
            // column, as in the map (built last-wins).
            return self.names.iter().rposition(|n| n.as_ref() == name);
        }
        self.index.get(name).copied()
    }
}

#[derive(Debug)]
struct CsvRow {
    header: Arc<Header>,
    values: Vec<Value>,
}

impl minijinja::value::Object for CsvRow {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.values.get(self.header.position(key)?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(
            self.header
                .names
                .iter()
                .map(|n| Value::from(n.as_ref()))
                .collect(),
        )
    }
}

pub(super) fn open(
    file: Arc<Path>,
    types: &[(String, ColumnType)],
    delimiter: u8,
) -> Box<dyn Iterator<Item = RowEvent> + Send> {
    let failed = |reason: String| -> Box<dyn Iterator<Item = RowEvent> + Send> {
        Box::new(std::iter::once(RowEvent::SourceFailed {
            file: file.clone(),
            reason,
        }))
    };
    let handle = match File::open(&file) {
        Ok(f) => f,
        Err(e) => return failed(io_reason(&e)),
    };
    let mut reader =
        builder(delimiter).from_reader(LineCounter::new(BufReader::with_capacity(1 << 16, handle)));
    let names = match reader
        .byte_headers()
        .map_err(|e| e.to_string())
        .and_then(|h| header_strings(h, delimiter))
    {
        Ok(n) => n,
        Err(reason) => return failed(reason),
    };
    let column_types: Vec<ColumnType> = names
        .iter()
        .map(|n| {
            types
                .iter()
                .find(|(t, _)| t == n)
                .map(|(_, ty)| *ty)
                .unwrap_or(ColumnType::String)
        })
        .collect();
    let names: Vec<Arc<str>> = names.into_iter().map(Arc::from).collect();
    let header = Arc::new(Header::new(names));
    let mut record = csv::ByteRecord::new();
    let mut done = false;
    Box::new(std::iter::from_fn(move || {
        if done {
            return None;
        }
        match reader.read_byte_record(&mut record) {
            Ok(false) => {
                done = true;
                None
            }
            Ok(true) => {
                let start = record.position().map(|p| p.byte()).unwrap_or(0);
                let line = reader.get_mut().record_line(start);
                let origin = Origin {
                    file: file.clone(),
                    line,
                };
                Some(match convert(&record, &header, &column_types) {
                    Ok(values) => RowEvent::Row(Row {
                        origin,
                        fields: Value::from_object(CsvRow {
                            header: header.clone(),
                            values,
                        }),
                    }),
                    Err(reason) => RowEvent::Broken { origin, reason },
                })
            }
            Err(e) => {
                done = true;
                Some(RowEvent::SourceFailed {
                    file: file.clone(),
                    reason: e.to_string(),
                })
            }
        }
    }))
}

fn convert(
    record: &csv::ByteRecord,
    header: &Header,
    types: &[ColumnType],
) -> Result<Vec<Value>, String> {
    if record.len() != header.names.len() {
        return Err(format!(
            "the row has {} fields but the header has {} columns",
            record.len(),
            header.names.len()
        ));
    }
    let mut values = Vec::with_capacity(record.len());
    for (i, bytes) in record.iter().enumerate() {
        let name = &header.names[i];
        let text = std::str::from_utf8(bytes)
            .map_err(|_| format!("column `{name}` is not valid UTF-8"))?;
        let value = match types[i] {
            ColumnType::String => Value::from(text),
            ColumnType::Integer => text.trim().parse::<i64>().map(Value::from).map_err(|_| {
                format!(
                    "column `{name}` is declared integer, but the cell is `{}`",
                    shorten(text)
                )
            })?,
            ColumnType::Number => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Value::from)
                .ok_or_else(|| {
                    format!(
                        "column `{name}` is declared number, but the cell is `{}`",
                        shorten(text)
                    )
                })?,
            ColumnType::Boolean => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Value::from(true),
                "false" | "no" | "0" => Value::from(false),
                _ => {
                    return Err(format!(
                    "column `{name}` is declared boolean, but the cell is `{}` (use true/false)",
                    shorten(text)
                ))
                }
            },
        };
        values.push(value);
    }
    Ok(values)
}

/// A cell quoted in a message, cut to 20 characters. Scrubbed before the
/// cut: the writers scrub whole secrets, and a cut one would slip past them.
fn shorten(s: &str) -> String {
    shorten_to(s, 20)
}

/// [`shorten`] to `max` characters.
fn shorten_to(s: &str, max: usize) -> String {
    let s = &*crate::redact::scrub(s);
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_column_name_means_its_last_column_however_wide_the_file() {
        for width in [3, SCAN_COLUMNS + 5] {
            let mut names: Vec<Arc<str>> = (0..width).map(|i| Arc::from(format!("c{i}"))).collect();
            names[0] = Arc::from("dup");
            names[width - 1] = Arc::from("dup");
            let header = Header::new(names);
            assert_eq!(header.position("dup"), Some(width - 1));
            assert_eq!(header.position("c1"), Some(1));
            assert_eq!(header.position(&format!("c{}", width - 2)), Some(width - 2));
            assert_eq!(header.position("nope"), None);
        }
    }
}
