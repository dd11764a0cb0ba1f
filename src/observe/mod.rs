//! Observe a running engine over HTTP: `/metrics` (Prometheus text), `/stats` (one
//! JSON document), `/ping` and `/ready` (probes).
//!
//! ```text
//!            accept thread ──bounded queue──► handler threads (OBSERVE_HANDLERS)
//!  client ──►  (full: 503 at once)              read ≤ REQUEST_HEAD_BYTES_MAX under a
//!                                               deadline, parse (httparse), answer, close
//!                                                    │ reads, never writes
//!  sampler thread: every second, the counter totals ─┤
//!  into a ring of RATE_SAMPLES (rates over 1/10/60 s) ▼
//!                                     engine::Metrics (sharded counters, histograms)
//! ```
//!
//! Nothing here runs on a worker. The workers never wait for it: counters are read
//! with relaxed loads of single-writer slots, and the latency histograms are merged
//! from each worker's shared copy, which a worker publishes with `try_lock` (a scrape
//! holding the lock only postpones that worker's next publish, see
//! [`crate::metrics::latency`]). The server threads allocate per request (the
//! exposition text, the JSON document, one merged histogram); the data path does not.
//!
//! **Crates.** HTTP: a small server on `std::net` with `httparse` (hyper's request
//! parser, fuzzed, no allocation) for the request head, rather than `tiny_http`,
//! which spawns a thread per concurrent connection and reads header lines without a
//! length limit, so a client could grow threads and memory at will. Here every
//! bound is a constant below: threads, queued connections, request bytes, headers,
//! and time per connection. The Prometheus text (format 0.0.4) is written by hand in
//! [`prometheus`], not with `prometheus-client`: its histograms record values one by
//! one into fixed buckets, while ours are built at scrape time from the HDR
//! histograms, and its encoder writes OpenMetrics text (counter families named
//! without `_total`), which `promtool check metrics` rejects.
//!
//! **Readiness.** `/ready` is 200 while the engine's [`Phase`] is `Running` (the
//! source reads and every worker runs) and every worker's sink breaker is closed;
//! 503 before the engine is attached, while it starts, drains, after it finished,
//! and while some worker's circuit breaker is open or half-open (each worker
//! publishes its breaker's state in the `BreakerOpen` gauge,
//! `corestream_worker_breaker_open` in `/metrics`).
//!
//! Configured by `[observe]` in the pipeline file (`enabled`, `address`) and
//! `corestream run --observe ADDRESS|off`; see [`ObserveSettings`].

pub mod http;
pub mod process;
pub mod prometheus;
pub mod stats;

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

use hdrhistogram::Histogram;

use crate::engine::{Metrics, Phase};
use crate::metrics::counters::SHARD_SLOTS;
use crate::metrics::latency::new_histogram;

/// Default listening address: loopback only, so nothing is exposed off the machine
/// unless an operator asks. 9464 is the port commonly used by Prometheus exporters
/// of application runtimes.
pub const OBSERVE_ADDRESS_DEFAULT: &str = "127.0.0.1:9464";

/// Threads answering requests. Two keep one slow client from delaying a scrape;
/// each holds one request buffer.
pub const OBSERVE_HANDLERS: usize = 2;

/// Accepted connections waiting for a handler; beyond this a new connection gets
/// 503 at once and is closed (thousands of idle connections cost one socket each
/// for at most a request deadline, never a thread).
pub const CONNECTIONS_QUEUED_MAX: usize = 32;

/// Longest request head (request line and headers). Our endpoints take no body;
/// 8 KiB is what most servers accept. Memory: this much per handler, allocated once.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;

/// Most headers a request may carry (parsed into a stack array).
pub const REQUEST_HEADERS_MAX: usize = 32;

/// Default time a client has to send its whole request head; a slow or idle client
/// holds a handler at most this long (plus [`RESPONSE_WRITE_TIMEOUT`]).
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// Time a response write may block on a client that does not read.
pub const RESPONSE_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Samples kept for rates and windowed latency: one per second, so 60 s back plus
/// the newest. Memory: each holds the counter totals (under 1 KiB) and a merged
/// latency histogram (about 30 KiB at 2 significant digits up to 60 s), so about
/// 1.9 MiB in all, allocated as the ring fills and reused afterwards.
pub const RATE_SAMPLES: usize = 61;

