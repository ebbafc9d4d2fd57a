use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};

use super::{Diagnostic, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiagnosticFormat {
    Text,
    Json,
    Github,
}

/// Renders diagnostics. Text carries ANSI styles; the caller's stream
/// (anstream) strips them when colour is off.
pub fn render(diagnostics: &[Diagnostic], format: DiagnosticFormat) -> String {
    match format {
        DiagnosticFormat::Text => diagnostics.iter().map(text).collect(),
        DiagnosticFormat::Json => json(diagnostics),
        DiagnosticFormat::Github => diagnostics.iter().map(github).collect(),
    }
}

const BOLD: Style = Style::new().bold();
const BLUE: Style = AnsiColor::Blue.on_default().bold();

fn text(d: &Diagnostic) -> String {
    let (label, style) = match d.severity {
        Severity::Error => ("error", AnsiColor::Red.on_default().bold()),
        Severity::Warning => ("warning", AnsiColor::Yellow.on_default().bold()),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{style}{label}[{code}]{style:#}{BOLD}: {msg}{BOLD:#}",
        code = d.code,
        msg = d.message
    );
    if let Some(loc) = &d.location {
        let file = loc.file.display();
        match loc.position {
            Some(p) if loc.is_data_row => {
                let _ = writeln!(out, "  {BLUE}-->{BLUE:#} {file}:{} (row)", p.line);
            }
            Some(p) => {
                let _ = writeln!(out, "  {BLUE}-->{BLUE:#} {file}:{}:{}", p.line, p.col);
            }
            None => {
                let _ = writeln!(out, "  {BLUE}-->{BLUE:#} {file}");
            }
        }
        if let (Some(p), Some(snippet)) = (loc.position, &loc.snippet) {
            let number = p.line.to_string();
            let pad = " ".repeat(number.len());
            let (shown, caret_at) = clip(&snippet.replace('\t', " "), p.col);
            let indent = " ".repeat(caret_at);
            let available = shown.chars().count().saturating_sub(caret_at).max(1);
            let carets = "^".repeat((loc.width as usize).clamp(1, available));
            let _ = writeln!(out, "{pad} {BLUE}|{BLUE:#}");
            let _ = writeln!(out, "{BLUE}{number} |{BLUE:#} {shown}");
            let _ = writeln!(
                out,
                "{pad} {BLUE}|{BLUE:#} {indent}{style}{carets}{style:#}"
            );
        }
    }
    if let Some(help) = &d.help {
        let _ = writeln!(out, "  {BLUE}={BLUE:#} {BOLD}help{BOLD:#}: {help}");
    }
    out.push('\n');
    out
}

/// Characters of a source line shown under a diagnostic. A line can be
/// megabytes long (a minified file, a hostile one); the reader needs the
/// place, not the whole line.
const SNIPPET_CHARS: usize = 160;

/// The part of `line` around column `col` (1-based) that is shown, with `…`
/// where it was cut, and the caret's offset in it.
fn clip(line: &str, col: u32) -> (String, usize) {
    let count = line.chars().count();
    let col = (col.saturating_sub(1) as usize).min(count);
    if count <= SNIPPET_CHARS {
        return (line.to_owned(), col);
    }
    let start = col.saturating_sub(SNIPPET_CHARS / 4);
    let end = (start + SNIPPET_CHARS).min(count);
    let mut shown = String::new();
    if start > 0 {
        shown.push('…');
    }
    shown.extend(line.chars().skip(start).take(end - start));
    if end < count {
        shown.push('…');
    }
    (shown, col - start + usize::from(start > 0))
}

fn json(diagnostics: &[Diagnostic]) -> String {
    let list: Vec<serde_json::Value> = diagnostics
        .iter()
        .map(|d| {
            let mut obj = serde_json::Map::new();
            obj.insert("severity".into(), serde_json::json!(d.severity));
            obj.insert("code".into(), d.code.into());
            obj.insert("message".into(), d.message.clone().into());
            if let Some(loc) = &d.location {
                obj.insert("file".into(), loc.file.display().to_string().into());
                if let Some(p) = loc.position {
                    obj.insert("line".into(), p.line.into());
                    if !loc.is_data_row {
                        obj.insert("column".into(), p.col.into());
                    }
                }
            }
            if let Some(help) = &d.help {
                obj.insert("help".into(), help.clone().into());
            }
            serde_json::Value::Object(obj)
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

/// GitHub workflow command: `::error file=…,line=…,col=…,title=…::message`.
fn github(d: &Diagnostic) -> String {
    let kind = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut props = Vec::new();
    if let Some(loc) = &d.location {
        props.push(format!(
            "file={}",
            escape_property(&loc.file.display().to_string())
        ));
        if let Some(p) = loc.position {
            props.push(format!("line={}", p.line));
            if !loc.is_data_row {
                props.push(format!("col={}", p.col));
            }
        }
    }
    props.push(format!("title={}", escape_property(d.code)));
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    format!("::{kind} {}::{}\n", props.join(","), escape_data(&message))
}

/// GitHub's escaping of an annotation's message (the scrubber registers a
/// secret in this form too, so an escaped one is still caught).
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn long_lines_are_cut_around_the_caret() {
        let line = format!("{}ERR{}", "a".repeat(5000), "b".repeat(5000));
        let (shown, at) = clip(&line, 5001);
        assert!(shown.chars().count() <= super::SNIPPET_CHARS + 2);
        assert_eq!(shown.chars().skip(at).take(3).collect::<String>(), "ERR");
        assert!(shown.starts_with('…') && shown.ends_with('…'));
    }

    #[test]
    fn short_lines_are_whole() {
        assert_eq!(clip("a: b", 4), ("a: b".to_owned(), 3));
    }
}
