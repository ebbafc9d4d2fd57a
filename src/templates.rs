//! Compiled templates of one campaign, named by where they sit in the file:
//! what the campaign checks compile and inspect, and what rendering renders.

use std::collections::HashSet;
use std::ops::Range;

use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

/// The name under which the audience's `where` expression is compiled.
pub const WHERE: &str = "/audience/where";
/// The name under which the audience's `key` template is compiled.
pub const KEY: &str = "/audience/key";

/// `where` is an expression; wrapping it in an `if` gives it strict
/// truthiness (an undefined name is an error, not false) and lets it share
/// the template machinery.
const WHERE_PREFIX: &str = "{% if ";
const WHERE_SUFFIX: &str = " %}1{% endif %}";

/// Names every template (and expression) a campaign may hold may read besides
/// the row's own fields.
pub const GLOBALS: [&str; 4] = ["vars", "campaign", "run", "now"];

/// Names the engine itself defines inside templates (loops, macros), which
/// its list of a template's undeclared names can still hold.
const ENGINE_NAMES: [&str; 6] = ["loop", "self", "super", "caller", "varargs", "kwargs"];

#[derive(Debug, Clone)]
pub struct TemplateError {
    /// The template's name: the JSON pointer of its field in the campaign file.
    pub name: String,
    pub message: String,
    /// Byte range inside the template source, when the engine knows it.
    pub range: Option<Range<usize>>,
    /// The render ran out of its work budget or output cap, rather than
    /// failing on the data.
    pub over_budget: bool,
    /// The render failed on an undefined value (a name the row lacks, or a
    /// JSON null).
    pub undefined: bool,
}

pub struct TemplateSet {
    env: Environment<'static>,
}

impl std::fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateSet").finish_non_exhaustive()
    }
}

/// Engine steps one render may take. A message template takes a few dozen;
/// a template can loop, and campaign files come through pull requests, so
/// eight nested loops over a 10-character string must end, not run for hours.
pub const RENDER_FUEL: u64 = 50_000;

/// Bytes one render may write: far above Messenger's 2,000-character text
/// (8 KB of UTF-8 at most), far below memory trouble.
pub const MAX_RENDER_BYTES: usize = 256 << 10;

fn new_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(RENDER_FUEL));
    // `debug()` prints the whole render state, earlier output included:
    // called in a loop its work doubles per call, far inside the fuel.
    env.remove_global("debug");
    env
}

