//! A last line of defence for secrets: every byte the CLI prints passes
//! through [`scrub`], which replaces any registered token with `***`.
//! (Tokens are kept out of messages by construction; this catches mistakes.)

use std::borrow::Cow;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret to scrub from all output. Very short values are
/// ignored: scrubbing "a" would garble every message.
pub fn register(secret: &str) {
    if secret.len() < 6 {
        return;
    }
    if let Ok(mut list) = SECRETS.write() {
        if !list.iter().any(|s| s == secret) {
            list.push(secret.to_owned());
            // Also its percent-encoded form, as it appears in V1 URLs.
            let encoded = crate::api::wire::encode(secret).to_string();
            if encoded != secret {
                list.push(encoded);
            }
        }
    }
}

pub fn scrub(text: &str) -> Cow<'_, str> {
    let Ok(list) = SECRETS.read() else {
        return Cow::Borrowed(text);
    };
    if !list.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for s in list.iter() {
        out = out.replace(s.as_str(), "***");
    }
    Cow::Owned(out)
}

/// A writer for logs that scrubs secrets line by line.
pub struct ScrubbingWriter<W: std::io::Write>(pub W);

impl<W: std::io::Write> std::io::Write for ScrubbingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
