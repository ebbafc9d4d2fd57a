//! Which files a campaign may make the tool read (SPEC section 10).
//!
//! Campaign files arrive through pull requests and are validated in CI, next
//! to the bots' tokens. A path a campaign names (an audience, a suppression
//! list, a `token_file`) must therefore lie inside the project: the folder of
//! smax.yaml (the campaign's own folder without one), or a folder smax.yaml
//! lists under `data_dirs`. The check runs before the file is opened, so an
//! escaping path is never read, not even for an error message.
//!
//! Two passes: first the path as written (`..` and absolute paths, without
//! touching the file system, so not even the existence of an outside file is
//! revealed), then the path with every symlink followed, so a link committed
//! into the repository cannot point out either.

use std::path::{Path, PathBuf};

/// Trees the kernel synthesises: never audience data, and reading them can
/// reveal the process's environment or block forever.
const SYSTEM_TREES: [&str; 3] = ["/proc", "/sys", "/dev"];

#[derive(Debug, Clone)]
struct Root {
    /// Absolute, with `.` and `..` resolved lexically (symlinks kept).
    lexical: PathBuf,
    /// With every symlink followed; None when the folder does not exist.
    canonical: Option<PathBuf>,
}

/// The folders a campaign's files must lie in.
#[derive(Debug, Clone)]
pub struct Confinement {
    roots: Vec<Root>,
}

/// Why a path was refused ([`super::refusal_diagnostic`] words it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The path as written leaves every allowed folder.
    Outside,
    /// The path stays inside as written, but a symlink on the way leads out.
    LinksOutside {
        target: PathBuf,
    },
    /// Under /proc, /sys or /dev.
    SystemFile {
        target: PathBuf,
    },
    /// Inside a `.git` folder, where a checkout may keep credentials.
    GitMetadata,
    Missing,
    Folder,
    /// A FIFO, socket or device: reading it could block or never end.
    NotRegular {
        kind: &'static str,
    },
    Unreadable {
        reason: String,
    },
}

fn in_git_folder(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == ".git")
}

fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    let _ = meta;
    "not a regular file"
}

impl Confinement {
    /// Files must lie under one of `folders` (relative folders are taken
    /// from the current directory).
    pub fn new(folders: impl IntoIterator<Item = PathBuf>) -> Confinement {
        let roots = folders
            .into_iter()
            .map(|folder| {
                let lexical = lexical_absolute(&folder);
                Root {
                    canonical: std::fs::canonicalize(&lexical).ok(),
                    lexical,
                }
            })
            .collect();
        Confinement { roots }
    }

    /// The allowed folders, as written, for messages.
    pub fn folders(&self) -> impl Iterator<Item = &Path> {
        self.roots.iter().map(|r| r.lexical.as_path())
    }

    /// Checks that `path` is a regular file inside the allowed folders,
    /// without opening it.
    pub fn check_file(&self, path: &Path) -> Result<(), Refusal> {
        let lexical = lexical_absolute(path);
        if !self.roots.iter().any(|r| lexical.starts_with(&r.lexical)) {
            return Err(Refusal::Outside);
        }
        if in_git_folder(&lexical) {
            return Err(Refusal::GitMetadata);
        }
        let target = match std::fs::canonicalize(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Refusal::Missing),
            Err(e) => {
                return Err(Refusal::Unreadable {
                    reason: crate::human::io_reason(&e),
                })
            }
        };
        if SYSTEM_TREES.iter().any(|t| target.starts_with(t)) {
            return Err(Refusal::SystemFile { target });
        }
        if in_git_folder(&target) {
            return Err(Refusal::GitMetadata);
        }
        let inside = self
            .roots
            .iter()
            .filter_map(|r| r.canonical.as_deref())
            .any(|root| target.starts_with(root));
        if !inside {
            return Err(Refusal::LinksOutside { target });
        }
        let meta = std::fs::metadata(&target).map_err(|e| Refusal::Unreadable {
            reason: crate::human::io_reason(&e),
        })?;
        if meta.is_dir() {
            return Err(Refusal::Folder);
        }
        if !meta.is_file() {
            return Err(Refusal::NotRegular {
                kind: file_kind(&meta),
            });
        }
        Ok(())
    }
}