/// Interval between counter samples.
pub const RATE_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

const _: () = assert!(OBSERVE_HANDLERS >= 1 && OBSERVE_HANDLERS <= 8);
const _: () = assert!(REQUEST_HEAD_BYTES_MAX >= 1024);
// The bounded memory of the server: request buffers plus queued sockets.
const _: () = assert!(OBSERVE_HANDLERS * REQUEST_HEAD_BYTES_MAX <= 64 * 1024);

/// Where a listening address came from, to name it in an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressOrigin {
    /// [`OBSERVE_ADDRESS_DEFAULT`]: nobody asked for it, so when it is taken the run
    /// goes on without the server (with a warning) instead of failing.
    Default,
    /// `[observe] address` in the pipeline file.
    File,
    /// `corestream run --observe ADDRESS`.
    CommandLine,
}

impl AddressOrigin {
    /// The setting to name in a message.
    pub const fn setting(self) -> &'static str {
        match self {
            AddressOrigin::Default => "observe.address (default)",
            AddressOrigin::File => "observe.address",
            AddressOrigin::CommandLine => "--observe",
        }
    }
}

/// The HTTP server's settings (the pipeline file's `[observe]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObserveSettings {
    /// Start the server (default true).
    pub enabled: bool,
    /// Where to listen (default [`OBSERVE_ADDRESS_DEFAULT`]); port 0 picks a free
    /// port ([`ObserveServer::address`] tells which).
    pub address: SocketAddr,
    pub address_origin: AddressOrigin,
    /// Time a client has to send its request head.
    pub request_timeout: Duration,
}

impl Default for ObserveSettings {
    fn default() -> Self {
        ObserveSettings {
            enabled: true,
            address: OBSERVE_ADDRESS_DEFAULT.parse().expect("the default address parses"),
            address_origin: AddressOrigin::Default,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
        }
    }
}

impl ObserveSettings {
    /// An `IP:port` address (no host names: nothing is resolved at start).
    pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
        text.parse::<SocketAddr>().map_err(|_| {
            format!("{text:?} is not an IP address and port such as \"127.0.0.1:9464\"")
        })
    }

    /// Applies `run --observe VALUE`: `off` disables the server, anything else is
    /// an address.
    pub fn with_flag(mut self, value: &str) -> Result<Self, String> {
        if value == "off" {
            self.enabled = false;
        } else {
            self.address =
                Self::parse_address(value).map_err(|e| format!("--observe: {e}, or \"off\""))?;
            self.address_origin = AddressOrigin::CommandLine;
            self.enabled = true;
        }
        Ok(self)
    }
}

/// The server could not start.
#[derive(Debug)]
pub struct ObserveError {
    pub address: SocketAddr,
    pub origin: AddressOrigin,
    pub error: std::io::Error,
}

impl ObserveError {
    /// The address was taken by another process.
    pub fn in_use(&self) -> bool {
        self.error.kind() == std::io::ErrorKind::AddrInUse
    }
}

impl std::fmt::Display for ObserveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: cannot listen: {} (hint: {})",
            self.origin.setting(),
            self.address,
            self.error,
            if self.in_use() {
                "another process listens there; choose a free port with [observe] address or \
                 --observe ADDRESS, or turn the server off with --observe off"
            } else {
                "use a local address such as \"127.0.0.1:9464\", or --observe off"
            }
        )
    }
}

impl std::error::Error for ObserveError {}

/// What the server shows: the engine's metrics and what the pipeline reads and
/// writes (for `/stats`).
pub struct Attached {
    pub metrics: Metrics,
    /// The source, as `validate` describes it.
    pub source: String,
    /// The sink, as `validate` describes it.
    pub sink: String,
}

