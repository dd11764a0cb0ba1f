//! The dead-letter sink: where a message goes when it cannot be delivered, with why.
//!
//! Every input ends delivered or dead-lettered (or deliberately filtered), and the
//! counters prove it. A dead-letter record carries the error category, the reason,
//! the attempt count, the stage that gave up and the original position, so the
//! message can be found and replayed. Dead-lettering is the exceptional path: the
//! file implementation serialises writers with a mutex and writes each record
//! through at once (a crash must not lose the record of a failure).
//!
//! File format: one JSON object per line:
//! `{"category":"serialization","stage":"processor","reason":"...","attempts":1,
//!   "partition":0,"position":1234,"key":"...","payload":"..."}`; a key or payload
//! that is not valid UTF-8 is written as `"payload_hex"` / `"key_hex"` instead.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::SinkError;
use crate::retry::ErrorCategory;

/// Which stage gave up on the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Source,
    Processor,
    Sink,
}

impl Stage {
    pub const fn name(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Processor => "processor",
            Stage::Sink => "sink",
        }
    }
}

/// One message that could not be delivered.
#[derive(Clone, Copy, Debug)]
pub struct DeadLetterRecord<'a> {
    pub category: ErrorCategory,
    pub stage: Stage,
    pub reason: &'a str,
    pub attempts: u32,
    pub partition: u32,
    pub position: u64,
    pub key: &'a [u8],
    pub payload: &'a [u8],
}