/// Folders `data_dirs` may not name, whatever the project: they hold the
/// machine's and the user's own files (a CI runner's home holds its tools'
/// credentials), never campaign data.
const SYSTEM_FOLDERS: [&str; 8] = [
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    // Runtime secrets: a Kubernetes runner's service-account token is under
    // /var/run/secrets (/run is the same tree).
    "/run",
    "/var/run",
    // macOS's /etc, as the path resolves there.
    "/private/etc",
];

/// Why a `data_dirs` entry would open more than a data folder, or None when
/// it may be opted in. A pull request can change smax.yaml too, so
/// `data_dirs: ["/"]` would undo the confinement: a data folder must be a
/// folder of data, not the file system, the home folder, a folder the project
/// itself lies in, a system folder or a hidden one (`.ssh`, `.aws`, …).
pub fn data_dir_refusal(dir: &Path, project_root: &Path) -> Option<String> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| lexical_absolute(dir));
    let root =
        std::fs::canonicalize(project_root).unwrap_or_else(|_| lexical_absolute(project_root));
    if dir.parent().is_none() {
        return Some("it is the root of the file system".into());
    }
    if root.starts_with(&dir) && root != dir {
        return Some(format!(
            "the project itself lies in it (`{}`), so it would open every folder beside the project",
            root.display()
        ));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let home = std::fs::canonicalize(&home).unwrap_or_else(|_| PathBuf::from(&home));
        if home.starts_with(&dir) {
            return Some(format!("it holds the home folder `{}`", home.display()));
        }
    }
    if let Some(system) = SYSTEM_FOLDERS.iter().find(|f| dir.starts_with(f)) {
        return Some(format!("it is under the system folder `{system}`"));
    }
    // Components the project's own path does not share: a project kept under
    // a hidden folder may still name a sibling folder of data.
    let shared = dir
        .components()
        .zip(root.components())
        .take_while(|(a, b)| a == b)
        .count();
    if let Some(hidden) = dir.components().skip(shared).find(|c| {
        let name = c.as_os_str().to_string_lossy();
        name.starts_with('.') && name != "." && name != ".."
    }) {
        return Some(format!(
            "`{}` is a hidden folder, where tools keep credentials",
            hidden.as_os_str().to_string_lossy()
        ));
    }
    None
}