/// Collects a render's output and refuses to grow past [`MAX_RENDER_BYTES`]:
/// the engine then stops with a write error instead of building a string of
/// gigabytes (`{{ "x" * 100000000 }}` in a loop).
struct CappedOutput {
    bytes: Vec<u8>,
    exceeded: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDER_BYTES {
            self.exceeded = true;
            return Err(std::io::Error::other("render output cap"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl TemplateSet {
    /// Compiles every `(name, source)`; returns the set of those that compiled
    /// and an error for each that did not.
    pub fn compile<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> (TemplateSet, Vec<TemplateError>) {
        let mut env = new_env();
        let mut errors = Vec::new();
        for (name, source) in sources {
            let (text, shift) = if name == WHERE {
                (
                    format!("{WHERE_PREFIX}{source}{WHERE_SUFFIX}"),
                    WHERE_PREFIX.len(),
                )
            } else {
                (source.to_owned(), 0)
            };
            if let Err(e) = env.add_template_owned(name.to_owned(), text) {
                errors.push(template_error(name, &e, shift, source.len()));
            }
        }
        (TemplateSet { env }, errors)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.env.get_template(name).is_ok()
    }

    pub fn render(&self, name: &str, ctx: &Value) -> Result<String, TemplateError> {
        let shift = if name == WHERE { WHERE_PREFIX.len() } else { 0 };
        let template = self
            .env
            .get_template(name)
            .map_err(|e| template_error(name, &e, 0, 0))?;
        let mut out = CappedOutput {
            // About one message: most renders then never reallocate.
            bytes: Vec::with_capacity(256),
            exceeded: false,
        };
        // `render_to_write` is deprecated for `render_captured_to`, which clones
        // the template and builds a captured state for every call: 20% of a
        // million-row plan. This writes straight into the capped buffer.
        #[allow(deprecated)]
        let rendered = template.render_to_write(ctx, &mut out);
        match rendered {
            Ok(_) => String::from_utf8(out.bytes).map_err(|_| TemplateError {
                name: name.to_owned(),
                message: "the template wrote text that is not UTF-8".into(),
                range: None,
                over_budget: false,
                undefined: false,
            }),
            Err(_) if out.exceeded => Err(TemplateError {
                name: name.to_owned(),
                message: format!(
                    "template output passed its cap of {} KiB",
                    MAX_RENDER_BYTES >> 10
                ),
                range: None,
                over_budget: true,
                undefined: false,
            }),
            Err(e) => Err(template_error(name, &e, shift, usize::MAX)),
        }
    }

    /// A handle for rendering `name` again and again. Most recipient fields are
    /// a bare `{{ column }}`; for those the handle holds the path to look up,
    /// which skips the engine's per-render setup (state, frames, output) that
    /// otherwise costs several times the lookup itself.
    pub fn handle(&self, name: &str) -> Handle {
        let path = self.env.get_template(name).ok().and_then(|t| {
            let path: Vec<String> = simple_lookup(t.source())?
                .into_iter()
                .map(str::to_owned)
                .collect();
            // Cross-check with the engine's own reading of the template, so a
            // literal (`{{ none }}`) or anything it parses differently keeps
            // the full path.
            let names = t.undeclared_variables(true);
            let same = names.len() == 1 && names.contains(&path.join("."));
            let unescaped = minijinja::default_auto_escape_callback(name) == AutoEscape::None;
            (same && unescaped).then_some(path)
        });
        Handle {
            name: name.to_owned(),
            path,
            slot: None,
        }
    }

    pub fn render_handle(&self, handle: &Handle, ctx: &Value) -> Result<String, TemplateError> {
        if let Some(path) = &handle.path {
            if let Some(s) = lookup_display(ctx, path) {
                return Ok(s);
            }
        }
        // Anything the shortcut does not cover (undefined, a map, a global
        // function...) takes the engine's path, errors included.
        self.render(&handle.name, ctx)
    }

    /// The top-level names a template reads that it does not define itself.
    pub fn undeclared(&self, name: &str) -> HashSet<String> {
        self.env
            .get_template(name)
            .map(|t| t.undeclared_variables(false))
            .unwrap_or_default()
    }

    /// Dotted names read, e.g. `vars.sale_end`.
    pub fn undeclared_nested(&self, name: &str) -> HashSet<String> {
        self.env
            .get_template(name)
            .map(|t| t.undeclared_variables(true))
            .unwrap_or_default()
    }

    /// Whether the template's output can differ between recipients.
    pub fn varies_per_row(&self, name: &str) -> bool {
        self.undeclared(name).iter().any(|v| !self.is_builtin(v))
    }

    /// Whether a name a template reads is provided whatever the row holds:
    /// the campaign's globals (`vars`, `run`, …), the engine's functions
    /// (`range`, `dict`, …) and the names it defines itself (`loop`). Such a
    /// name is never a missing column.
    pub fn is_builtin(&self, name: &str) -> bool {
        GLOBALS.contains(&name)
            || ENGINE_NAMES.contains(&name)
            || self.env.globals().any(|(global, _)| global == name)
    }

    /// The name a render of `name` over `ctx` failed on as undefined: the
    /// first of the template's names, dotted (`address.city`), that `ctx`
    /// does not resolve, preferring one inside the error's `range`.
    pub fn missing_name(
        &self,
        name: &str,
        ctx: &Value,
        range: Option<Range<usize>>,
    ) -> Option<String> {
        let template = self.env.get_template(name).ok()?;
        let source = template.source();
        // Offsets in `range` are the user's, without the `where` wrapper.
        let shift = if name == WHERE { WHERE_PREFIX.len() } else { 0 };
        let user_source = source.get(shift..).unwrap_or(source);
        let mut missing: Vec<(usize, String)> = template
            .undeclared_variables(true)
            .into_iter()
            .filter_map(|dotted| {
                let first = dotted.split('.').next().unwrap_or(&dotted);
                if self.is_builtin(first) && !GLOBALS.contains(&first) {
                    return None;
                }
                let unresolved = unresolved_prefix(ctx, &dotted)?;
                let at = find_name(user_source, &unresolved).unwrap_or(usize::MAX);
                Some((at, unresolved))
            })
            .collect();
        missing.sort();
        missing.dedup();
        let inside = |at: usize| range.as_ref().is_some_and(|r| r.contains(&at));
        missing
            .iter()
            .find(|(at, _)| inside(*at))
            .or_else(|| missing.first())
            .map(|(_, n)| n.clone())
    }
}

/// The shortest prefix of the dotted `path` that `ctx` does not resolve.
fn unresolved_prefix(ctx: &Value, path: &str) -> Option<String> {
    let mut value = ctx.clone();
    let mut resolved: Vec<&str> = Vec::new();
    for segment in path.split('.') {
        resolved.push(segment);
        match value.get_attr(segment) {
            Ok(v) if !v.is_undefined() => value = v,
            _ => return Some(resolved.join(".")),
        }
    }
    None
}

/// The first whole-word occurrence of a dotted name in a template source.
pub(crate) fn find_name(source: &str, name: &str) -> Option<usize> {
    let bytes = source.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    source.match_indices(name).map(|(i, _)| i).find(|&i| {
        let end = i + name.len();
        (i == 0 || !is_ident(bytes[i - 1])) && (end >= bytes.len() || !is_ident(bytes[end]))
    })
}

/// A template to render by [`TemplateSet::render_handle`].
#[derive(Debug, Clone)]
pub struct Handle {
    name: String,
    /// Set when the template is exactly `{{ a }}` or `{{ a.b... }}`.
    path: Option<Vec<String>>,
    /// Where a result rendered ahead of time is kept, if the user of the
    /// handle renders ahead (see `Renderer::prerender`).
    pub(crate) slot: Option<usize>,
}

impl Handle {
    /// Whether rendering goes through the engine (no shortcut).
    pub fn needs_engine(&self) -> bool {
        self.path.is_none()
    }
}

/// `{{ a.b }}` (optionally with `-` whitespace control) → `["a", "b"]`.
fn simple_lookup(source: &str) -> Option<Vec<&str>> {
    let inner = source.strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    let path: Vec<&str> = inner.trim().split('.').collect();
    let ident = |s: &&str| {
        let mut bytes = s.bytes();
        matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    path.iter().all(ident).then_some(path)
}

/// What the engine would print for `{{ a.b }}` when every step is found and
/// the result is a scalar; `None` sends the caller to the engine.
fn lookup_display(ctx: &Value, path: &[String]) -> Option<String> {
    let mut value = ctx.get_attr(path.first()?).ok()?;
    for name in &path[1..] {
        // Fails on undefined, as the engine does in strict mode.
        value = value.get_attr(name).ok()?;
    }
    match value.kind() {
        ValueKind::String => value.as_str().map(str::to_owned),
        // The engine writes these with `Display` when nothing is escaped.
        ValueKind::Number | ValueKind::Bool | ValueKind::None => Some(value.to_string()),
        _ => None,
    }
}

fn template_error(name: &str, e: &minijinja::Error, shift: usize, len: usize) -> TemplateError {
    let range = e.range().map(|r| {
        let start = r.start.saturating_sub(shift).min(len);
        let end = r.end.saturating_sub(shift).min(len).max(start);
        start..end
    });
    let mut message = match e.detail() {
        Some(detail) => format!("{}: {detail}", kind_text(e)),
        None => kind_text(e),
    };
    if e.kind() == minijinja::ErrorKind::UndefinedError && e.detail().is_none() {
        message = "undefined value (a name the row does not have)".into();
    }
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        message = format!("template ran out of its work budget ({RENDER_FUEL} steps)");
        if let Some(line) = e.line() {
            message.push_str(&format!(" at line {line}"));
        }
    }
    TemplateError {
        name: name.to_owned(),
        message,
        range,
        over_budget: e.kind() == minijinja::ErrorKind::OutOfFuel,
        undefined: e.kind() == minijinja::ErrorKind::UndefinedError,
    }
}

fn kind_text(e: &minijinja::Error) -> String {
    use minijinja::ErrorKind as K;
    match e.kind() {
        K::SyntaxError => "syntax error".into(),
        K::UndefinedError => "undefined value".into(),
        K::UnknownFilter => "unknown filter".into(),
        K::UnknownTest => "unknown test".into(),
        K::UnknownFunction => "unknown function".into(),
        K::InvalidOperation => "invalid operation".into(),
        K::BadSerialization => "value cannot be rendered".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(r: Result<String, TemplateError>) -> String {
        match r {
            Ok(s) => format!("ok {s}"),
            Err(e) => format!("err {} {} {:?}", e.name, e.message, e.range),
        }
    }

    #[test]
    fn the_shortcut_renders_what_the_engine_renders() {
        let sources = [
            ("/a", "{{ s }}", true),
            ("/b", "{{s}}", true),
            ("/c", "{{- s -}}", true),
            ("/d", "{{ n }}", true),
            ("/e", "{{ f }}", true),
            ("/f", "{{ yes }}", true),
            ("/g", "{{ nil }}", true),
            ("/h", "{{ m.k }}", true),
            ("/i", "{{ m }}", true),
            ("/j", "{{ missing }}", true),
            ("/k", "{{ m.missing }}", true),
            ("/l", "{{ s.missing }}", true),
            ("/m", "{{ none }}", false),
            ("/n", "{{ true }}", false),
            ("/o", "{{ s }} ", false),
            ("/p", "{{ s|upper }}", false),
            ("/q.html", "{{ s }}", false),
            ("/s", "{{ range }}", true),
            ("/t", "{{ seq }}", true),
        ];
        let (set, errors) = TemplateSet::compile(sources.iter().map(|(n, s, _)| (*n, *s)));
        assert!(errors.is_empty(), "{errors:?}");
        let ctx = Value::from_serialize(serde_json::json!({
            "s": "<a & 'b'>",
            "n": 42,
            "f": 1.5,
            "yes": true,
            "nil": null,
            "m": { "k": "v" },
            "none": "a column named none",
            "true": "a column named true",
            "seq": [1, 2],
        }));
        for (name, _, shortcut) in sources {
            let handle = set.handle(name);
            assert_eq!(!handle.needs_engine(), shortcut, "{name}");
            assert_eq!(
                outcome(set.render_handle(&handle, &ctx)),
                outcome(set.render(name, &ctx)),
                "{name}"
            );
        }
    }

    #[test]
    fn a_missing_template_is_the_same_error_through_a_handle() {
        let (set, _) = TemplateSet::compile([("/a", "{{ s }}")]);
        let handle = set.handle("/nope");
        let ctx = Value::from_serialize(serde_json::json!({ "s": 1 }));
        assert_eq!(
            outcome(set.render_handle(&handle, &ctx)),
            outcome(set.render("/nope", &ctx))
        );
    }

    #[test]
    fn nested_loops_run_out_of_their_work_budget() {
        let source = "{% for a in s %}{% for b in s %}{% for c in s %}{% for d in s %}\n{% for e in s %}{% for f in s %}{% for g in s %}{% for h in s %}x{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}";
        let (set, errors) = TemplateSet::compile([("/message/text", source)]);
        assert!(errors.is_empty());
        let ctx = Value::from_serialize(serde_json::json!({ "s": "0123456789" }));
        let e = set.render("/message/text", &ctx).unwrap_err();
        assert!(e.message.contains("work budget"), "{}", e.message);
        assert!(e.message.contains("at line 2"), "{}", e.message);
    }

    #[test]
    fn output_past_the_cap_is_an_error_not_an_abort() {
        let source = "{% for i in range(30) %}{{ 'x' * 100000000 }}{% endfor %}";
        let (set, errors) = TemplateSet::compile([("/message/text", source)]);
        assert!(errors.is_empty());
        let e = set.render("/message/text", &Value::UNDEFINED).unwrap_err();
        assert!(e.message.contains("output passed its cap"), "{}", e.message);
    }

    #[test]
    fn ordinary_templates_fit_the_budget() {
        let source = "{% for i in range(200) %}{{ i }},{% endfor %}";
        let (set, _) = TemplateSet::compile([("/message/text", source)]);
        assert!(set.render("/message/text", &Value::UNDEFINED).is_ok());
    }

    #[test]
    fn debug_is_not_available_to_campaigns() {
        let source = "{% set ns = namespace(a='') %}{% for i in range(40) %}{% set ns.a = debug() %}{% endfor %}";
        let (set, _) = TemplateSet::compile([("/message/text", source)]);
        let e = set.render("/message/text", &Value::UNDEFINED).unwrap_err();
        assert!(e.message.contains("debug"), "{}", e.message);
    }

    #[test]
    fn builtins_are_not_row_names() {
        let (set, errors) = TemplateSet::compile([(
            "/message/text",
            "{% for i in range(3) %}{{ loop.index }}{{ dict(a=1).a }}{% endfor %}{{ vars.x }}{{ now }}{{ name }}",
        )]);
        assert!(errors.is_empty(), "{errors:?}");
        let mut row_names: Vec<String> = set
            .undeclared("/message/text")
            .into_iter()
            .filter(|n| !set.is_builtin(n))
            .collect();
        row_names.sort();
        assert_eq!(row_names, ["name"]);
        assert!(!set.is_builtin("first_name"));
    }

    #[test]
    fn an_undefined_render_names_the_missing_variable() {
        let (set, _) = TemplateSet::compile([
            (
                "/a",
                "Chào {{ first_name }}, {{ frist_name }} {{ range(2)|length }}",
            ),
            ("/b", "{{ address.city }}"),
            ("/c", "{{ vars.nope }}"),
            (WHERE, "orders > 1 and cty == 'x'"),
        ]);
        let ctx = Value::from_serialize(serde_json::json!({
            "first_name": "An", "address": {"street": "x"}, "orders": 3, "vars": {}
        }));
        let missing = |name: &str| {
            let e = set.render(name, &ctx).expect_err("undefined");
            assert!(e.undefined, "{e:?}");
            set.missing_name(name, &ctx, e.range)
        };
        assert_eq!(missing("/a").as_deref(), Some("frist_name"));
        assert_eq!(missing("/b").as_deref(), Some("address.city"));
        assert_eq!(missing("/c").as_deref(), Some("vars.nope"));
        assert_eq!(missing(WHERE).as_deref(), Some("cty"));
    }
}
