//! Numbers, durations, shares and I/O errors as people read them, and the
//! escape a markdown table cell needs: the wording every output shares
//! (messages, plans, reports, status, the run summary, the scrubber's forms).

/// `1234567` → `1,234,567`.
///
/// ```
/// assert_eq!(smax_campaign::human::thousands(1_234_567), "1,234,567");
/// assert_eq!(smax_campaign::human::thousands(999), "999");
/// ```
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration for people: `0s`, `44.7s`, `12m 5s`, `11h 6m`.
///
/// ```
/// use smax_campaign::human::human_duration;
/// assert_eq!(human_duration(44.7), "44.7s");
/// assert_eq!(human_duration(40_000.0), "11h 6m");
/// ```
pub fn human_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "unknown".into();
    }
    if seconds < 60.0 {
        let s = format!("{seconds:.1}");
        return format!("{}s", s.strip_suffix(".0").unwrap_or(&s));
    }
    let total = seconds.round() as u64;
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    match (h, m) {
        (0, _) => format!("{m}m {s}s"),
        (h, m) if h < 48 => format!("{h}h {m}m"),
        (h, _) => format!("{}d {}h", h / 24, h % 24),
    }
}

/// Text for a markdown table cell: a `|` would end the cell.
pub fn md_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// `n` as a percentage of `of` (`None` when `of` is 0).
///
/// ```
/// assert_eq!(smax_campaign::human::percent(1, 8), Some(12.5));
/// assert_eq!(smax_campaign::human::percent(1, 0), None);
/// ```
pub fn percent(n: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| n as f64 * 100.0 / of as f64)
}

/// Human words for an I/O error (never Rust's Debug form).
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "it is a folder, not a file".into(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_string(),
                None => text,
            }
        }
    }
}

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