/// State the server threads share. Workers never touch it.
struct Shared {
    attached: OnceLock<Attached>,
    shutdown: AtomicBool,
    /// One sample per [`RATE_SAMPLE_INTERVAL`], newest last.
    samples: Mutex<VecDeque<Sample>>,
    request_timeout: Duration,
}

/// What the sampler records each second: cumulative since the engine started, so
/// a window is the difference of two samples.
pub struct Sample {
    pub at: Instant,
    pub totals: Box<[u64; SHARD_SLOTS]>,
    /// Every worker's published latencies merged (ns).
    pub latency: Histogram<u64>,
}

/// A running observe server. Dropping it closes the listener and stops the accept
/// and sampler threads (joined); a handler busy with a slow client is not waited
/// for: it ends by itself within [`ObserveSettings::request_timeout`] plus
/// [`RESPONSE_WRITE_TIMEOUT`], so a hostile client cannot delay the process's exit.
pub struct ObserveServer {
    address: SocketAddr,
    shared: Arc<Shared>,
    /// Dropped on shutdown: the sampler's wake-up.
    sampler_stop: Option<Sender<()>>,
    /// The accept and sampler threads (the handlers are detached).
    threads: Vec<JoinHandle<()>>,
}

impl ObserveServer {
    /// Binds `settings.address` and starts the threads. `/ping` answers at once;
    /// `/ready` is 503 until [`ObserveServer::attach`] and a running engine.
    pub fn start(settings: &ObserveSettings) -> Result<ObserveServer, ObserveError> {
        let fail = |error| ObserveError {
            address: settings.address,
            origin: settings.address_origin,
            error,
        };
        let listener = TcpListener::bind(settings.address).map_err(fail)?;
        let address = listener.local_addr().map_err(fail)?;
        let shared = Arc::new(Shared {
            attached: OnceLock::new(),
            shutdown: AtomicBool::new(false),
            samples: Mutex::new(VecDeque::with_capacity(RATE_SAMPLES)),
            request_timeout: settings.request_timeout,
        });
        let (queue_in, queue_out) = channel::bounded::<TcpStream>(CONNECTIONS_QUEUED_MAX);
        let mut threads = Vec::with_capacity(2);
        // The server's threads allocate per request by design: outside the data path,
        // they leave the zero-allocation count (see `metrics::alloc`).
        let spawn = |name: String, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    crate::metrics::alloc::leave_current_thread_uncounted();
                    body()
                })
                .map_err(fail)
        };
        for index in 0..OBSERVE_HANDLERS {
            let (queue, shared) = (queue_out.clone(), shared.clone());
            // Detached: it ends when the accept thread drops the queue's sender.
            drop(spawn(
                format!("corestream-observe-http-{index}"),
                Box::new(move || handle_connections(&queue, &shared)),
            )?);
        }
        drop(queue_out);
        let accept_shared = shared.clone();
        threads.push(spawn(
            "corestream-observe-accept".into(),
            Box::new(move || accept_connections(&listener, &queue_in, &accept_shared)),
        )?);
        let (sampler_stop, sampler_wake) = channel::bounded::<()>(0);
        let sampler_shared = shared.clone();
        threads.push(spawn(
            "corestream-observe-sampler".into(),
            Box::new(move || sample_rates(&sampler_wake, &sampler_shared)),
        )?);
        Ok(ObserveServer { address, shared, sampler_stop: Some(sampler_stop), threads })
    }

    /// The address the server listens on (with the real port when 0 was asked).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Shows `attached` from now on. Only the first call counts.
    pub fn attach(&self, attached: Attached) {
        let _ = self.shared.attached.set(attached);
    }

    fn stop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.sampler_stop = None;
        // Wake the accept thread out of `accept` (it sees the flag and ends).
        let _ = TcpStream::connect_timeout(&wake_address(self.address), Duration::from_secs(1));
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for ObserveServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where to connect to reach our own listener (an unspecified address is reached
/// through loopback).
fn wake_address(address: SocketAddr) -> SocketAddr {
    let mut target = address;
    if target.ip().is_unspecified() {
        target.set_ip(match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    target
}

/// The accept thread: queue each connection for a handler, or refuse it at once
/// when the queue is full.
fn accept_connections(listener: &TcpListener, queue: &Sender<TcpStream>, shared: &Shared) {
    for stream in listener.incoming() {
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of file descriptors, or a connection reset before accept: wait a
            // little instead of spinning on the error.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        match queue.try_send(stream) {
            Ok(()) => {}
            Err(TrySendError::Full(mut stream)) => {
                // Never block the accept loop on this client: a non-blocking write of a
                // short answer, then close.
                let _ = stream.set_nonblocking(true);
                let _ = http::write_response(&mut stream, http::Response::busy());
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// A handler thread: one connection at a time, one request per connection.
fn handle_connections(queue: &Receiver<TcpStream>, shared: &Shared) {
    let mut buffer = vec![0u8; REQUEST_HEAD_BYTES_MAX].into_boxed_slice();
    while let Ok(mut stream) = queue.recv() {
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        let _ = stream.set_write_timeout(Some(RESPONSE_WRITE_TIMEOUT));
        let response = match http::read_request(&mut stream, &mut buffer, shared.request_timeout) {
            Ok(request) => route(&request, shared),
            Err(http::RequestError::Closed) => continue,
            Err(http::RequestError::Refused(response)) => response,
        };
        let _ = http::write_response(&mut stream, response);
    }
}

/// Answers one request.
fn route(request: &http::Request, shared: &Shared) -> http::Response {
    let attached = shared.attached.get();
    match request.path.as_str() {
        "/ping" => http::Response::text(200, "pong\n".into()),
        "/ready" => match attached.map(|a| (a.metrics.phase(), a.metrics.breakers_open())) {
            Some((Phase::Running, 0)) => http::Response::text(200, "ready\n".into()),
            Some((Phase::Running, open)) => http::Response::text(
                503,
                format!("not ready: the sink's circuit breaker is open on {open} worker(s)\n"),
            ),
            Some((phase, _)) => http::Response::text(503, format!("not ready: {}\n", phase.name())),
            None => http::Response::text(503, "not ready: not started\n".into()),
        },
        "/metrics" => match attached {
            Some(a) => http::Response {
                status: 200,
                content_type: prometheus::CONTENT_TYPE,
                body: prometheus::exposition(&a.metrics).into_bytes(),
            },
            None => http::Response::text(503, "no engine attached yet\n".into()),
        },
        "/stats" => match attached {
            Some(a) => {
                let samples = shared.samples.lock();
                let document = stats::document(a, &samples);
                drop(samples);
                http::Response {
                    status: 200,
                    content_type: "application/json",
                    body: serde_json::to_vec_pretty(&document)
                        .expect("a serde_json::Value always serializes"),
                }
            }
            None => http::Response::text(503, "no engine attached yet\n".into()),
        },
        "/" => http::Response::text(
            200,
            "corestream observe: /metrics (Prometheus), /stats (JSON), /ping, /ready\n".into(),
        ),
        _ => http::Response::text(404, "not found: try /metrics, /stats, /ping, /ready\n".into()),
    }
}

/// The sampler thread: once per interval, the counter totals into the rate ring.
fn sample_rates(wake: &Receiver<()>, shared: &Shared) {
    loop {
        match wake.recv_timeout(RATE_SAMPLE_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(attached) = shared.attached.get() else { continue };
        // Reuse the oldest sample's memory once the ring is full.
        let oldest = {
            let mut samples = shared.samples.lock();
            if samples.len() == RATE_SAMPLES { samples.pop_front() } else { None }
        };
        let mut sample = oldest.unwrap_or_else(|| Sample {
            at: Instant::now(),
            totals: Box::new([0; SHARD_SLOTS]),
            latency: new_histogram(),
        });
        sample.latency.reset();
        attached.metrics.merge_latency_into(&mut sample.latency);
        attached.metrics.counters().sum_all(&mut sample.totals);
        sample.at = Instant::now();
        shared.samples.lock().push_back(sample);
    }
}
