//! The `corestream` command line: `run`, `bench`, `validate`, `check`, `top`.
//!
//! Exit codes (also in the README):
//! - 0: success (end of input, or a clean shutdown after SIGINT/SIGTERM)
//! - 1: the pipeline failed while running (a source or sink error)
//! - 2: invalid configuration or command line
//! - 3: an input, output or dead-letter file cannot be opened, the observe address
//!   cannot be listened on, or (`check`) the Kafka brokers cannot be reached or a
//!   topic is missing
//! - 130: a second SIGINT/SIGTERM during shutdown (immediate exit)

// Defined before the submodules so they can use it.
/// Prints like `println!`; a closed stdout (`| head`) is not an error.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod bench;
pub mod check;
pub mod report;
pub mod test;
#[cfg(feature = "top")]
pub mod top;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::PipelineConfig;
use crate::config::build::{self, BuildError};
use crate::observe::{AddressOrigin, Attached, ObserveServer};

pub const EXIT_OK: i32 = 0;
pub const EXIT_RUNTIME: i32 = 1;
pub const EXIT_CONFIG: i32 = 2;
pub const EXIT_IO: i32 = 3;
pub const EXIT_INTERRUPTED: i32 = 130;

/// corestream: move and transform messages at the speed of the hardware.
#[derive(Debug, Parser)]
#[command(name = "corestream", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline described by a TOML file until its input ends (or Ctrl-C).
    Run {
        /// The pipeline file.
        config: PathBuf,
        /// Seconds between progress lines on stderr (0: none). Default: 1 on a
        /// terminal, none otherwise.
        #[arg(long)]
        progress_secs: Option<u64>,
        /// Serve /metrics, /stats, /ping and /ready on this IP:port ("off": no
        /// server). Overrides the file's [observe]; default 127.0.0.1:9464.
        #[arg(long, value_name = "ADDRESS|off")]
        observe: Option<String>,
    },
    /// Check a pipeline file offline and print the compiled pipeline.
    Validate {
        /// The pipeline files (each is checked; the exit code is the worst).
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
    /// Run the unit tests of a pipeline's processor chain, offline (exit 0 passed,
    /// 1 a test failed, 2 invalid pipeline or tests).
    Test {
        /// The pipeline file.
        config: PathBuf,
        /// The test file (default: beside the pipeline, `<name>.test.toml`).
        #[arg(long)]
        tests: Option<PathBuf>,
    },
    /// Measure the engine: generator -> processor -> null.
    Bench(bench::BenchArgs),
    /// Connect to the pipeline's Kafka brokers and report brokers, topics and
    /// partitions (exit 3 when a broker cannot be reached or a topic is missing).
    Check {
        /// The pipeline file.
        config: PathBuf,
        /// Seconds to wait for the brokers before giving up.
        #[arg(long, default_value_t = 10)]
        timeout_secs: u64,
    },
    /// A live view of a running engine from its observe server's /stats (q quits).
    #[cfg(feature = "top")]
    Top(top::TopArgs),
}

/// Parses the command line and runs it; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_CONFIG } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Run { config, progress_secs, observe } => {
            run(&config, progress_secs, observe.as_deref())
        }
        Command::Validate { configs } => {
            // Every file is checked, in order; the exit code is the worst one's.
            let mut worst = EXIT_OK;
            for (i, config) in configs.iter().enumerate() {
                if i > 0 {
                    out!("");
                }
                worst = worst.max(validate(config));
            }
            worst
        }
        Command::Test { config, tests } => test::run(&config, tests.as_deref()),
        Command::Bench(args) => bench::run(&args),
        Command::Check { config, timeout_secs } => check::run(&config, timeout_secs),
        #[cfg(feature = "top")]
        Command::Top(args) => top::run(&args),
    }
}

/// Reads and checks the pipeline file, printing its warnings.
fn load(path: &std::path::Path) -> Result<PipelineConfig, i32> {
    let config = PipelineConfig::load(path).map_err(|e| {
        eprintln!("{e}");
        EXIT_CONFIG
    })?;
    for warning in &config.warnings {
        eprintln!("corestream: warning: {warning}");
    }
    Ok(config)
}

fn build_error(e: BuildError) -> i32 {
    match e {
        BuildError::Config(e) => {
            eprintln!("{e}");
            EXIT_CONFIG
        }
        BuildError::Io(e) => {
            eprintln!("corestream: {e}");
            EXIT_IO
        }
    }
}

/// Installs SIGINT/SIGTERM handling: the first signal sets the returned flag (a
/// clean shutdown follows); a second one exits at once with code 130.
pub fn install_signals() -> std::io::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // Order matters: the conditional exit sees the flag set by the first signal.
        signal_hook::flag::register_conditional_shutdown(signal, EXIT_INTERRUPTED, flag.clone())?;
        signal_hook::flag::register(signal, flag.clone())?;
    }
    Ok(flag)
}

