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

/// A problem the schema found, and the JSON pointer of the node it is
/// about (for a missing key: where the key would be).
#[derive(Debug)]
pub struct Finding {
    pub diagnostic: Diagnostic,
    pub pointer: String,
}

pub fn check(which: Which, doc: &Document, source: &Arc<SourceText>) -> Vec<Finding> {
    let Some(compiled) = compiled(&which) else {
        return vec![Finding {
            diagnostic: Diagnostic::error("internal", "the built-in JSON Schema does not compile"),
            pointer: String::new(),
        }];
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
    out: &mut Vec<Finding>,
) {
    let pointer = error.instance_path.as_str().to_owned();
    let here = at_value(spans, source, &pointer);
    let with = |d: Diagnostic, loc: Option<Location>| match loc {
        Some(l) => d.at(l),
        None => d.at(Location::file(&source.path)),
    };
    let finding = |diagnostic: Diagnostic, pointer: &str| Finding {
        diagnostic,
        pointer: pointer.to_owned(),
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
                out.push(finding(
                    with(d, at_key(spans, source, &key_pointer)),
                    &key_pointer,
                ));
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            let d = Diagnostic::error(
                "missing-key",
                format!("missing required key `{name}` in {}", dotted(&pointer)),
            );
            let missing = format!("{pointer}/{}", super::yaml::pointer_segment(name));
            out.push(finding(with(d, here), &missing));
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
            out.push(finding(with(d, here), &pointer));
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
            out.push(finding(with(d, here), &pointer));
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
            out.push(finding(with(d, here), &pointer));
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
                    out.push(finding(with(d, here), &pointer));
                }
            }
        }
        _ => {
            let d = Diagnostic::error("schema", format!("{}: {error}", dotted(&pointer)));
            out.push(finding(with(d, here), &pointer));
        }
    }
}

/// Stand-ins for the keys a campaign must have, put in when the key is
/// missing or was taken out by [`salvage_campaign`]; the meaning checks skip
/// whatever reads them (`check::Masked`).
fn campaign_stand_in(key: &str) -> Option<serde_json::Value> {
    Some(match key {
        "version" => serde_json::json!(1),
        "name" => serde_json::json!("-"),
        "bot" => serde_json::json!("-"),
        "audience" => serde_json::json!({ "from": [] }),
        "recipient" | "message" => serde_json::json!({}),
        _ => return None,
    })
}

const REQUIRED_CAMPAIGN_KEYS: [&str; 6] =
    ["version", "name", "bot", "audience", "recipient", "message"];

/// The campaign a file with schema errors would be without the parts the
/// errors are about (`pointers`), so that the rest of it can still be checked
/// for meaning. Returns it with the pointers of what was taken out.
///
/// Each part is taken out as the mapping member it is (a list item takes its
/// list: removing it would renumber its siblings); when that does not yet
/// give a campaign (a required key inside it is gone), the member above it
/// goes instead, up to the top-level keys, which get stand-ins. None when
/// nothing is left to check (the file is not a mapping).
pub fn salvage_campaign(
    value: &serde_json::Value,
    pointers: &[String],
) -> Option<(super::model::CampaignFile, Vec<String>)> {
    value.as_object()?;
    let mut targets = outermost(
        pointers
            .iter()
            .map(|p| member_at_or_above(value, &segments(p)))
            .filter(|t| !t.is_empty())
            .collect(),
    );
    loop {
        if let Some(campaign) = without(value, &targets) {
            return Some((campaign, targets.iter().map(|t| pointer_of(t)).collect()));
        }
        // Raise one part at a time first, so that one part that needs it
        // does not take the others' surroundings with it. Each raised part is
        // tried once: many errors under one key all raise to that key, and
        // trying it for each of them made a large file take minutes.
        let mut tried_raises = std::collections::HashSet::new();
        for i in 0..targets.len() {
            let up = raised(value, &targets[i]);
            if up == targets[i] || !tried_raises.insert(up.clone()) {
                continue;
            }
            let mut tried = targets.clone();
            tried[i] = up;
            let tried = outermost(tried);
            if let Some(campaign) = without(value, &tried) {
                return Some((campaign, tried.iter().map(|t| pointer_of(t)).collect()));
            }
        }
        let all = outermost(targets.iter().map(|t| raised(value, t)).collect());
        if all == targets {
            return None;
        }
        targets = all;
    }
}

/// The targets without repeats and without any that lies inside another
/// (removing the outer one removes it too).
fn outermost(mut targets: Vec<Vec<String>>) -> Vec<Vec<String>> {
    // Sorted, every path directly follows the paths it lies inside.
    targets.sort();
    targets.dedup();
    let mut kept: Vec<Vec<String>> = Vec::with_capacity(targets.len());
    for t in targets {
        if kept.last().is_some_and(|outer| t.starts_with(outer)) {
            continue;
        }
        kept.push(t);
    }
    kept
}

/// `value` without the members at `targets`, stand-ins for missing required
/// keys, as a campaign (if it then is one).
fn without(
    value: &serde_json::Value,
    targets: &[Vec<String>],
) -> Option<super::model::CampaignFile> {
    let mut pruned = value.clone();
    for target in targets {
        remove(&mut pruned, target);
    }
    let map = pruned.as_object_mut()?;
    for key in REQUIRED_CAMPAIGN_KEYS {
        if !map.contains_key(key) {
            map.insert(key.to_owned(), campaign_stand_in(key)?);
        }
    }
    serde_json::from_value(pruned).ok()
}

