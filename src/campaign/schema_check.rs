//! Runs the JSON Schema over a parsed YAML document and maps every error's
//! JSON pointer back to a line and column.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};

use super::yaml::{Document, Spans};
use crate::diagnostic::{suggest, Diagnostic, Location, SourceText};

pub enum Which {
    Campaign,
    Project,
}

struct Compiled {
    validator: Validator,
    known_keys: BTreeSet<String>,
}

fn compiled(which: &Which) -> Option<&'static Compiled> {
    static CAMPAIGN: OnceLock<Option<Compiled>> = OnceLock::new();
    static PROJECT: OnceLock<Option<Compiled>> = OnceLock::new();
    let (cell, schema): (_, fn() -> serde_json::Value) = match which {
        Which::Campaign => (&CAMPAIGN, super::model::campaign_schema),
        Which::Project => (&PROJECT, super::model::project_schema),
    };
    cell.get_or_init(|| {
        let schema = schema();
        let mut known_keys = BTreeSet::new();
        collect_property_names(&schema, &mut known_keys);
        // Our patterns are plain ASCII: the `regex` engine suffices.
        let validator = jsonschema::options()
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&schema)
            .ok()?;
        Some(Compiled {
            validator,
            known_keys,
        })
    })
    .as_ref()
}

fn collect_property_names(schema: &serde_json::Value, out: &mut BTreeSet<String>) {
    match schema {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            for v in map.values() {
                collect_property_names(v, out);
            }
        }
        serde_json::Value::Array(items) => {
            items.iter().for_each(|v| collect_property_names(v, out))
        }
        _ => {}
    }
}

/// `/audience/from/0/csv` → `audience.from[0].csv`.
pub fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    if out.is_empty() {
        "the file".into()
    } else {
        format!("`{out}`")
    }
}

pub fn check(which: Which, doc: &Document, source: &Arc<SourceText>) -> Vec<Diagnostic> {
    let Some(compiled) = compiled(&which) else {
        return vec![Diagnostic::error(
            "internal",
            "the built-in JSON Schema does not compile",
        )];
    };
    let mut out = Vec::new();
    for error in compiled.validator.iter_errors(&doc.value) {
        describe(&error, compiled, &doc.spans, source, &mut out);
    }
    out
}

fn at_value(spans: &Spans, source: &SourceText, pointer: &str) -> Option<Location> {
    spans
        .value(pointer)
        .map(|s| Location::in_source(source, s.start, s.width))
}

fn at_key(spans: &Spans, source: &SourceText, pointer: &str) -> Option<Location> {
    spans
        .key(pointer)
        .map(|s| Location::in_source(source, s.start, s.width))
}

fn type_name(kind: &TypeKind) -> String {
    match kind {
        TypeKind::Single(t) => article(&t.to_string()),
        TypeKind::Multiple(set) => {
            let names: Vec<String> = set
                .iter()
                .filter(|t| t.to_string() != "null")
                .map(|t| article(&t.to_string()))
                .collect();
            names.join(" or ")
        }
    }
}

fn article(t: &str) -> String {
    match t {
        "object" => "a mapping".into(),
        "array" => "a list".into(),
        "integer" => "a whole number".into(),
        "null" => "nothing".into(),
        other => format!("a {other}"),
    }
}

fn found(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "nothing (null)",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(n) if n.is_f64() => "a number with a fraction",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

fn describe(
    error: &ValidationError<'_>,
    compiled: &Compiled,
    spans: &Spans,
    source: &Arc<SourceText>,
    out: &mut Vec<Diagnostic>,
) {
    let pointer = error.instance_path.as_str().to_owned();
    let here = at_value(spans, source, &pointer);
    let with = |d: Diagnostic, loc: Option<Location>| match loc {
        Some(l) => d.at(l),
        None => d.at(Location::file(&source.path)),
    };
    match &error.kind {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            for key in unexpected {
                let key_pointer = format!("{pointer}/{}", super::yaml::pointer_segment(key));
                let mut d = Diagnostic::error(
                    "unknown-key",
                    format!("unknown key `{key}` in {}", dotted(&pointer)),
                );
                d = match suggest(key, compiled.known_keys.iter().map(String::as_str)) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(
                        "remove it; `smax-campaign schema` prints every key this file may hold",
                    ),
                };
                out.push(with(d, at_key(spans, source, &key_pointer)));
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let d = Diagnostic::error(
                "missing-key",
                format!("missing required key `{name}` in {}", dotted(&pointer)),
            );
            out.push(with(d, here));
        }
        ValidationErrorKind::Type { kind } => {
            let mut d = Diagnostic::error(
                "wrong-type",
                format!(
                    "{} must be {}, found {}",
                    dotted(&pointer),
                    type_name(kind),
                    found(error.instance.as_ref())
                ),
            );
            if matches!(kind, TypeKind::Single(t) if t.to_string() == "string")
                && matches!(
                    error.instance.as_ref(),
                    serde_json::Value::Number(_) | serde_json::Value::Bool(_)
                )
            {
                d = d.help("put the value in quotes so it stays exactly as written, e.g. \"10\"");
            }
            out.push(with(d, here));
        }
        ValidationErrorKind::Enum { options } => {
            let choices: Vec<&str> = options
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            let mut d = Diagnostic::error(
                "invalid-value",
                format!(
                    "{} must be one of: {}",
                    dotted(&pointer),
                    choices.join(", ")
                ),
            );
            if let Some(s) = error
                .instance
                .as_str()
                .and_then(|v| suggest(v, choices.iter().copied()))
            {
                d = d.help(format!("did you mean `{s}`?"));
            }
            out.push(with(d, here));
        }
        ValidationErrorKind::Pattern { pattern } => {
            let d = if pointer == "/name" {
                Diagnostic::error("invalid-name", "the campaign name may hold only lowercase letters, digits, `-` and `_`, and starts with a letter or digit")
                    .help("e.g. `black-friday-2026`")
            } else {
                Diagnostic::error(
                    "invalid-value",
                    format!(
                        "{} does not have the expected form (pattern `{pattern}`)",
                        dotted(&pointer)
                    ),
                )
            };
            out.push(with(d, here));
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            // Pick the alternative the author most likely meant: the one whose
            // errors are not a mere type mismatch at this very place.
            let meant = context.iter().find(|branch| {
                !branch.iter().all(|e| {
                    matches!(e.kind, ValidationErrorKind::Type { .. })
                        && e.instance_path.as_str() == pointer
                })
            });
            match meant {
                Some(branch) => branch
                    .iter()
                    .for_each(|e| describe(e, compiled, spans, source, out)),
                None => {
                    let expected: Vec<String> = context
                        .iter()
                        .flatten()
                        .filter_map(|e| match &e.kind {
                            ValidationErrorKind::Type { kind } => Some(type_name(kind)),
                            _ => None,
                        })
                        .collect();
                    let d = Diagnostic::error(
                        "wrong-type",
                        format!(
                            "{} must be {}, found {}",
                            dotted(&pointer),
                            expected.join(" or "),
                            found(error.instance.as_ref())
                        ),
                    );
                    out.push(with(d, here));
                }
            }
        }
        _ => {
            let d = Diagnostic::error("schema", format!("{}: {error}", dotted(&pointer)));
            out.push(with(d, here));
        }
    }
}