/// Starts the observe server that `config` and the `--observe` flag ask for: `None`
/// when it is off, or when the default address is taken (a warning: nobody asked
/// for that port); an address the user chose that cannot be bound is an error.
fn observe_server(
    config: &PipelineConfig,
    flag: Option<&str>,
) -> Result<Option<ObserveServer>, i32> {
    let settings = match flag {
        Some(value) => config.observe.clone().with_flag(value).map_err(|e| {
            eprintln!("corestream: {e}");
            EXIT_CONFIG
        })?,
        None => config.observe.clone(),
    };
    if !settings.enabled {
        return Ok(None);
    }
    match ObserveServer::start(&settings) {
        Ok(server) => {
            eprintln!(
                "corestream: observe: http://{} (/metrics /stats /ping /ready)",
                server.address()
            );
            Ok(Some(server))
        }
        Err(e) if e.in_use() && settings.address_origin == AddressOrigin::Default => {
            eprintln!("corestream: warning: {e}; running without the observe server");
            Ok(None)
        }
        Err(e) => {
            eprintln!("corestream: {e}");
            Err(EXIT_IO)
        }
    }
}

fn run(path: &std::path::Path, progress_secs: Option<u64>, observe: Option<&str>) -> i32 {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let engine = match build::engine(&config) {
        Ok(e) => e,
        Err(e) => return build_error(e),
    };
    // Before the engine starts, so a taken port stops the run before any output file
    // is created or truncated, and `/ready` answers 503 until the engine runs.
    let server = match observe_server(&config, observe) {
        Ok(server) => server,
        Err(code) => return code,
    };
    let signals = match install_signals() {
        Ok(flag) => flag,
        Err(e) => {
            eprintln!("corestream: cannot install signal handlers: {e}");
            return EXIT_RUNTIME;
        }
    };
    let running = match engine.start() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("corestream: {e}");
            return EXIT_RUNTIME;
        }
    };
    if let Some(server) = &server {
        server.attach(Attached {
            metrics: running.metrics().clone(),
            source: config.source.to_string(),
            sink: config.sink.to_string(),
        });
    }
    let interval = match progress_secs {
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s)),
        None => std::io::stderr().is_terminal().then_some(Duration::from_secs(1)),
    };
    let mut progress = report::Progress::new(interval);
    if config.batch_sizing.is_some() {
        progress = progress.with_batch_sizes(config.engine.workers);
    }
    let mut stopping = false;
    while !running.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        if signals.load(Ordering::Relaxed) && !stopping {
            stopping = true;
            eprintln!(
                "\ncorestream: stopping: draining rings and flushing sinks (press Ctrl-C again to exit at once)"
            );
            running.stop();
        }
        progress.tick(running.metrics());
    }
    progress.finish();
    match running.join() {
        Ok(report) => {
            eprintln!(
                "{}",
                report::summary(
                    &report.snapshot,
                    config.engine.workers,
                    config.batch_sizing.as_ref()
                )
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("corestream: {e}");
            EXIT_RUNTIME
        }
    }
}

fn validate(path: &std::path::Path) -> i32 {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let chain = match build::processors(&config) {
        Ok(_) => crate::config::steps::describe_steps(&config.steps, &config.text),
        Err(e) => return build_error(e),
    };
    out!("{}: valid", path.display());
    out!("engine: {}", crate::config::DisplayEngine(&config.engine));
    out!("source: {}", config.source);
    // The chain's description starts with its own "pipeline:" heading.
    out!(
        "processor chain: {}",
        chain.trim_start().strip_prefix("pipeline: ").unwrap_or(chain.trim_start())
    );
    out!("sink: {}", config.sink);
    out!(
        "sink circuit breaker: opens after {} consecutive failures for {}",
        config.breaker.failures_to_open,
        crate::parse::duration::DisplayDuration(config.breaker.cool_down)
    );
    match &config.batch_sizing {
        Some(s) => out!(
            "batch size: adaptive from {} within {}..={} toward {} per batch",
            config.engine.batch_records,
            s.records_min,
            s.records_max,
            crate::parse::duration::DisplayDuration(s.time_target)
        ),
        None => out!("batch size: fixed at {}", config.engine.batch_records),
    }
    match &config.dead_letter {
        Some(crate::config::DeadLetterSpec::Discard) => out!(
            "dead_letter: discard (failed messages are dropped: counted, the first {} logged)",
            crate::sink::dead_letter::DEAD_LETTER_LOG_MAX
        ),
        Some(crate::config::DeadLetterSpec::File { path }) => {
            out!("dead_letter: file {}", path.display())
        }
        Some(crate::config::DeadLetterSpec::Kafka(k)) => out!("dead_letter: {k}"),
        None => out!(
            "dead_letter: none (the first failed message stops the run, unacknowledged; \
             add [dead_letter] type = \"file\" to keep failures or \"discard\" to drop them)"
        ),
    }
    // Its own heading: "retry:", each value with where it came from.
    out!("{}", config.retry.to_string().trim_end());
    if config.observe.enabled {
        out!(
            "observe: http://{} (/metrics /stats /ping /ready; `run --observe off` to disable)",
            config.observe.address
        );
    } else {
        out!("observe: off");
    }
    EXIT_OK
}
