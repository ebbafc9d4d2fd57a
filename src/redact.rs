//! Secrets never leave the process: every byte the tool writes (stdout,
//! stderr, logs, reports, requests files, the step summary, the state store)
//! passes through [`scrub`] or a [`Scrubbed`] writer, which replace every
//! registered secret with `***`.
//!
//! Secrets are registered when the files that name them are loaded: the value
//! of every bot's `token_env` variable and the contents of every `token_file`
//! (whether or not the command will ever send), and any password in an API or
//! state URL. So a token that reaches an output by a path nobody foresaw (a
//! CSV header that holds it, a platform error that echoes it) is still
//! scrubbed. Tokens are also kept out of messages by construction; this is
//! the layer that does not depend on every call site being right.

use std::borrow::Cow;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::RwLock;

/// Secrets shorter than this are not scrubbed: replacing "abc" would garble
/// every message, and a token that short is not a secret anyway.
const MIN_SECRET_LEN: usize = 6;

/// Largest file read as a `token_file`.
const MAX_TOKEN_FILE_BYTES: u64 = 64 << 10;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

fn add(list: &mut Vec<String>, form: String) {
    if form.len() >= MIN_SECRET_LEN && !list.contains(&form) {
        list.push(form);
    }
}

/// Registers a secret to scrub from all output, with the forms it takes in
/// a URL query (percent-encoded) and in a JSON string.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    if let Ok(mut list) = SECRETS.write() {
        add(&mut list, secret.to_owned());
        add(&mut list, crate::api::wire::encode(secret).to_string());
        if let Ok(json) = serde_json::to_string(secret) {
            add(&mut list, json.trim_matches('"').to_owned());
        }
        // As escaped by the writers that escape before writing: GitHub
        // annotations and markdown table cells.
        add(&mut list, crate::diagnostic::render::escape_data(secret));
        add(
            &mut list,
            crate::diagnostic::render::escape_property(secret),
        );
        add(&mut list, crate::human::md_cell(secret));
        // Longest first, so a secret that contains another is replaced whole.
        list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Registers the value of the environment variable `var`, if set.
pub fn register_env(var: &str) {
    if let Ok(value) = std::env::var(var) {
        register(&value);
    }
}

/// Reads a token file, at most 64 KiB of it: a token is a line, and the
/// path comes from a file a pull request can change.
pub fn read_secret_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_TOKEN_FILE_BYTES)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Registers the contents of a token file (a file that cannot be read is
/// reported where the token is needed, not here).
pub fn register_file(path: &Path) {
    if let Ok(text) = read_secret_file(path) {
        register(&text);
    }
}

/// The passwords a connection URL or keyword string carries, as written: the user
/// part's (`postgres://user:PASSWORD@host/db`, `http://user:PASSWORD@proxy`) and every
/// `password=` / `sslpassword=` value (`?password=PASSWORD`, `host=db password=PASSWORD`).
fn passwords_in(url: &str) -> Vec<String> {
    let mut passwords: Vec<String> = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
        .into_iter()
        .collect();
    let lower = url.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("password=") {
        let value = from + at + "password=".len();
        let end = url[value..]
            .find(['&', ' '])
            .map_or(url.len(), |n| value + n);
        passwords.push(url[value..end].to_owned());
        from = end;
    }
    passwords.retain(|p| !p.is_empty());
    passwords
}

/// Registers every password of a URL or keyword string (see [`passwords_in`]).
pub fn register_url_password(url: &str) {
    for password in passwords_in(url) {
        // As written (percent-encoded) and as a person would type it.
        register(&password);
        register(&percent_encoding::percent_decode_str(&password).decode_utf8_lossy());
    }
}

/// The longest registered secret, in bytes (0 with none).
fn longest() -> usize {
    SECRETS
        .read()
        .map(|l| l.first().map_or(0, String::len))
        .unwrap_or(0)
}

/// Makes panics, which bypass every writer, print through the scrubber too
/// (a panic message can quote the string it failed on).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let text = format!("smax-campaign stopped on an internal error (a bug): {info}\n");
        let _ = std::io::stderr().write_all(scrub(&text).as_bytes());
    }));
}

