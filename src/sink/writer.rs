//! File and stdout sinks: newline-delimited payloads, buffered per worker.
//!
//! Each worker appends `payload \n` to its own buffer (allocated once) and writes the
//! whole buffer to the shared destination under a lock when it is full, when the
//! worker runs out of input, and at shutdown. One lock per buffer (256 KiB by
//! default), not per message. Lines of one worker stay in order, so order per key
//! holds in the output. A batch is acknowledged once its bytes were handed to the
//! OS (`write(2)`); with `fsync = true` only after `fsync(2)`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{PendingTickets, Sink, SinkError, SinkFactory};
use crate::ack::{Acker, Ticket};
use crate::message::Output;

/// Where the bytes go.
enum Target {
    File { file: File, path: PathBuf, fsync: bool },
    Stdout,
}

impl Target {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Target::File { file, .. } => file.write_all(bytes),
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
        }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        match self {
            Target::File { file, fsync: true, .. } => file.sync_data(),
            _ => Ok(()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::File { path, .. } => format!("file {}", path.display()),
            Target::Stdout => "stdout".to_string(),
        }
    }
}

/// Factory for file and stdout sinks: opens the destination once, shared by all
/// workers' sinks.
pub struct WriterSinkFactory {
    target: Arc<Mutex<Target>>,
    buffer_bytes: usize,
    description: String,
}

impl WriterSinkFactory {
    /// A file sink; `append` keeps existing content (needed to resume after a crash
    /// without losing output), otherwise the file is truncated.
    pub fn file(
        path: &Path,
        append: bool,
        fsync: bool,
        buffer_bytes: usize,
    ) -> Result<Self, SinkError> {
        let mut options = OpenOptions::new();
        options.create(true);
        if append {
            options.append(true);
        } else {
            options.write(true).truncate(true);
        }
        let file = options
            .open(path)
            .map_err(|e| SinkError::io(&format!("cannot open sink file {}", path.display()), &e))?;
        let target = Target::File { file, path: path.to_path_buf(), fsync };
        let description = target.describe();
        Ok(WriterSinkFactory { target: Arc::new(Mutex::new(target)), buffer_bytes, description })
    }

    /// The standard output.
    pub fn stdout(buffer_bytes: usize) -> Self {
        WriterSinkFactory {
            target: Arc::new(Mutex::new(Target::Stdout)),
            buffer_bytes,
            description: "stdout".to_string(),
        }
    }
}

impl SinkFactory for WriterSinkFactory {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn open(&self, _worker: usize, acker: Acker) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(WriterSink {
            target: self.target.clone(),
            buffer: Vec::with_capacity(self.buffer_bytes),
            buffer_bytes: self.buffer_bytes,
            pending: PendingTickets::default(),
            acker,
        }))
    }
}

/// One worker's buffered writer.
pub struct WriterSink {
    target: Arc<Mutex<Target>>,
    /// Capacity fixed at `buffer_bytes`; never grows except for a single line longer
    /// than the whole buffer, which is written directly.
    buffer: Vec<u8>,
    buffer_bytes: usize,
    /// Tickets whose bytes are in `buffer`.
    pending: PendingTickets,
    acker: Acker,
}

impl WriterSink {
    fn write_out(&mut self) -> Result<(), SinkError> {
        if !self.buffer.is_empty() {
            let mut target = self.target.lock();
            let result = target.write_all(&self.buffer).and_then(|()| target.sync());
            result.map_err(|e| SinkError::io(&format!("write to {}", target.describe()), &e))?;
            self.buffer.clear();
        }
        self.pending.release(&self.acker);
        Ok(())
    }
}

impl Sink for WriterSink {
    #[inline]
    fn write(&mut self, outputs: &[Output<'_>], ticket: Ticket) -> Result<(), SinkError> {
        for output in outputs {
            let need = output.payload.len() + 1;
            if self.buffer.len() + need > self.buffer_bytes {
                // Bytes of earlier, complete batches are in the buffer: write them
                // first. Their tickets are released; this batch's is not yet pending.
                self.write_out()?;
                if need > self.buffer_bytes {
                    // A line longer than the whole buffer: write it straight through.
                    let mut target = self.target.lock();
                    let result =
                        target.write_all(output.payload).and_then(|()| target.write_all(b"\n"));
                    result.map_err(|e| {
                        SinkError::io(&format!("write to {}", target.describe()), &e)
                    })?;
                    continue;
                }
            }
            self.buffer.extend_from_slice(output.payload);
            self.buffer.push(b'\n');
        }
        self.pending.push(ticket);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.write_out()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::{AckQueue, Watermarks};

    #[test]
    fn file_sink_writes_lines_and_acknowledges_only_after_writing() {
        let dir = std::env::temp_dir().join(format!("cs-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.ndjson");
        let factory = WriterSinkFactory::file(&path, false, false, 16).unwrap();
        let watermarks = Arc::new(Watermarks::new(1));
        let mut queue = AckQueue::with_capacity(8, watermarks.clone());
        let mut sink = factory.open(0, queue.acker()).unwrap();

        let mut builder = queue.builder();
        builder.note(0, 10);
        let ticket = queue.issue(builder);
        let outputs = [
            Output { payload: b"first", ..Default::default() },
            Output { payload: b"second", ..Default::default() },
        ];
        sink.write(&outputs, ticket).unwrap();
        assert_eq!(queue.poll(), 0, "buffered bytes are not acknowledged");
        sink.flush().unwrap();
        assert_eq!(queue.poll(), 1);
        assert_eq!(watermarks.acknowledged(0), Some(10));

        // A line longer than the 16-byte buffer goes straight through.
        let ticket = queue.issue(queue.builder());
        let long = [Output { payload: b"a line longer than sixteen bytes", ..Default::default() }];
        sink.write(&long, ticket).unwrap();
        sink.close().unwrap();
        assert_eq!(queue.poll(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "first\nsecond\na line longer than sixteen bytes\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn opening_a_file_in_a_missing_directory_is_a_clear_error() {
        let err = WriterSinkFactory::file(Path::new("/nonexistent-dir/x/out"), false, false, 64)
            .err()
            .expect("must fail");
        assert!(err.message.contains("/nonexistent-dir/x/out"), "{err}");
    }
}
