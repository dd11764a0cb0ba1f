//! Where a writer's bytes go (a file, stdout, any `Write`), and cutting a torn last
//! line off a file a crashed run was appending to.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::settings::Compression;
use crate::sink::SinkError;

/// Where the bytes go.
pub(super) enum Target {
    /// A file checked but not yet touched: created, truncated or cut back by
    /// [`Target::prepare`] when the first worker opens its sink (see
    /// [`super::output_file`]).
    Pending {
        path: PathBuf,
        append: bool,
        fsync: bool,
    },
    File {
        file: File,
        path: PathBuf,
        fsync: bool,
        /// Bytes of complete writes: a failed write is cut back to this length.
        len: u64,
        /// A regular file (only those can be cut back; not `/dev/...` or a FIFO).
        regular: bool,
    },
    Stdout,
    /// Any writer (a socket, a pipe, a test double).
    Custom {
        name: String,
        writer: Box<dyn Write + Send>,
    },
}

impl Target {
    /// Opens a pending file: appending (after cutting a torn last line off an
    /// uncompressed file) or truncating. Once; later calls do nothing.
    pub(super) fn prepare(&mut self, compression: Compression) -> Result<(), SinkError> {
        let Target::Pending { path, append, fsync } = self else {
            return Ok(());
        };
        let (append, fsync) = (*append, *fsync);
        let path = std::mem::take(path);
        if append && compression == Compression::None {
            let cut = cut_torn_tail(&path).map_err(|e| {
                SinkError::io(&format!("cannot check the end of {}", path.display()), &e)
            })?;
            if cut > 0 {
                eprintln!(
                    "corestream: cut a torn last line ({cut} bytes) off {}: a previous run \
                     stopped in the middle of a write; its messages are written again",
                    path.display()
                );
            }
        }
        let mut options = OpenOptions::new();
        options.create(true);
        if append {
            options.append(true);
        } else {
            options.write(true).truncate(true);
        }
        let open_error = |e: &std::io::Error| {
            SinkError::io(&format!("cannot open sink file {}", path.display()), e)
        };
        let file = options.open(&path).map_err(|e| open_error(&e))?;
        let metadata = file.metadata().map_err(|e| open_error(&e))?;
        let len = if append { metadata.len() } else { 0 };
        *self = Target::File { file, path, fsync, len, regular: metadata.is_file() };
        Ok(())
    }

    pub(super) fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Target::Pending { .. } => Err(std::io::Error::other("the sink file was never opened")),
            Target::File { file, path, len, regular, .. } => match file.write_all(bytes) {
                Ok(()) => {
                    *len += bytes.len() as u64;
                    Ok(())
                }
                Err(error) => {
                    // Cut back a partial write so the file holds complete lines (and
                    // complete compression frames) only.
                    if *regular
                        && let Err(cut_error) =
                            file.set_len(*len).and_then(|()| file.seek(SeekFrom::Start(*len)))
                    {
                        // Reported on its own line: folded into the write error, its
                        // text would take part in categorising that error.
                        eprintln!(
                            "corestream: {}: a failed write could not be cut back to {} bytes \
                             ({cut_error}); the file may end with a partial line",
                            path.display(),
                            len
                        );
                    }
                    Err(error)
                }
            },
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Target::Custom { writer, .. } => {
                writer.write_all(bytes)?;
                writer.flush()
            }
        }
    }

    pub(super) fn sync(&mut self) -> std::io::Result<()> {
        match self {
            Target::File { file, fsync: true, .. } => file.sync_data(),
            _ => Ok(()),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Target::File { path, .. } | Target::Pending { path, .. } => {
                format!("file {}", path.display())
            }
            Target::Stdout => "stdout".to_string(),
            Target::Custom { name, .. } => name.clone(),
        }
    }
}

/// Cuts a torn last line off an uncompressed output file about to be appended to:
/// a crash (kill -9) in the middle of a write can leave part of a line at the end,
/// and the next run would glue its first line onto it. The torn line's batch was
/// never acknowledged, so the resumed run writes it again in full. Returns the bytes
/// cut (0 when the file is absent, empty, not a regular file or ends with `\n`).
pub fn cut_torn_tail(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    // Look before opening: opening a FIFO (or a device) has effects of its own (a
    // reader of the FIFO would see this open and close as a writer come and gone).
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = metadata.len();
    if !metadata.is_file() || len == 0 {
        return Ok(0);
    }
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    // Scan back in blocks for the last newline.
    let mut block = [0u8; 4096];
    let mut end = len;
    loop {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if end == len && chunk.last() == Some(&b'\n') {
            return Ok(0);
        }
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            let keep = start + i as u64 + 1;
            file.set_len(keep)?;
            return Ok(len - keep);
        }
        if start == 0 {
            file.set_len(0)?;
            return Ok(len);
        }
        end = start;
    }
}
