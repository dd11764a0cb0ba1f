//! From a checked [`PipelineConfig`] to a ready [`Engine`]: compiles the processor
//! chain, opens the input, checks the output and the dead-letter file.

use std::sync::Arc;

use super::{DeadLetterSpec, Diagnostic, PipelineConfig, SinkSpec, SourceSpec};
use crate::engine::{Engine, ProcessorFactory};
use crate::processor::PassThrough;
use crate::sink::dead_letter::{DeadLetter, FileDeadLetter};
use crate::sink::null::NullSinkFactory;
use crate::sink::writer::WriterSinkFactory;
use crate::sink::{Resilience, SinkFactory};
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

/// A sink that cannot be built: its message alone (the category, which drives
/// retries, means nothing to a person reading why the run did not start).
fn sink_error(e: crate::sink::SinkError) -> BuildError {
    BuildError::Io(e.message)
}

/// The processor chain of `config`, one instance per worker, compiled offline
/// (`validate`): nothing is connected.
pub fn processors(config: &PipelineConfig) -> Result<ProcessorFactory, BuildError> {
    chain(config, false)
}

/// The chain for a run: compiled, and its `enrich` steps connected to Redis (before
/// any output is opened, so a Redis that cannot be reached changes nothing on disk).
fn chain(config: &PipelineConfig, connect: bool) -> Result<ProcessorFactory, BuildError> {
    if config.steps.is_empty() {
        return Ok(Box::new(|_| Box::new(PassThrough)));
    }
    let mut pipeline = crate::config::steps::compile_steps(&config.steps, &config.text)
        .map_err(|d: Diagnostic| BuildError::Config(config.error(d)))?;
    if connect {
        pipeline
            .connect_state(config.engine.workers, config.retry.policy(), config.breaker)
            .map_err(BuildError::Io)?;
    }
    Ok(Box::new(move |_| Box::new(pipeline.clone())))
}

/// The source of `config` (the input file is opened, so a missing one fails here).
pub fn source(config: &PipelineConfig) -> Result<Box<dyn Source>, BuildError> {
    #[cfg(feature = "kafka")]
    if let SourceSpec::Kafka(spec) = &config.source {
        return kafka_source(config, spec);
    }
    let record_bytes_max = config.engine.record_bytes_max;
    Ok(match &config.source {
        SourceSpec::Generator(settings) => {
            Box::new(GeneratorSource::new(*settings).map_err(|e| BuildError::Io(e.to_string()))?)
        }
        SourceSpec::File { path, checkpoint, checkpoint_interval } => Box::new(
            FileSource::new(path, checkpoint.as_deref(), *checkpoint_interval, record_bytes_max)
                .map_err(|e| {
                    let hint = if path.exists() {
                        ""
                    } else {
                        " (paths are relative to the pipeline file; an example's dataset is \
                         made by the command in its header)"
                    };
                    BuildError::Io(format!("{e}{hint}"))
                })?,
        ),
        SourceSpec::Stdin => Box::new(StdinSource::new(record_bytes_max)),
        SourceSpec::Kafka(_) => return Err(kafka_unavailable()),
    })
}

#[cfg(feature = "kafka")]
fn kafka_source(
    config: &PipelineConfig,
    spec: &crate::kafka::KafkaSourceSpec,
) -> Result<Box<dyn Source>, BuildError> {
    use crate::source::kafka::{KafkaSource, KafkaSourceOptions};
    let creation = spec.topic_creation;
    let options = KafkaSourceOptions {
        create_topics: creation
            .create
            .then(|| crate::kafka::creation_numbers(&creation, &config.retry)),
        retry: config.retry.policy().clone(),
        actions: config.retry.action_table(),
    };
    let source =
        KafkaSource::new(spec.clone(), options).map_err(|e| BuildError::Io(e.to_string()))?;
    Ok(Box::new(source))
}

/// A Kafka type in a build without the feature (the config refuses it first; this
/// covers a `PipelineConfig` built by hand).
fn kafka_unavailable() -> BuildError {
    BuildError::Io("corestream was built without Kafka support (feature `kafka`)".to_string())
}

