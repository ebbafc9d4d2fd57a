//! Saved plans: `plan --out FILE` writes what a reviewer approved, `run --plan
//! FILE` sends exactly that or nothing.
//!
//! A plan is bound to what it was made from by SHA-256: the campaign file, the
//! project file and every audience and suppression file, and to what it renders
//! by a digest of every request of the run (see [`super::Pipeline::digesting`]).
//! Before anything is sent, `run --plan` checks the files (a changed file is
//! named, with how the counts would move) and then, while planning the run,
//! the digest: the same files can still render differently under another
//! version of the tool.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::PlanCounts;
use crate::campaign::Campaign;
use crate::human::thousands;

/// What a saved plan says it is; a file without it is not a plan.
const KIND: &str = "smax-campaign plan";
const FORMAT: u32 = 1;
/// A plan names a few files; anything much larger is not one.
const MAX_PLAN_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedPlan {
    pub kind: String,
    pub format: u32,
    /// The version of smax-campaign that made it.
    pub tool_version: String,
    /// When it was made (RFC 3339, UTC).
    pub created: String,
    pub campaign: String,
    /// The campaign file as it was named to `plan`.
    pub campaign_file: PathBuf,
    pub run_id: String,
    /// The time templates saw as `now`: a run of this plan renders with it too.
    pub now: String,
    pub api_url: String,
    pub files: Vec<BoundFile>,
    pub counts: PlanCounts,
    pub requests_digest: String,
}

/// One file the plan was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundFile {
    pub role: FileRole,
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileRole {
    Campaign,
    Project,
    Audience,
    Suppression,
}

impl std::fmt::Display for FileRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileRole::Campaign => "campaign file",
            FileRole::Project => "project file",
            FileRole::Audience => "audience file",
            FileRole::Suppression => "suppression list",
        })
    }
}

/// How a file differs from the plan's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    Changed(BoundFile),
    Missing(BoundFile),
    /// Named now, not when the plan was made.
    Added(BoundFile),
}

impl std::fmt::Display for FileChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileChange::Changed(b) => write!(
                f,
                "{} `{}` changed since the plan was made",
                b.role,
                b.path.display()
            ),
            FileChange::Missing(b) => write!(
                f,
                "{} `{}` is gone (or no longer named by the campaign)",
                b.role,
                b.path.display()
            ),
            FileChange::Added(b) => write!(
                f,
                "{} `{}` is named now but was not when the plan was made",
                b.role,
                b.path.display()
            ),
        }
    }
}

/// `sha256:HEX` of a file's bytes, read in pieces.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::default();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", crate::human::hex(&hasher.finalize())))
}

/// The files `campaign` is made from, hashed: itself, the project file, and
/// every audience and suppression file (inline rows are in the campaign file).
pub fn bound_files(
    campaign: &Campaign,
    project_file: Option<&Path>,
) -> Result<Vec<BoundFile>, (PathBuf, std::io::Error)> {
    let inline =
        |s: &crate::audience::Source| matches!(s.kind, crate::audience::SourceKind::Inline { .. });
    // Paths as the plan names them: `./c.yaml` and `c.yaml` are one file.
    let mut named: Vec<(FileRole, PathBuf)> = vec![(
        FileRole::Campaign,
        crate::campaign::normalize(&campaign.path),
    )];
    if let Some(project) = project_file {
        named.push((FileRole::Project, crate::campaign::normalize(project)));
    }
    for (role, sources) in [
        (FileRole::Audience, &campaign.audience.sources),
        (FileRole::Suppression, &campaign.audience.exclude),
    ] {
        for source in sources.iter().filter(|s| !inline(s)) {
            let path = crate::campaign::normalize(&source.path);
            if !named.iter().any(|(r, p)| *r == role && *p == path) {
                named.push((role, path));
            }
        }
    }
    named
        .into_iter()
        .map(|(role, path)| match file_sha256(&path) {
            Ok(sha256) => Ok(BoundFile { role, path, sha256 }),
            Err(e) => Err((path, e)),
        })
        .collect()
}

/// How the files now differ from the plan's, in the plan's order, then the new ones.
pub fn changes(planned: &[BoundFile], now: &[BoundFile]) -> Vec<FileChange> {
    let same_file = |a: &BoundFile, b: &BoundFile| a.role == b.role && a.path == b.path;
    let mut out = Vec::new();
    for p in planned {
        match now.iter().find(|n| same_file(n, p)) {
            None => out.push(FileChange::Missing(p.clone())),
            Some(n) if n.sha256 != p.sha256 => out.push(FileChange::Changed(n.clone())),
            Some(_) => {}
        }
    }
    for n in now {
        if !planned.iter().any(|p| same_file(p, n)) {
            out.push(FileChange::Added(n.clone()));
        }
    }
    out
}