/// A JSON pointer's segments, unescaped.
fn segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn pointer_of(segments: &[String]) -> String {
    segments
        .iter()
        .map(|s| format!("/{}", super::yaml::pointer_segment(s)))
        .collect()
}

/// The longest prefix of `path` that ends in a member of a mapping (a key
/// that need not exist: a missing one is taken out as a no-op).
fn member_at_or_above(value: &serde_json::Value, path: &[String]) -> Vec<String> {
    let mut node = Some(value);
    let mut best = 0;
    for (i, segment) in path.iter().enumerate() {
        match node {
            Some(serde_json::Value::Object(map)) => {
                best = i + 1;
                node = map.get(segment);
            }
            Some(serde_json::Value::Array(items)) => {
                node = segment.parse::<usize>().ok().and_then(|n| items.get(n));
            }
            _ => break,
        }
    }
    path[..best].to_vec()
}

/// The member above `target` (a top-level key stays where it is).
fn raised(value: &serde_json::Value, target: &[String]) -> Vec<String> {
    if target.len() <= 1 {
        return target.to_vec();
    }
    member_at_or_above(value, &target[..target.len() - 1])
}

fn remove(value: &mut serde_json::Value, target: &[String]) {
    let Some((last, parents)) = target.split_last() else {
        return;
    };
    let mut node = value;
    for segment in parents {
        let next = match node {
            serde_json::Value::Object(map) => map.get_mut(segment),
            serde_json::Value::Array(items) => {
                segment.parse::<usize>().ok().and_then(|n| items.get_mut(n))
            }
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    if let serde_json::Value::Object(map) = node {
        map.shift_remove(last);
    }
}

#[cfg(test)]
mod tests {
    use crate::campaign::{load_campaign, Project};

    /// The codes `load_campaign` reports for a campaign whose `message:`
    /// and the rest are `body` (an inline v2 bot unless `body` sets one).
    fn codes(body: &str) -> Vec<&'static str> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.csv"), "id,first_name\n1,An\n").expect("write");
        let path = dir.path().join("c.yaml");
        let bot = if body.contains("bot:") {
            ""
        } else {
            "bot: { id: b, token_env: T }\n"
        };
        std::fs::write(&path, format!("version: 1\nname: c\n{bot}{body}")).expect("write");
        let (campaign, diagnostics) = load_campaign(&path, &Project::none(dir.path().into()));
        assert!(campaign.is_none());
        diagnostics.iter().map(|d| d.code).collect()
    }

    const AUDIENCE: &str = "audience: { from: [ { csv: a.csv } ] }\n";
    const RECIPIENT: &str = "recipient: { customer_id: \"{{ id }}\" }\n";

    #[test]
    fn meaning_errors_are_reported_beside_schema_errors_once_each() {
        // A bad tag is not also "no tag"; the typo elsewhere is still found.
        assert_eq!(
            codes(&format!("{AUDIENCE}{RECIPIENT}message: {{ tag: ACOUNT_UPDATE, text: \"{{{{ frist_name }}}}\" }}\n")),
            ["invalid-value", "unknown-template-variable"]
        );
        // A missing recipient is not also "no identifier".
        assert_eq!(
            codes(&format!(
                "{AUDIENCE}message: {{ tag: ACCOUNT_UPDATE, text: \"{{{{ frist_name }}}}\" }}\n"
            )),
            ["missing-key", "unknown-template-variable"]
        );
        // A bad bot leaves the API version unknown: no version-fit errors.
        assert_eq!(
            codes(&format!("bot: {{ id: b, token_env: T, api: v9 }}\n{AUDIENCE}recipient: {{ user_id: \"{{{{ id }}}}\" }}\nmessage: {{ tag: ACCOUNT_UPDATE, block_name: \"{{{{ nmae }}}}\" }}\n")),
            ["invalid-value", "unknown-template-variable"]
        );
        // A broken source takes its list with it, and the rest is checked.
        assert_eq!(
            codes(&format!("audience: {{ from: [ 5 ] }}\n{RECIPIENT}message: {{ tag: ACCOUNT_UPDATE, text: \"{{% if %}}\" }}\nschedule: {{ cron: \"* * *\" }}\n")),
            ["wrong-type", "template-syntax", "invalid-cron"]
        );
        // A bad window leaves the cron to check; a bad `at` leaves nothing.
        assert_eq!(
            codes(&format!("{AUDIENCE}{RECIPIENT}message: {{ tag: ACCOUNT_UPDATE, text: x }}\nschedule: {{ cron: \"* * *\", window: \"8-21\" }}\n")),
            ["invalid-value", "invalid-cron"]
        );
        assert_eq!(
            codes(&format!("{AUDIENCE}{RECIPIENT}message: {{ tag: ACCOUNT_UPDATE, text: x }}\nschedule: {{ at: 5 }}\n")),
            ["wrong-type"]
        );
        // A literal token is said once, and does not hide the rest either.
        assert_eq!(
            codes(&format!("{AUDIENCE}{RECIPIENT}message: {{ tag: ACCOUNT_UPDATE, text: \"{{{{ frist_name }}}}\", token: abc }}\n")),
            ["literal-token", "unknown-template-variable"]
        );
    }

    #[test]
    fn a_file_that_is_not_a_mapping_has_nothing_to_salvage() {
        let value = serde_json::json!(["a", "b"]);
        assert!(super::salvage_campaign(&value, &[String::new()]).is_none());
    }
}