/// `text` with every registered secret replaced by `***`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Ok(list) = SECRETS.read() else {
        return Cow::Borrowed(text);
    };
    if !list.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for s in list.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    Cow::Owned(out)
}

/// A file written through the scrubber. Buffered on both sides: serializers
/// make many tiny writes (the outer buffer gathers them, so the scrubber sees
/// few large ones), and the scrubber passes on a line at a time (the inner
/// buffer gathers those into few system calls).
pub type ScrubbedFile = BufWriter<Scrubbed<BufWriter<std::fs::File>>>;

/// Creates (truncates) `path` for writing through the scrubber.
pub fn create_file(path: &Path) -> std::io::Result<ScrubbedFile> {
    let file = std::fs::File::create(path)?;
    Ok(BufWriter::with_capacity(
        1 << 16,
        Scrubbed::new(BufWriter::with_capacity(1 << 16, file)),
    ))
}

/// Writes `text` to `path` (created or truncated) through the scrubber.
pub fn write_file(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = create_file(path)?;
    file.write_all(text.as_bytes())?;
    file.flush()
}

/// Appends `text` to `path` (created if missing) through the scrubber.
pub fn append_file(path: &Path, text: &str) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut out = Scrubbed::new(file);
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// The terminal progress bars draw on, scrubbing every line they draw: the
/// bars redraw on their own timer, beside the writers above, and show names
/// and counts the campaign controls.
#[derive(Debug)]
pub struct ScrubbedTerm<T>(pub T);

impl ScrubbedTerm<console::Term> {
    pub fn stderr() -> Self {
        ScrubbedTerm(console::Term::stderr())
    }
}