/// How the counts would move from the plan's to `now`'s: `to send 4,000 → 4,012
/// (+12)` for each count that differs.
pub fn count_moves(planned: &PlanCounts, now: &PlanCounts) -> Vec<String> {
    planned
        .named()
        .into_iter()
        .zip(now.named())
        .filter(|((_, a), (_, b))| a != b)
        .map(|((name, a), (_, b))| {
            let sign = if b > a { "+" } else { "−" };
            format!(
                "{name} {} → {} ({sign}{})",
                thousands(a),
                thousands(b),
                thousands(a.abs_diff(b))
            )
        })
        .collect()
}

impl SavedPlan {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        campaign: &Campaign,
        run_id: &str,
        now: &str,
        api_url: &str,
        files: Vec<BoundFile>,
        counts: PlanCounts,
        requests_digest: String,
    ) -> SavedPlan {
        SavedPlan {
            kind: KIND.into(),
            format: FORMAT,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            campaign: campaign.name.clone(),
            campaign_file: campaign.path.clone(),
            run_id: run_id.into(),
            now: now.into(),
            api_url: api_url.into(),
            files,
            counts,
            requests_digest,
        }
    }

    /// Reads a saved plan, refusing anything that is not one (the reason in words).
    pub fn read(path: &Path) -> Result<SavedPlan, String> {
        let file = std::fs::File::open(path).map_err(|e| crate::human::io_reason(&e))?;
        let mut text = String::new();
        file.take(MAX_PLAN_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| crate::human::io_reason(&e))?;
        if text.len() as u64 > MAX_PLAN_BYTES {
            return Err("it is larger than any plan (1 MiB)".into());
        }
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("it is not JSON: {e}"))?;
        if value.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
            return Err(format!(
                "it is not a plan saved by `smax-campaign plan --out` (no \"kind\": \"{KIND}\")"
            ));
        }
        let format = value.get("format").and_then(|f| f.as_u64());
        if format != Some(u64::from(FORMAT)) {
            return Err(format!(
                "its format is {}, this smax-campaign reads format {FORMAT}: make the plan again with this version",
                format.map(|f| f.to_string()).unwrap_or_else(|| "missing".into())
            ));
        }
        serde_json::from_value(value).map_err(|e| format!("it is damaged: {e}"))
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)? + "\n";
        crate::redact::write_file(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(role: FileRole, path: &str, sha: &str) -> BoundFile {
        BoundFile {
            role,
            path: path.into(),
            sha256: sha.into(),
        }
    }

    #[test]
    fn changes_name_each_file_that_differs() {
        let planned = vec![
            bound(FileRole::Campaign, "c.yaml", "a"),
            bound(FileRole::Audience, "a.csv", "b"),
            bound(FileRole::Suppression, "s.csv", "c"),
        ];
        let now = vec![
            bound(FileRole::Campaign, "c.yaml", "a"),
            bound(FileRole::Audience, "a.csv", "B"),
            bound(FileRole::Audience, "new.csv", "d"),
        ];
        let found: Vec<String> = changes(&planned, &now)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(
            found,
            [
                "audience file `a.csv` changed since the plan was made",
                "suppression list `s.csv` is gone (or no longer named by the campaign)",
                "audience file `new.csv` is named now but was not when the plan was made",
            ]
        );
        assert!(changes(&planned, &planned).is_empty());
    }

    #[test]
    fn count_moves_show_only_what_moves() {
        let planned = PlanCounts {
            read: 100,
            suppressed: 10,
            to_send: 90,
            ..PlanCounts::default()
        };
        let now = PlanCounts {
            read: 103,
            suppressed: 10,
            to_send: 90,
            duplicates: 3,
            ..PlanCounts::default()
        };
        assert_eq!(
            count_moves(&planned, &now),
            ["read 100 → 103 (+3)", "duplicates 0 → 3 (+3)"]
        );
    }

    #[test]
    fn only_a_saved_plan_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, "{\"kind\": \"something else\"}").unwrap();
        assert!(SavedPlan::read(&path).unwrap_err().contains("not a plan"));
        std::fs::write(&path, format!("{{\"kind\": \"{KIND}\", \"format\": 9}}")).unwrap();
        assert!(SavedPlan::read(&path).unwrap_err().contains("format is 9"));
        std::fs::write(&path, "not json").unwrap();
        assert!(SavedPlan::read(&path).unwrap_err().contains("not JSON"));
    }
}