/// The dead-letter destination of `config`, if it names one.
pub fn dead_letter(config: &PipelineConfig) -> Result<Option<Arc<dyn DeadLetter>>, BuildError> {
    Ok(match &config.dead_letter {
        None => None,
        Some(DeadLetterSpec::Discard) => {
            Some(Arc::new(crate::sink::dead_letter::LogDeadLetter::default()))
        }
        Some(DeadLetterSpec::File { path }) => {
            Some(Arc::new(FileDeadLetter::open(path).map_err(sink_error)?))
        }
        #[cfg(feature = "kafka")]
        Some(DeadLetterSpec::Kafka(spec)) => {
            let missing =
                crate::kafka::admin::MissingTopic { create: None, policy: config.retry.policy() };
            crate::kafka::admin::ensure_topics(&spec.client, &[spec.topic.as_str()], missing)
                .map_err(BuildError::Io)?;
            Some(Arc::new(
                crate::sink::kafka::KafkaDeadLetter::new(&spec.client, &spec.topic)
                    .map_err(sink_error)?,
            ))
        }
        #[cfg(not(feature = "kafka"))]
        Some(DeadLetterSpec::Kafka(_)) => return Err(kafka_unavailable()),
    })
}

/// The sink of `config` (an output file is checked here, and opened when the
/// engine starts).
pub fn sink(config: &PipelineConfig) -> Result<Arc<dyn SinkFactory>, BuildError> {
    let dead_letter = match &config.sink {
        SinkSpec::Kafka(_) => dead_letter(config)?,
        _ => None,
    };
    sink_with_dead_letter(config, dead_letter)
}

/// The sink of `config`; a sink that dead-letters its own failures (Kafka) sends
/// them to `dead_letter` (else they are logged and counted).
pub fn sink_with_dead_letter(
    config: &PipelineConfig,
    dead_letter: Option<Arc<dyn DeadLetter>>,
) -> Result<Arc<dyn SinkFactory>, BuildError> {
    #[cfg(not(feature = "kafka"))]
    let _ = dead_letter; // only a Kafka sink dead-letters its own failures
    Ok(match &config.sink {
        SinkSpec::Null => Arc::new(NullSinkFactory),
        SinkSpec::Stdout { buffer_bytes, writer } => Arc::new(
            WriterSinkFactory::stdout(*buffer_bytes).settings(*writer).map_err(sink_error)?,
        ),
        SinkSpec::File { path, append, fsync, buffer_bytes, writer } => Arc::new(
            WriterSinkFactory::file(path, *append, *fsync, *buffer_bytes)
                .and_then(|f| f.settings(*writer))
                .map_err(sink_error)?,
        ),
        #[cfg(feature = "kafka")]
        SinkSpec::Kafka(spec) => {
            use crate::sink::kafka::{KafkaSinkFactory, KafkaSinkOptions};
            let creation = spec.topic_creation;
            let options = KafkaSinkOptions {
                create_topics: creation
                    .create
                    .then(|| crate::kafka::creation_numbers(&creation, &config.retry)),
                retry: config.retry.policy().clone(),
                actions: config.retry.action_table(),
                dead_letter: dead_letter
                    .unwrap_or_else(|| Arc::new(crate::sink::dead_letter::StopDeadLetter)),
            };
            Arc::new(KafkaSinkFactory::new(spec.clone(), options).map_err(sink_error)?)
        }
        #[cfg(not(feature = "kafka"))]
        SinkSpec::Kafka(_) => return Err(kafka_unavailable()),
    })
}

/// The whole engine described by `config`.
///
/// In the order that keeps a failed start harmless: the processor chain (pure), then
/// the source (the input is opened and checked: a missing input fails here), then
/// the dead-letter destination and the sink, which are only checked; output files
/// are created or truncated when the engine starts its workers, after rings and
/// arenas are allocated (see `sink::output_file`).
pub fn engine(config: &PipelineConfig) -> Result<Engine, BuildError> {
    let processors = chain(config, true)?;
    let source = source(config)?;
    let dead_letter = dead_letter(config)?;
    let sink = sink_with_dead_letter(config, dead_letter.clone())?;
    let mut engine = Engine::new(config.engine, source, processors, sink)
        .resilience(Resilience::from_retry(&config.retry, config.breaker));
    if let Some(sizing) = config.batch_sizing {
        engine = engine.batch_sizing(sizing);
    }
    if let Some(dead_letter) = dead_letter {
        engine = engine.dead_letter(dead_letter);
    }
    Ok(engine)
}
