//! Where the state lives, as the user named it, and the one way to open it.
//!
//! `--state`, `SMAX_STATE` and smax.yaml `state` all name a [`StateLocation`]: `none`
//! (keep no state), a file path (SQLite), or a `postgres://` URL. Commands never name a
//! backend: they call [`open`], [`create`] or [`open_read_only`] and get a
//! `Box<dyn StateStore>`.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{PostgresStore, SqliteStore, StateError, StateStore};

/// Where a command keeps (or finds) its state. `Debug` shows what `Display` shows:
/// never a password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum StateLocation {
    /// `--state none`: nothing is recorded, nothing resumed, no locks.
    Disabled,
    /// A SQLite database file.
    File(PathBuf),
    /// A PostgreSQL database, by URL (kept whole: it may carry a password, so it is
    /// shown only through [`StateLocation`]'s `Display`, which hides it).
    Postgres(String),
}

impl StateLocation {
    /// Reads a location as written. Relative paths are taken relative to `base`
    /// (the current folder for flags, the project root for smax.yaml).
    pub fn parse(text: &OsStr, base: &Path) -> StateLocation {
        let lossy = text.to_string_lossy();
        if text == "none" {
            return StateLocation::Disabled;
        }
        let scheme = lossy.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let keywords = scheme.is_none() && is_keyword_string(&lossy);
        if matches!(scheme.as_deref(), Some("postgres" | "postgresql")) || keywords {
            // Registered here, where the text becomes a location: every later output
            // is scrubbed of it, whatever path it takes.
            super::postgres::register_password(&lossy);
            return StateLocation::Postgres(lossy.into_owned());
        }
        StateLocation::File(base.join(text))
    }

    /// True when a store is expected here but nothing exists yet (a file that is not
    /// there). Other backends are only known to be missing once connected.
    pub fn is_missing_file(&self) -> bool {
        match self {
            StateLocation::File(path) => matches!(
                std::fs::symlink_metadata(path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound
            ),
            _ => false,
        }
    }
}

/// A libpq keyword string (`host=db dbname=smax user=app`, the password perhaps in
/// PGPASSWORD) is no file name either: it starts with a connection keyword.
fn is_keyword_string(text: &str) -> bool {
    const CONNECTION_KEYWORDS: [&str; 6] =
        ["host", "hostaddr", "port", "dbname", "user", "password"];
    text.split_whitespace()
        .next()
        .and_then(|word| word.split_once('='))
        .is_some_and(|(key, _)| CONNECTION_KEYWORDS.contains(&key.to_ascii_lowercase().as_str()))
}

impl fmt::Debug for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateLocation({self})")
    }
}

impl fmt::Display for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLocation::Disabled => f.write_str("none"),
            StateLocation::File(path) => write!(f, "{}", path.display()),
            StateLocation::Postgres(url) => f.write_str(&super::postgres::shown(url)),
        }
    }
}

/// A store [`create`] opened, and whether it made it (`false`: it existed).
pub type Created = (Box<dyn StateStore>, bool);

/// Opens the existing store at `location` (`None` for [`StateLocation::Disabled`]).
/// A store that does not exist is [`StateError::Missing`]: it is never created on the way.
pub fn open(location: &StateLocation) -> Result<Option<Box<dyn StateStore>>, StateError> {
    match location {
        StateLocation::Disabled => Ok(None),
        StateLocation::File(path) => Ok(Some(Box::new(SqliteStore::open(path)?))),
        StateLocation::Postgres(url) => Ok(Some(Box::new(PostgresStore::open(url)?))),
    }
}

/// Creates the store at `location` when it does not exist, then opens it; says whether
/// it was created. `None` for [`StateLocation::Disabled`].
pub fn create(location: &StateLocation) -> Result<Option<Created>, StateError> {
    match location {
        StateLocation::Disabled => Ok(None),
        StateLocation::File(path) => {
            let (store, created) = SqliteStore::create(path)?;
            Ok(Some((Box::new(store), created)))
        }
        StateLocation::Postgres(url) => {
            let (store, created) = PostgresStore::create(url)?;
            Ok(Some((Box::new(store), created)))
        }
    }
}

