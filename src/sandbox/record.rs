//! What the sandbox remembers of every request that reached a send route.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::spec::Fault;
use crate::redact::Scrubbed;

/// API version of a send route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    V1,
    V2,
}

/// How a V1 `messaging_tag` was written: `%22TAG%22` (quoted) or `TAG` (bare).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagStyle {
    Quoted,
    Bare,
}

/// The addressee: `user_id` for V1, the `customer_*` fields for V2.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_fbid: Option<String>,
}

impl Recipient {
    /// Every identifier that is present, for the `users` check.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &str> {
        [
            &self.user_id,
            &self.customer_id,
            &self.customer_email,
            &self.customer_phone,
            &self.customer_fbid,
        ]
        .into_iter()
        .filter_map(|v| v.as_deref())
    }
}

/// One request that reached a send route, accepted or not. One JSON line of the
/// record file. Absent fields are omitted, except `fault` (null when none) and
/// `status` (null only for a `timeout` fault, which never answers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// 1, 2, 3… in the order records were written.
    pub seq: u64,
    /// Microseconds since the sandbox started (monotonic clock). For a bot with a
    /// rate limit this is the instant the rate decision was taken.
    pub t_us: u64,
    pub bot: String,
    pub api: Api,
    /// HTTP status answered; null for a `timeout` fault (no answer).
    pub status: Option<u16>,
    /// True exactly when the platform would have delivered the message.
    pub accepted: bool,
    pub fault: Option<Fault>,
    /// The `result` text of the answer (for a timeout: what happened).
    pub result: String,
    /// `METHOD /raw/path?raw&query HTTP/1.1`, with the `bot_token` value replaced by `***`.
    pub request_line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<serde_json::Value>>,
    /// The tag without quotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// V1 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_style: Option<TagStyle>,
    /// Decoded name → decoded value, in request order (V1 query attributes, V2 extra
    /// top-level string fields). Omitted when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<IndexMap<String, String>>,
    /// V2 `one_time_notif_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otn: Option<String>,
    /// V2 `notification_messages_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ntn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Vec<String>>,
}

impl Record {
    pub(crate) fn new(api: Api, bot: String, request_line: String) -> Record {
        Record {
            seq: 0,
            t_us: 0,
            bot,
            api,
            status: None,
            accepted: false,
            fault: None,
            result: String::new(),
            request_line,
            recipient: None,
            block_name: None,
            block_id: None,
            messages: None,
            tag: None,
            tag_style: None,
            attributes: None,
            otn: None,
            ntn: None,
            priority: None,
        }
    }
}

struct SinkInner {
    seq: u64,
    /// Through the scrubber: a recorded message could quote a bot's token.
    file: Option<Scrubbed<File>>,
    path: Option<PathBuf>,
    write_failed: bool,
    memory: Option<Vec<Record>>,
}

/// Numbers records, appends them to the record file (one `write` per line, so a
/// reader sees complete lines while the sandbox runs) and keeps them in memory
/// when asked to.
pub(crate) struct RecordSink {
    inner: Mutex<SinkInner>,
}

impl RecordSink {
    pub(crate) fn open(path: Option<&Path>, keep_in_memory: bool) -> anyhow::Result<RecordSink> {
        let file = match path {
            Some(p) => Some(Scrubbed::new(File::create(p).map_err(|e| {
                anyhow::anyhow!("cannot create the record file {}: {e}", p.display())
            })?)),
            None => None,
        };
        Ok(RecordSink {
            inner: Mutex::new(SinkInner {
                seq: 0,
                file,
                path: path.map(Path::to_path_buf),
                write_failed: false,
                memory: keep_in_memory.then(Vec::new),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkInner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn push(&self, mut record: Record) {
        let mut inner = self.lock();
        inner.seq += 1;
        record.seq = inner.seq;
        tracing::debug!(
            seq = record.seq,
            bot = %record.bot,
            api = ?record.api,
            status = ?record.status,
            fault = ?record.fault,
            result = %record.result,
            "sandbox request"
        );
        let inner = &mut *inner;
        if let Some(file) = inner.file.as_mut() {
            let outcome = serde_json::to_vec(&record)
                .map_err(std::io::Error::other)
                .and_then(|mut line| {
                    line.push(b'\n');
                    file.write_all(&line)
                });
            if let Err(e) = outcome {
                if !inner.write_failed {
                    inner.write_failed = true;
                    let shown = inner.path.as_deref().map(Path::display);
                    tracing::warn!("sandbox: cannot write the record file {shown:?}: {e}");
                }
            }
        }
        if let Some(memory) = inner.memory.as_mut() {
            memory.push(record);
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<Record> {
        self.lock().memory.clone().unwrap_or_default()
    }

    pub(crate) fn flush(&self) {
        let mut inner = self.lock();
        if let Some(file) = inner.file.as_mut() {
            if let Err(e) = file.flush().and_then(|()| file.get_ref().sync_data()) {
                tracing::warn!("sandbox: cannot flush the record file: {e}");
            }
        }
    }
}