/// A destination for undeliverable messages, shared by all workers and the source.
pub trait DeadLetter: Send + Sync {
    fn send(&self, record: &DeadLetterRecord<'_>) -> Result<(), SinkError>;
    fn describe(&self) -> String;
}

/// Appends dead-letter records to a file as JSON lines.
pub struct FileDeadLetter {
    path: PathBuf,
    /// The file (opened by the first record) and the record buffer.
    inner: Mutex<(Option<File>, Vec<u8>)>,
}

/// Bytes reserved for the record buffer: one record of a typical message; it grows
/// for larger payloads (the dead-letter path may allocate, the hot path does not).
const DEAD_LETTER_BUFFER_BYTES: usize = 4096;

impl FileDeadLetter {
    /// Checks that the dead-letter file can be written; it is opened (appending,
    /// created if absent) by the first record, so a run that sends none, or fails
    /// to start, leaves the file system as it was.
    pub fn open(path: &Path) -> Result<Self, SinkError> {
        super::output_file::check_writable(path, "dead-letter file")?;
        Ok(FileDeadLetter {
            path: path.to_path_buf(),
            inner: Mutex::new((None, Vec::with_capacity(DEAD_LETTER_BUFFER_BYTES))),
        })
    }
}

impl DeadLetter for FileDeadLetter {
    fn send(&self, record: &DeadLetterRecord<'_>) -> Result<(), SinkError> {
        let mut guard = self.inner.lock();
        let (file, buffer) = &mut *guard;
        let file = match file {
            Some(file) => file,
            None => file.insert(
                OpenOptions::new().create(true).append(true).open(&self.path).map_err(|e| {
                    SinkError::io(
                        &format!("cannot open dead-letter file {}", self.path.display()),
                        &e,
                    )
                })?,
            ),
        };
        buffer.clear();
        encode_record(record, buffer);
        file.write_all(buffer).map_err(|e| {
            SinkError::io(&format!("write to dead-letter file {}", self.path.display()), &e)
        })
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

/// No dead-letter destination configured (the default): a failed message cannot
/// be kept, so it is not settled either. `send` fails with an error that says what
/// failed and how to keep or deliberately drop such messages; the run stops, the
/// message stays unacknowledged and is read again by the next run (nothing is lost
/// without being asked to).
#[derive(Default)]
pub struct StopDeadLetter;

impl DeadLetter for StopDeadLetter {
    fn send(&self, record: &DeadLetterRecord<'_>) -> Result<(), SinkError> {
        Err(SinkError::new(
            ErrorCategory::Configuration,
            format!(
                "a message failed at the {} ({} error at partition {} position {}: {}) and \
                 there is no dead-letter destination to keep it; the run stops with the \
                 message unacknowledged. Add a [dead_letter] section: type = \"file\" with \
                 a path to keep failed messages, or type = \"discard\" to drop them",
                record.stage.name(),
                record.category.name(),
                record.partition,
                record.position,
                record.reason
            ),
        ))
    }

    fn describe(&self) -> String {
        "none (the first failed message stops the run)".to_string()
    }
}

/// Failed messages dropped on purpose (`[dead_letter] type = "discard"`): counted by
/// the engine as dead-lettered, the first few logged to stderr with their reason.
#[derive(Default)]
pub struct LogDeadLetter {
    logged: AtomicU64,
}

/// Dead-letter records logged to stderr when no dead-letter sink is configured.
pub const DEAD_LETTER_LOG_MAX: u64 = 10;

impl DeadLetter for LogDeadLetter {
    fn send(&self, record: &DeadLetterRecord<'_>) -> Result<(), SinkError> {
        let n = self.logged.fetch_add(1, Ordering::Relaxed);
        if n < DEAD_LETTER_LOG_MAX {
            eprintln!(
                "corestream: {} error at partition {} position {}: {} (dead_letter is \"discard\": \
                 dropped, counted as dead_lettered{})",
                record.category.name(),
                record.partition,
                record.position,
                record.reason,
                if n + 1 == DEAD_LETTER_LOG_MAX { "; further errors are only counted" } else { "" }
            );
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "log (first errors to stderr, all counted)".to_string()
    }
}

/// Writes `record` as one JSON line into `out`.
pub fn encode_record(record: &DeadLetterRecord<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"category\":\"");
    out.extend_from_slice(record.category.name().as_bytes());
    out.extend_from_slice(b"\",\"stage\":\"");
    out.extend_from_slice(record.stage.name().as_bytes());
    out.extend_from_slice(b"\",\"reason\":");
    write_json_string(out, record.reason.as_bytes());
    let _ = write!(
        out,
        ",\"attempts\":{},\"partition\":{},\"position\":{}",
        record.attempts, record.partition, record.position
    );
    write_bytes_field(out, "key", record.key);
    write_bytes_field(out, "payload", record.payload);
    out.extend_from_slice(b"}\n");
}

fn write_bytes_field(out: &mut Vec<u8>, name: &str, bytes: &[u8]) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    if std::str::from_utf8(bytes).is_ok() {
        out.extend_from_slice(b"\":");
        write_json_string(out, bytes);
    } else {
        out.extend_from_slice(b"_hex\":\"");
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &b in bytes {
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        }
        out.push(b'"');
    }
}

/// Appends `bytes` (valid UTF-8) as a JSON string literal.
fn write_json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ]),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_valid_json_with_hex_for_binary() {
        let record = DeadLetterRecord {
            category: ErrorCategory::Serialization,
            stage: Stage::Processor,
            reason: "missing field \"amount\"\n",
            attempts: 1,
            partition: 2,
            position: 77,
            key: b"c-1",
            payload: b"\xff\x00bad",
        };
        let mut out = Vec::new();
        encode_record(&record, &mut out);
        let value: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(value["category"], "serialization");
        assert_eq!(value["stage"], "processor");
        assert_eq!(value["reason"], "missing field \"amount\"\n");
        assert_eq!(value["position"], 77);
        assert_eq!(value["key"], "c-1");
        assert_eq!(value["payload_hex"], "ff00626164");
        assert!(out.ends_with(b"}\n"));
    }

    #[test]
    fn file_dead_letter_appends_lines() {
        let dir = std::env::temp_dir().join(format!("cs-dlq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dlq.ndjson");
        let _ = std::fs::remove_file(&path);
        let dlq = FileDeadLetter::open(&path).unwrap();
        let mut record = DeadLetterRecord {
            category: ErrorCategory::MessageTooLarge,
            stage: Stage::Source,
            reason: "too long",
            attempts: 0,
            partition: 0,
            position: 1,
            key: b"",
            payload: b"{}",
        };
        dlq.send(&record).unwrap();
        record.position = 2;
        dlq.send(&record).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().nth(1).unwrap().contains("\"position\":2"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
