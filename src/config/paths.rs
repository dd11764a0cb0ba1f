//! The files a pipeline reads and writes must be different files (cold path).
//!
//! A sink file equal to the input would be truncated before it is read; a
//! dead-letter file equal to the checkpoint would corrupt both. Paths are compared
//! as files, not as text: two spellings (`./in.ndjson`, `dir/../in.ndjson`, a
//! symlink, a hard link) of one file are the same file. Devices and FIFOs
//! (`/dev/null`, `/dev/stdout`) are not files whose content a run could destroy,
//! and may be named twice.

use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Diagnostic;

/// One path of the pipeline: its key in the file (`sink.path`), the path resolved
/// against the pipeline file's directory, and the span of the value.
pub struct NamedPath<'a> {
    pub key: &'static str,
    pub path: &'a Path,
    pub span: Range<usize>,
}

/// What identifies a file: device and inode when it exists, else where it would be
/// created (its directory, canonical, and its name).
#[derive(PartialEq, Eq)]
enum Identity {
    Inode(u64, u64),
    Future(PathBuf),
}

fn identity(path: &Path) -> Option<Identity> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Some(Identity::Inode(m.dev(), m.ino())),
        // A directory, a device, a FIFO: not a file a run could overwrite (others
        // report a directory where a file is needed).
        Ok(_) => None,
        Err(_) => {
            let name = path.file_name()?;
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let parent = std::fs::canonicalize(parent).ok()?;
            Some(Identity::Future(parent.join(name)))
        }
    }
}

/// Refuses two keys naming one file, at the later value.
pub fn check_distinct(paths: &[NamedPath<'_>]) -> Result<(), Diagnostic> {
    let identities: Vec<Option<Identity>> = paths.iter().map(|p| identity(p.path)).collect();
    for (later, later_id) in identities.iter().enumerate() {
        let Some(later_id) = later_id else { continue };
        for earlier in 0..later {
            if identities[earlier].as_ref() != Some(later_id) {
                continue;
            }
            let (a, b) = (&paths[earlier], &paths[later]);
            return Err(Diagnostic::new(
                Some(b.span.clone()),
                format!(
                    "{} is the same file as {} ({}): {}",
                    b.key,
                    a.key,
                    a.path.display(),
                    consequence(a.key, b.key)
                ),
            )
            .hint(
                "source.path, source.checkpoint, sink.path and dead_letter.path each need a \
                 file of their own",
            ));
        }
    }
    Ok(())
}

/// What running with the two keys on one file would do.
fn consequence(a: &str, b: &str) -> &'static str {
    match (a, b) {
        ("source.path", "sink.path") => "the run would truncate (or append to) its own input",
        ("source.path", _) => "the run would write into its own input",
        (_, "source.checkpoint") | ("source.checkpoint", _) => {
            "the checkpoint would be overwritten by, or overwrite, other data"
        }
        _ => "two writers would interleave their lines in one file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named<'a>(key: &'static str, path: &'a Path) -> NamedPath<'a> {
        NamedPath { key, path, span: 0..1 }
    }

    #[test]
    fn one_file_under_two_spellings_is_refused() {
        let dir = std::env::temp_dir().join(format!("cs-paths-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let input = dir.join("in.ndjson");
        std::fs::write(&input, "{}\n").unwrap();
        let link = dir.join("link.ndjson");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let dotted = dir.join("sub/../in.ndjson");

        for same in [&input, &link, &dotted] {
            let err = check_distinct(&[named("source.path", &input), named("sink.path", same)])
                .unwrap_err();
            assert!(err.message.contains("sink.path is the same file as source.path"), "{err:?}");
            assert!(err.message.contains("truncate"), "{err:?}");
        }
        // Files that do not exist yet: compared by where they would be created.
        let absent = dir.join("out.ndjson");
        let absent_dotted = dir.join("sub/../out.ndjson");
        let err = check_distinct(&[
            named("source.path", &input),
            named("sink.path", &absent),
            named("dead_letter.path", &absent_dotted),
        ])
        .unwrap_err();
        assert!(err.message.starts_with("dead_letter.path is the same file as sink.path"));

        check_distinct(&[
            named("source.path", &input),
            named("source.checkpoint", &dir.join("in.ckpt")),
            named("sink.path", &absent),
            named("dead_letter.path", Path::new("/dev/null")),
        ])
        .unwrap();
        // Devices may be named twice.
        check_distinct(&[
            named("sink.path", Path::new("/dev/null")),
            named("dead_letter.path", Path::new("/dev/null")),
        ])
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