/// `path` made absolute against the current directory, `..` resolved
/// lexically; no file system access.
fn lexical_absolute(path: &Path) -> PathBuf {
    // `Path::new("a.yaml").parent()` is "", which means the current folder.
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    super::normalize(&absolute)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        std::fs::create_dir_all(project.join("audiences")).unwrap();
        std::fs::write(project.join("audiences/a.csv"), "id\n1\n").unwrap();
        std::fs::write(dir.path().join("secret.csv"), "id\n1\n").unwrap();
        (dir, project)
    }

    #[test]
    fn files_inside_the_project_pass() {
        let (_d, project) = setup();
        let c = Confinement::new([project.clone()]);
        assert_eq!(c.check_file(&project.join("audiences/a.csv")), Ok(()));
        assert_eq!(
            c.check_file(&project.join("audiences/../audiences/a.csv")),
            Ok(())
        );
    }

    #[test]
    fn dot_dot_and_absolute_paths_out_are_refused_before_any_lookup() {
        let (_d, project) = setup();
        let c = Confinement::new([project.clone()]);
        assert_eq!(
            c.check_file(&project.join("../secret.csv")),
            Err(Refusal::Outside)
        );
        // Refused as written, whether or not the file exists.
        assert_eq!(
            c.check_file(&project.join("../no-such.csv")),
            Err(Refusal::Outside)
        );
        assert_eq!(
            c.check_file(Path::new("/proc/self/environ")),
            Err(Refusal::Outside)
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_out_of_the_project_is_refused() {
        let (d, project) = setup();
        let link = project.join("audiences/link.csv");
        std::os::unix::fs::symlink(d.path().join("secret.csv"), &link).unwrap();
        let c = Confinement::new([project.clone()]);
        assert!(matches!(
            c.check_file(&link),
            Err(Refusal::LinksOutside { .. })
        ));
        let proc_link = project.join("audiences/env.csv");
        std::os::unix::fs::symlink("/proc/self/environ", &proc_link).unwrap();
        assert!(matches!(
            c.check_file(&proc_link),
            Err(Refusal::SystemFile { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_that_stays_inside_passes() {
        let (_d, project) = setup();
        let link = project.join("audiences/alias.csv");
        std::os::unix::fs::symlink("a.csv", &link).unwrap();
        let c = Confinement::new([project.clone()]);
        assert_eq!(c.check_file(&link), Ok(()));
    }

    #[test]
    fn git_metadata_is_never_data() {
        let (_d, project) = setup();
        std::fs::create_dir_all(project.join(".git")).unwrap();
        std::fs::write(project.join(".git/config"), "[core]\n").unwrap();
        let c = Confinement::new([project.clone()]);
        assert_eq!(
            c.check_file(&project.join(".git/config")),
            Err(Refusal::GitMetadata)
        );
    }

    #[test]
    fn data_dirs_opt_further_folders_in() {
        let (d, project) = setup();
        let shared = d.path().join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(shared.join("b.csv"), "id\n").unwrap();
        let only_project = Confinement::new([project.clone()]);
        assert_eq!(
            only_project.check_file(&project.join("../shared/b.csv")),
            Err(Refusal::Outside)
        );
        let with_shared = Confinement::new([project.clone(), shared]);
        assert_eq!(
            with_shared.check_file(&project.join("../shared/b.csv")),
            Ok(())
        );
    }

    #[cfg(unix)]
    #[test]
    fn data_dirs_must_be_folders_of_data() {
        let (dir, project) = setup();
        let shared = dir.path().join("shared");
        std::fs::create_dir_all(shared.join(".aws")).unwrap();
        assert_eq!(data_dir_refusal(&shared, &project), None);
        let refused = |d: &Path| data_dir_refusal(d, &project).is_some();
        assert!(refused(Path::new("/")));
        assert!(refused(dir.path()), "an ancestor of the project");
        assert_eq!(
            data_dir_refusal(&project, &project),
            None,
            "the project itself adds nothing"
        );
        assert!(refused(Path::new("/etc/ssl")));
        assert!(refused(Path::new("/proc/self")));
        assert!(refused(Path::new("/var/run/secrets")));
        assert!(refused(&shared.join(".aws")));
        // A project under a hidden folder may name a sibling of data.
        let hidden_project = dir.path().join(".work/project");
        std::fs::create_dir_all(&hidden_project).unwrap();
        std::fs::create_dir_all(dir.path().join(".work/data")).unwrap();
        assert_eq!(
            data_dir_refusal(&dir.path().join(".work/data"), &hidden_project),
            None
        );
    }

    #[test]
    fn fifos_and_folders_are_not_files() {
        let (_d, project) = setup();
        let c = Confinement::new([project.clone()]);
        assert_eq!(
            c.check_file(&project.join("audiences")),
            Err(Refusal::Folder)
        );
        let fifo = project.join("audiences/pipe.csv");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert!(matches!(
            c.check_file(&fifo),
            Err(Refusal::NotRegular { .. })
        ));
        assert_eq!(
            c.check_file(&project.join("audiences/none.csv")),
            Err(Refusal::Missing)
        );
    }
}