impl<T: indicatif::TermLike> indicatif::TermLike for ScrubbedTerm<T> {
    fn width(&self) -> u16 {
        self.0.width()
    }
    fn height(&self) -> u16 {
        self.0.height()
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_up(n)
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_down(n)
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_right(n)
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.0.move_cursor_left(n)
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.0.write_line(&scrub(s))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.0.write_str(&scrub(s))
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.0.clear_line()
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A writer that scrubs what passes through it, whatever the size and
/// boundaries of the writes: a secret split across two `write` calls (by
/// `write!`'s pieces, or a buffer's edge) is still caught, because the last
/// bytes that could begin a secret are held back until more arrives or the
/// writer is flushed.
pub struct Scrubbed<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

/// Pending bytes beyond this are passed on even without a line end.
const HOLD_LIMIT: usize = 64 << 10;

impl<W: Write> Scrubbed<W> {
    pub fn new(inner: W) -> Self {
        Scrubbed {
            inner,
            pending: Vec::new(),
        }
    }

    /// The writer underneath (bytes still held back are not in it yet).
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Scrubs and writes `pending[..upto]`, keeping the rest.
    fn emit(&mut self, upto: usize) -> std::io::Result<()> {
        let rest = self.pending.split_off(upto);
        let head = std::mem::replace(&mut self.pending, rest);
        let text = String::from_utf8_lossy(&head);
        self.inner.write_all(scrub(&text).as_bytes())
    }

    /// Writes whatever is safe to write: whole lines, or (for a long line)
    /// all but a tail that might be the start of a secret. `fresh` is where
    /// the bytes of this write begin: only they can hold a new line end, so
    /// each byte is scanned once however small the writes.
    fn drain(&mut self, fresh: usize) -> std::io::Result<()> {
        if let Some(i) = self.pending[fresh..].iter().rposition(|&b| b == b'\n') {
            self.emit(fresh + i + 1)?;
        }
        // Twice the longest secret at least: what stays behind is shorter than
        // one, so each pass moves at least as much as it keeps (linear time).
        let longest = longest();
        if self.pending.len() > HOLD_LIMIT.max(2 * longest) {
            // A write may end inside a UTF-8 sequence: keep those bytes raw.
            let complete = match std::str::from_utf8(&self.pending) {
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                _ => self.pending.len(),
            };
            let incomplete = self.pending.split_off(complete);
            // Scrubbed, the text holds no whole secret; an incomplete one can
            // only be its last `longest - 1` bytes, which stay behind.
            let clean = scrub(&String::from_utf8_lossy(&self.pending)).into_owned();
            let mut cut = clean.len().saturating_sub(longest.saturating_sub(1));
            while !clean.is_char_boundary(cut) {
                cut -= 1;
            }
            self.inner.write_all(&clean.as_bytes()[..cut])?;
            self.pending = clean.as_bytes()[cut..].to_vec();
            self.pending.extend_from_slice(&incomplete);
        }
        Ok(())
    }
}

impl<W: Write> Write for Scrubbed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let fresh = self.pending.len();
        self.pending.extend_from_slice(buf);
        self.drain(fresh)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let all = self.pending.len();
        self.emit(all)?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for Scrubbed<W> {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let _ = self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "redact-test-secret-3f9a";

    fn through_writer(pieces: &[&[u8]]) -> String {
        let mut out = Vec::new();
        {
            let mut w = Scrubbed::new(&mut out);
            for p in pieces {
                w.write_all(p).unwrap();
            }
            w.flush().unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    /// A terminal that keeps what is drawn on it.
    #[derive(Debug, Clone, Default)]
    struct Recording(std::sync::Arc<std::sync::Mutex<String>>);

    impl indicatif::TermLike for Recording {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(&format!("{s}\n"))
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn progress_bars_draw_scrubbed() {
        register(SECRET);
        let term = Recording::default();
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(10),
            indicatif::ProgressDrawTarget::term_like(Box::new(ScrubbedTerm(term.clone()))),
        );
        bar.set_style(indicatif::ProgressStyle::with_template("{prefix} {msg}").unwrap());
        bar.set_prefix(SECRET);
        bar.set_message(format!("sent 3 {SECRET}"));
        bar.finish();
        let drawn = term.0.lock().unwrap().clone();
        assert!(drawn.contains("*** sent 3 ***"), "{drawn}");
        assert!(!drawn.contains(SECRET), "{drawn}");
    }

    #[test]
    fn a_secret_split_across_writes_is_still_scrubbed() {
        register(SECRET);
        let (a, b) = SECRET.split_at(7);
        let text = through_writer(&[b"before ", a.as_bytes(), b.as_bytes(), b" after\n"]);
        assert_eq!(text, "before *** after\n");
    }

    #[test]
    fn a_secret_on_the_edge_of_a_long_line_is_still_scrubbed() {
        register(SECRET);
        let filler = "é".repeat(HOLD_LIMIT / 2 + 3);
        let (a, b) = SECRET.split_at(5);
        let first = format!("{filler}{a}");
        let text = through_writer(&[first.as_bytes(), b.as_bytes(), "ü\n".as_bytes()]);
        assert_eq!(text, format!("{filler}***ü\n"));
    }

    #[test]
    fn encoded_forms_and_url_passwords_are_registered() {
        register("tok/with+plus&amp");
        assert_eq!(
            scrub("q?bot_token=tok%2Fwith%2Bplus%26amp"),
            "q?bot_token=***"
        );
        register_url_password("postgres://app:p%40ss-word-42@127.0.0.1:5432/db");
        assert_eq!(scrub("password p@ss-word-42"), "password ***");
        assert_eq!(scrub("in url p%40ss-word-42"), "in url ***");
    }

    #[test]
    fn escaped_forms_are_registered() {
        register("esc%tok|en-77");
        assert_eq!(scrub("::error::esc%25tok|en-77"), "::error::***");
        assert_eq!(scrub("| esc%tok\\|en-77 |"), "| *** |");
    }

    #[test]
    fn short_values_are_not_secrets() {
        register("abc");
        assert_eq!(scrub("abcabc"), "abcabc");
    }
}
