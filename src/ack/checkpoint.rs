//! Checkpoint files: the acknowledged position of a file source, written atomically.
//!
//! Format: one line of text, `corestream-checkpoint v1 position=<u64> read=<u64>`,
//! where `position` is the byte offset up to which every line is acknowledged and
//! `read` is the read limit: the run that wrote it hands no line past `read` to a
//! worker until a checkpoint with a larger limit is on disk (see
//! `crate::source::file`). After a crash, every line the run can have delivered
//! lies in `position..=read`: the replay window, whose lines are counted as
//! `replayed`. Written to `<path>.tmp` then renamed over `<path>`, so a crash
//! leaves either the old or the new checkpoint, never half of one.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A checkpoint as stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every byte before this offset has been acknowledged.
    pub position: u64,
    /// The read limit (>= position): no line past it was handed to a worker by the
    /// run that wrote this checkpoint, as long as this is the latest one.
    pub read: u64,
}

const MAGIC: &str = "corestream-checkpoint v1";

/// Reads a checkpoint; `Ok(None)` when the file does not exist.
pub fn load(path: &Path) -> io::Result<Option<Checkpoint>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    parse(&text).map(Some).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: not a corestream checkpoint (expected `{MAGIC} position=N read=N`)",
                path.display()
            ),
        )
    })
}

fn parse(text: &str) -> Option<Checkpoint> {
    let rest = text.trim_end().strip_prefix(MAGIC)?;
    let mut position = None;
    let mut read = None;
    for field in rest.split_whitespace() {
        let (key, value) = field.split_once('=')?;
        let value: u64 = value.parse().ok()?;
        match key {
            "position" => position = Some(value),
            "read" => read = Some(value),
            _ => return None,
        }
    }
    let checkpoint = Checkpoint { position: position?, read: read? };
    (checkpoint.read >= checkpoint.position).then_some(checkpoint)
}

/// Writes a checkpoint atomically (temporary file, fsync, rename).
pub fn store(path: &Path, checkpoint: Checkpoint) -> io::Result<()> {
    let tmp = tmp_path(path);
    let mut file = fs::File::create(&tmp)?;
    writeln!(file, "{MAGIC} position={} read={}", checkpoint.position, checkpoint.read)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_then_load_round_trips_and_missing_is_none() {
        let dir = std::env::temp_dir().join(format!("cs-ckpt-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("source.ckpt");
        let _ = fs::remove_file(&path);
        assert_eq!(load(&path).unwrap(), None);
        store(&path, Checkpoint { position: 42, read: 100 }).unwrap();
        assert_eq!(load(&path).unwrap(), Some(Checkpoint { position: 42, read: 100 }));
        store(&path, Checkpoint { position: 50, read: 50 }).unwrap();
        assert_eq!(load(&path).unwrap(), Some(Checkpoint { position: 50, read: 50 }));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        for bad in [
            "",
            "position=1 read=2",
            "corestream-checkpoint v1 position=x read=1",
            "corestream-checkpoint v1 position=5 read=1",
            "corestream-checkpoint v1 position=1",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let dir = std::env::temp_dir().join(format!("cs-ckpt-bad-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.ckpt");
        fs::write(&path, "hello").unwrap();
        let err = load(&path).unwrap_err();
        assert!(err.to_string().contains("bad.ckpt"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
