use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

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
            // Columns are characters; the terminal lays them out by display
            // width (an emoji takes two columns, a combining mark none).
            let before: String = shown.chars().take(caret_at).collect();
            let under: String = shown
                .chars()
                .skip(caret_at)
                .take(loc.width as usize)
                .collect();
            let indent = " ".repeat(before.width());
            let carets = "^".repeat(under.width().max(1));
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

/// Display columns of a source line shown under a diagnostic. A line can be
/// megabytes long (a minified file, a hostile one); the reader needs the
/// place, not the whole line.
const SNIPPET_COLUMNS: usize = 160;

/// Characters shown at most, whatever their width: zero-width ones
/// (combining marks, controls) take no columns but must not be let through
/// by the megabyte either.
const SNIPPET_CHARS: usize = 4 * SNIPPET_COLUMNS;

/// The part of `line` around column `col` that is shown, with `…` where it
/// was cut, and the caret's offset in it. `col` and the offset count
/// characters (1-based and 0-based); the cut is by display width, so a line
/// of emoji is not shown twice as wide as one of letters.
fn clip(line: &str, col: u32) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    let col = (col.saturating_sub(1) as usize).min(chars.len());
    if chars.len() <= SNIPPET_CHARS && line.width() <= SNIPPET_COLUMNS {
        return (line.to_owned(), col);
    }
    let width = |i: usize| chars[i].width().unwrap_or(0);
    // A quarter of the room before the caret, the rest after.
    let mut start = col;
    let mut room = SNIPPET_COLUMNS / 4;
    while start > 0 && col - start < SNIPPET_CHARS / 4 && width(start - 1) <= room {
        start -= 1;
        room -= width(start);
    }
    // Not between a letter and its combining marks, when that is near.
    let mut back = start;
    while back > 0 && start - back < 8 && width(back) == 0 {
        back -= 1;
    }
    if width(back) > 0 || back == 0 {
        start = back;
    }
    let mut end = start;
    let mut room = SNIPPET_COLUMNS;
    while end < chars.len() && end - start < SNIPPET_CHARS && (width(end) <= room || end < col) {
        room = room.saturating_sub(width(end));
        end += 1;
    }
    let mut ahead = end;
    while ahead < chars.len() && ahead - end < 8 && width(ahead) == 0 {
        ahead += 1;
    }
    end = ahead;
    let mut shown = String::new();
    if start > 0 {
        shown.push('…');
    }
    shown.extend(&chars[start..end]);
    if end < chars.len() {
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
        assert!(shown.chars().count() <= super::SNIPPET_COLUMNS + 2);
        assert_eq!(shown.chars().skip(at).take(3).collect::<String>(), "ERR");
        assert!(shown.starts_with('…') && shown.ends_with('…'));
    }

    #[test]
    fn short_lines_are_whole() {
        assert_eq!(clip("a: b", 4), ("a: b".to_owned(), 3));
    }

    #[test]
    fn long_lines_are_cut_by_display_width() {
        use unicode_width::UnicodeWidthStr;
        let line = format!("{}ERR{}", "🎉".repeat(3000), "Chào ".repeat(1000));
        let (shown, at) = clip(&line, 3001);
        assert!(
            shown.width() <= super::SNIPPET_COLUMNS + 2,
            "{}",
            shown.width()
        );
        assert_eq!(shown.chars().skip(at).take(3).collect::<String>(), "ERR");
        // Combining marks stay with their letter.
        let line = format!("{}ERR{}", "a\u{300}".repeat(3000), "e\u{301}".repeat(3000));
        let (shown, at) = clip(&line, 6001);
        assert_eq!(shown.chars().skip(at).take(3).collect::<String>(), "ERR");
        assert!(shown.starts_with("…a"), "{shown}");
        assert!(shown.ends_with("\u{301}…"), "{shown}");
        // Characters without width are bounded too.
        let line = format!(
            "{}ERR{}",
            "\u{300}".repeat(100_000),
            "\u{200b}".repeat(100_000)
        );
        let (shown, at) = clip(&line, 100_001);
        // The cap, a few combining marks kept with their letter, two `…`.
        assert!(shown.chars().count() <= super::SNIPPET_CHARS + 10);
        assert_eq!(shown.chars().skip(at).take(3).collect::<String>(), "ERR");
    }
}
