//! Compiled templates of one campaign, named by where they sit in the file.

use std::collections::HashSet;
use std::ops::Range;

use minijinja::{Environment, UndefinedBehavior, Value};

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

#[derive(Debug, Clone)]
pub struct TemplateError {
    /// The template's name: the JSON pointer of its field in the campaign file.
    pub name: String,
    pub message: String,
    /// Byte range inside the template source, when the engine knows it.
    pub range: Option<Range<usize>>,
}

pub struct TemplateSet {
    env: Environment<'static>,
}

impl std::fmt::Debug for TemplateSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateSet").finish_non_exhaustive()
    }
}

fn new_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
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
        template
            .render(ctx)
            .map_err(|e| template_error(name, &e, shift, usize::MAX))
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
        self.undeclared(name)
            .iter()
            .any(|v| !matches!(v.as_str(), "vars" | "campaign"))
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
    TemplateError {
        name: name.to_owned(),
        message,
        range,
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
