//! Output files checked before they are touched (cold path, at build time).
//!
//! A pipeline is assembled before it starts, and a start can still fail (an input
//! that cannot be opened, memory that cannot be allocated, a broker that is down).
//! So building a file sink or a dead-letter file only *checks* that the file could
//! be opened for writing; the file is created, truncated or cut back when the first
//! worker opens its sink, after everything else has started. A run that fails at
//! start leaves every file as it was.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::SinkError;
use crate::retry::ErrorCategory;

/// Checks, without creating, truncating or opening anything that opening could
/// disturb, that `path` can be opened for writing. `what` names the file in errors
/// ("sink file", "dead-letter file").
///
/// - an existing regular file: must be writable;
/// - a FIFO or a device (e.g. `/dev/null`, `/dev/full`): must be writable, and is
///   not opened here (opening a FIFO is visible to its reader);
/// - a directory: refused;
/// - absent: its directory must exist and be writable.
pub fn check_writable(path: &Path, what: &str) -> Result<(), SinkError> {
    let fail = |reason: String| {
        SinkError::new(
            ErrorCategory::Configuration,
            format!("cannot open {what} {}: {reason}", path.display()),
        )
    };
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.is_dir() => Err(fail("it is a directory".into())),
        Ok(_) => access_writable(path).map_err(|e| fail(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            match std::fs::metadata(parent) {
                Ok(m) if m.is_dir() => access_writable(parent).map_err(|e| {
                    fail(format!("cannot create a file in {}: {e}", parent.display()))
                }),
                Ok(_) => Err(fail(format!("{} is not a directory", parent.display()))),
                Err(e) => Err(fail(format!("directory {}: {e}", parent.display()))),
            }
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// `access(2)` with `W_OK`: the kernel's answer for this process's credentials.
fn access_writable(path: &Path) -> std::io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path holds a NUL"))?;
    // SAFETY: `c_path` is a valid NUL-terminated string for the duration of the call.
    if unsafe { libc::access(c_path.as_ptr(), libc::W_OK) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_change_nothing_and_refuse_what_cannot_be_written() {
        let dir = std::env::temp_dir().join(format!("cs-check-writable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let existing = dir.join("existing");
        std::fs::write(&existing, "keep me\n").unwrap();
        check_writable(&existing, "sink file").unwrap();
        assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me\n");

        let absent = dir.join("absent");
        check_writable(&absent, "sink file").unwrap();
        assert!(!absent.exists(), "a check must not create the file");

        let err = check_writable(&dir, "sink file").unwrap_err();
        assert!(err.message.contains("is a directory"), "{err}");
        let err = check_writable(&dir.join("no/such/dir/out"), "dead-letter file").unwrap_err();
        assert!(err.message.contains("dead-letter file") && err.message.contains("no/such/dir"));
        let err = check_writable(&existing.join("under-a-file"), "sink file").unwrap_err();
        assert!(err.message.to_lowercase().contains("not a directory"), "{err}");
        check_writable(Path::new("/dev/null"), "sink file").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
