//! From a checked [`PipelineConfig`] to a ready [`Engine`]: opens the input, the
//! output and the dead-letter file, compiles the processor chain.

use std::sync::Arc;

use super::{DeadLetterSpec, Diagnostic, PipelineConfig, SinkSpec, SourceSpec};
use crate::engine::{Engine, ProcessorFactory};
use crate::processor::PassThrough;
use crate::sink::SinkFactory;
use crate::sink::dead_letter::FileDeadLetter;
use crate::sink::null::NullSinkFactory;
use crate::sink::writer::WriterSinkFactory;
use crate::source::Source;
use crate::source::file::{FileSource, StdinSource};
use crate::source::generator::GeneratorSource;

/// Why a pipeline could not be assembled.
#[derive(Debug)]
pub enum BuildError {
    /// A mistake in the file (a step that does not compile): points at the line.
    Config(super::ConfigError),
    /// The input, output or dead-letter file cannot be opened.
    Io(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Config(e) => e.fmt(f),
            BuildError::Io(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for BuildError {}

/// The processor chain of `config`, one instance per worker.
pub fn processors(config: &PipelineConfig) -> Result<ProcessorFactory, BuildError> {
    if config.steps.is_empty() {
        return Ok(Box::new(|_| Box::new(PassThrough)));
    }
    let pipeline = crate::transform::compile_steps(&config.steps, &config.text)
        .map_err(|d: Diagnostic| BuildError::Config(config.error(d)))?;
    Ok(Box::new(move |_| Box::new(pipeline.clone())))
}

/// The source of `config` (the input file is opened, so a missing one fails here).
pub fn source(config: &PipelineConfig) -> Result<Box<dyn Source>, BuildError> {
    let record_bytes_max = config.engine.record_bytes_max;
    Ok(match &config.source {
        SourceSpec::Generator(settings) => {
            Box::new(GeneratorSource::new(*settings).map_err(|e| BuildError::Io(e.to_string()))?)
        }
        SourceSpec::File { path, checkpoint, checkpoint_interval } => Box::new(
            FileSource::new(path, checkpoint.as_deref(), *checkpoint_interval, record_bytes_max)
                .map_err(|e| BuildError::Io(e.to_string()))?,
        ),
        SourceSpec::Stdin => Box::new(StdinSource::new(record_bytes_max)),
    })
}

/// The sink of `config` (an output file is created or opened here).
pub fn sink(config: &PipelineConfig) -> Result<Arc<dyn SinkFactory>, BuildError> {
    Ok(match &config.sink {
        SinkSpec::Null => Arc::new(NullSinkFactory),
        SinkSpec::Stdout { buffer_bytes } => Arc::new(WriterSinkFactory::stdout(*buffer_bytes)),
        SinkSpec::File { path, append, fsync, buffer_bytes } => Arc::new(
            WriterSinkFactory::file(path, *append, *fsync, *buffer_bytes)
                .map_err(|e| BuildError::Io(e.to_string()))?,
        ),
    })
}

/// The whole engine described by `config`.
pub fn engine(config: &PipelineConfig) -> Result<Engine, BuildError> {
    let processors = processors(config)?;
    let source = source(config)?;
    let sink = sink(config)?;
    let mut engine = Engine::new(config.engine, source, processors, sink);
    if let Some(DeadLetterSpec::File { path }) = &config.dead_letter {
        engine = engine.dead_letter(Arc::new(
            FileDeadLetter::open(path).map_err(|e| BuildError::Io(e.to_string()))?,
        ));
    }
    Ok(engine)
}