/// Opens the store for reading only; `None` when there is none (or state is disabled).
/// Creates nothing.
pub fn open_read_only(location: &StateLocation) -> Result<Option<Box<dyn StateStore>>, StateError> {
    match location {
        StateLocation::Disabled => Ok(None),
        StateLocation::File(path) => {
            Ok(SqliteStore::open_read_only(path)?
                .map(|store| Box::new(store) as Box<dyn StateStore>))
        }
        StateLocation::Postgres(url) => {
            Ok(PostgresStore::open_read_only(url)?
                .map(|store| Box::new(store) as Box<dyn StateStore>))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_read_by_their_form() {
        let base = Path::new("/project");
        assert_eq!(
            StateLocation::parse(OsStr::new("none"), base),
            StateLocation::Disabled
        );
        assert_eq!(
            StateLocation::parse(OsStr::new(".smax/state.db"), base),
            StateLocation::File(PathBuf::from("/project/.smax/state.db"))
        );
        assert_eq!(
            StateLocation::parse(OsStr::new("/var/state.db"), base),
            StateLocation::File(PathBuf::from("/var/state.db"))
        );
        // A file name with `=` in it stays a file name.
        assert_eq!(
            StateLocation::parse(OsStr::new("./password=1.db"), base),
            StateLocation::File(PathBuf::from("/project/./password=1.db"))
        );
        for url in [
            "postgres://u@h/db",
            "PostgreSQL://u:p@h:5432/db?sslmode=require",
            // Keyword strings, with or without a password in them.
            "host=db user=app dbname=smax",
            "dbname=smax host=db password=x",
            "  user=app host=/run/postgresql",
        ] {
            assert_eq!(
                StateLocation::parse(OsStr::new(url), base),
                StateLocation::Postgres(url.to_owned())
            );
        }
    }

    #[test]
    fn a_postgres_password_is_never_shown() {
        let location = StateLocation::Postgres("postgres://u:s3cr%40t@h:5432/db".into());
        let shown = location.to_string();
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("u:***@h:5432/db"), "{shown}");
        let garbled = StateLocation::Postgres("postgres://u:s3cret@[bad/db".into());
        assert!(!garbled.to_string().contains("s3cret"));
        for url in [
            "postgresql://app@db/smax?password=s3cret&sslmode=require",
            "host=db user=app password=s3cret dbname=smax",
            "host=db user=app password='s3cret horse battery' dbname=smax",
            "postgres://app:s3cret;horse@db/smax",
            "postgres://app:s3cret%20horse@db/smax",
        ] {
            let location = StateLocation::parse(OsStr::new(url), Path::new("/p"));
            assert!(matches!(location, StateLocation::Postgres(_)), "{url}");
            for shown in [location.to_string(), format!("{location:?}")] {
                assert!(!shown.contains("s3cret"), "{shown}");
                assert!(!shown.contains("horse"), "{shown}");
                assert!(shown.contains("app:***@db"), "{shown}");
                assert!(shown.contains("/smax"), "{shown}");
            }
        }
        let location =
            StateLocation::parse(OsStr::new("postgres://app@db:6432/smax"), Path::new("/p"));
        assert_eq!(location.to_string(), "postgres://app@db:6432/smax");
    }

    #[test]
    fn an_unreachable_postgres_is_an_error_that_hides_the_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Port 1 on loopback: refused at once, nothing leaves the machine.
        let url = "postgres://app:unreachable-pw-7f3e@127.0.0.1:1/smax?connect_timeout=5";
        let location = StateLocation::parse(OsStr::new(url), dir.path());
        for result in [
            create(&location).map(|_| ()),
            open(&location).map(|_| ()),
            open_read_only(&location).map(|_| ()),
        ] {
            let err = result.expect_err("nothing listens there");
            let text = format!("{err} {err:?}");
            assert!(matches!(err, StateError::Backend { .. }), "{text}");
            assert!(text.contains("cannot connect"), "{text}");
            assert!(!text.contains("unreachable-pw"), "{text}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("read").count(), 0);
    }
}
