//! The `enrich` step's way to Redis: a pooled, health-checked connection (cold
//! relative to the per-message path: it is used once per batch that has cache misses).
//!
//! Client and pool: redis-rs (the maintained Rust client, synchronous API, pipelined
//! commands) and r2d2 (the thread-based pool redis-rs implements
//! `ManageConnection` for; workers are plain threads, so an async pool such as bb8 or
//! deadpool would need a runtime for nothing). One pool per `enrich` step, shared by
//! the workers (each worker checks a connection out for one round trip and returns
//! it), sized `pool_min..=pool_max` (default `1..=workers`).
//!
//! - **connect timeout**: every new connection (TCP connect and handshake) and every
//!   checkout waits at most `connect_timeout`;
//! - **timeout**: reads and writes of a round trip wait at most `timeout`; a
//!   connection that timed out or broke is dropped when it is returned, never reused;
//! - **idle timeout**: connections above `pool_min` idle longer than this are closed
//!   (r2d2's reaper);
//! - **health check**: a thread per pool checks one connection out every
//!   `health_check_interval` and sends `PING`; a failed check drops that connection,
//!   so a dead server is noticed while no message needs it. Checkouts by workers are
//!   not tested (no extra round trip per batch): a broken connection fails the batch's
//!   round trip, which the retry table retries on a new one.
//!
//! Pool statistics (connections, idle, created, failed, waits, health checks) are
//! atomics in [`Link`], read by `/stats`, `/metrics` and the run summary through
//! [`pools`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Default read/write timeout of one round trip.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);
/// Default connect (and checkout) timeout.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);
/// Default idle time after which connections above the minimum close.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);
/// Default interval of the health check (`PING`).
pub const HEALTH_CHECK_INTERVAL_DEFAULT: Duration = Duration::from_secs(10);
/// Most connections one pool may hold.
pub const POOL_MAX_LIMIT: u32 = 1024;
/// Longest timeout of any kind.
pub const TIMEOUT_LIMIT: Duration = Duration::from_secs(3600);

/// What to do when Redis cannot be reached when the engine starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Startup {
    /// Fail the start with a clear error (default).
    Fail,
    /// Wait with the pipeline's retry policy, then fail if Redis is still away.
    Wait,
}

impl Startup {
    pub const NAMES: [&'static str; 2] = ["fail", "wait"];

    pub fn from_name(name: &str) -> Option<Startup> {
        match name {
            "fail" => Some(Startup::Fail),
            "wait" => Some(Startup::Wait),
            _ => None,
        }
    }
}

/// A Redis connection's settings (checked offline by `validate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://[user:password@]host[:port][/db]` or `unix:///path`.
    pub url: String,
    /// Connections kept open at least.
    pub pool_min: u32,
    /// Connections at most; `None`: the number of workers.
    pub pool_max: Option<u32>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub idle_timeout: Duration,
    pub health_check_interval: Duration,
    pub startup: Startup,
}

impl RedisSettings {
    pub fn new(url: String) -> Self {
        RedisSettings {
            url,
            pool_min: 1,
            pool_max: None,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            timeout: TIMEOUT_DEFAULT,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
            health_check_interval: HEALTH_CHECK_INTERVAL_DEFAULT,
            startup: Startup::Fail,
        }
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn url_redacted(&self) -> String {
        redact(&self.url)
    }
}

/// Checks a Redis URL's syntax without connecting; the error says what is wrong.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("rediss://") {
        return Err("TLS (`rediss://`) is not built into corestream; use `redis://` on a \
                    trusted network or a local TLS tunnel"
            .into());
    }
    if !(url.starts_with("redis://") || url.starts_with("unix://")) {
        return Err(format!(
            "`{}` is not a Redis URL: expected redis://host[:port][/db] or unix:///path",
            redact(url)
        ));
    }
    redis::Client::open(url).map(|_| ()).map_err(|e| format!("invalid Redis URL: {e}"))
}

fn redact(url: &str) -> String {
    // redis://user:password@host → redis://user:***@host
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let rest = &url[scheme_end..];
    match (rest.find('@'), rest.find(':')) {
        (Some(at), Some(colon)) if colon < at => {
            format!("{}{}:***{}", &url[..scheme_end], &rest[..colon], &rest[at..])
        }
        _ => url.to_string(),
    }
}

/// Pool statistics, counted by the pool's manager and its users.
#[derive(Debug, Default)]
pub struct PoolCounts {
    /// Connections opened.
    pub created: AtomicU64,
    /// Connection attempts that failed.
    pub failed: AtomicU64,
    /// Checkouts that found no idle connection and waited.
    pub waits: AtomicU64,
    /// Round trips made (one per batch of misses, plus retries).
    pub round_trips: AtomicU64,
    /// Round trips that failed.
    pub round_trip_failures: AtomicU64,
    pub health_checks: AtomicU64,
    pub health_check_failures: AtomicU64,
}

/// A snapshot of one pool, for `/stats`, `/metrics` and the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolSnapshot {
    pub url: String,
    /// Connections open now (checked out or idle).
    pub connections: u32,
    pub idle: u32,
    pub max: u32,
    pub created: u64,
    pub failed: u64,
    pub waits: u64,
    pub round_trips: u64,
    pub round_trip_failures: u64,
    pub health_checks: u64,
    pub health_check_failures: u64,
}

impl PoolSnapshot {
    /// Connections checked out now.
    pub fn active(&self) -> u32 {
        self.connections.saturating_sub(self.idle)
    }
}

/// The r2d2 manager: connects with the configured timeouts and counts.
struct Manager {
    client: redis::Client,
    connect_timeout: Duration,
    timeout: Duration,
    counts: Arc<PoolCounts>,
}

impl r2d2::ManageConnection for Manager {
    type Connection = redis::Connection;
    type Error = redis::RedisError;

    fn connect(&self) -> Result<redis::Connection, redis::RedisError> {
        let connected =
            self.client.get_connection_with_timeout(self.connect_timeout).and_then(|c| {
                c.set_read_timeout(Some(self.timeout))?;
                c.set_write_timeout(Some(self.timeout))?;
                Ok(c)
            });
        match &connected {
            Ok(_) => self.counts.created.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counts.failed.fetch_add(1, Ordering::Relaxed),
        };
        connected
    }

    fn is_valid(&self, conn: &mut redis::Connection) -> Result<(), redis::RedisError> {
        redis::cmd("PING").query::<()>(conn)
    }

    fn has_broken(&self, conn: &mut redis::Connection) -> bool {
        use redis::ConnectionLike;
        !conn.is_open()
    }
}

/// Connection errors go to the log once per distinct text (r2d2 retries by itself
/// inside a checkout and would repeat them).
#[derive(Debug)]
struct LogErrors;

impl r2d2::HandleError<redis::RedisError> for LogErrors {
    fn handle_error(&self, error: redis::RedisError) {
        tracing_free_log(&error.to_string());
    }
}

fn tracing_free_log(text: &str) {
    static LAST: Mutex<String> = Mutex::new(String::new());
    let mut last = LAST.lock();
    if *last != text {
        eprintln!("corestream: redis: {text}");
        *last = text.to_string();
    }
}

/// One `enrich` step's Redis: settings, the pool (made when the engine starts, or
/// at the first round trip), its counts. Shared by the workers' clones of the step.
pub struct Link {
    settings: RedisSettings,
    client: redis::Client,
    pool: OnceLock<r2d2::Pool<Manager>>,
    /// Serializes pool creation (cold).
    creating: Mutex<()>,
    counts: Arc<PoolCounts>,
    /// The pool's size at most, once made.
    max: AtomicU64,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link").field("url", &self.settings.url_redacted()).finish()
    }
}

/// Every live link, for [`pools`] (cold: registration at compile, reads at scrape).
static LINKS: Mutex<Vec<Weak<Link>>> = Mutex::new(Vec::new());

/// Snapshots of every Redis pool of this process (cold).
pub fn pools() -> Vec<PoolSnapshot> {
    let mut links = LINKS.lock();
    links.retain(|l| l.strong_count() > 0);
    links.iter().filter_map(Weak::upgrade).map(|l| l.snapshot()).collect()
}

/// Why a round trip failed (the retry table decides what next).
#[derive(Debug)]
pub struct RedisFailure(pub String);

impl fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The answer for one key: the raw value, or `None` when Redis has no such key.
pub type Reply = Option<Vec<u8>>;

/// How values are read: `GET`-style strings (`MGET`) or hashes (`HGETALL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    Strings,
    Hashes,
}

impl Link {
    /// A link with `settings` (the URL must pass [`check_url`]); connects nothing.
    pub fn new(settings: RedisSettings) -> Result<Arc<Link>, String> {
        check_url(&settings.url)?;
        let client = redis::Client::open(settings.url.as_str()).map_err(|e| e.to_string())?;
        let link = Arc::new(Link {
            settings,
            client,
            pool: OnceLock::new(),
            creating: Mutex::new(()),
            counts: Arc::new(PoolCounts::default()),
            max: AtomicU64::new(0),
        });
        let mut links = LINKS.lock();
        // Dropped links leave their `Weak`; prune them so compiling many chains
        // (`validate`, the fuzz targets) does not keep their memory.
        links.retain(|l| l.strong_count() > 0);
        links.push(Arc::downgrade(&link));
        Ok(link)
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// Makes the pool (`workers` sizes it when `pool_max` is not set): at least
    /// `pool_min` connections open, or an error after `connect_timeout`. Idempotent.
    pub fn connect(&self, workers: usize) -> Result<(), String> {
        if self.pool.get().is_some() {
            return Ok(());
        }
        let _creating = self.creating.lock();
        if self.pool.get().is_some() {
            return Ok(());
        }
        let s = &self.settings;
        let max = s.pool_max.unwrap_or(workers.clamp(1, POOL_MAX_LIMIT as usize) as u32);
        let manager = Manager {
            client: self.client.clone(),
            connect_timeout: s.connect_timeout,
            timeout: s.timeout,
            counts: self.counts.clone(),
        };
        let pool = r2d2::Pool::builder()
            .max_size(max.max(s.pool_min).max(1))
            .min_idle(Some(s.pool_min))
            .connection_timeout(s.connect_timeout)
            .idle_timeout(Some(s.idle_timeout))
            .test_on_check_out(false)
            .error_handler(Box::new(LogErrors))
            .build(manager)
            .map_err(|e| {
                format!("cannot connect to Redis at {}: {e}", self.settings.url_redacted())
            })?;
        self.max.store(u64::from(max.max(s.pool_min).max(1)), Ordering::Relaxed);
        spawn_health_check(&pool, self.settings.health_check_interval, self.counts.clone());
        let _ = self.pool.set(pool);
        Ok(())
    }

    /// [`Link::connect`], waiting by `policy` when the settings say `startup = "wait"`.
    pub fn connect_at_start(
        &self,
        workers: usize,
        policy: &crate::retry::RetryPolicy,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut state = crate::retry::RetryState::new(started);
        let mut rng = crate::retry::SplitMix64::new(0x5eed);
        loop {
            match self.connect(workers) {
                Ok(()) => return Ok(()),
                Err(e) if self.settings.startup == Startup::Fail => {
                    return Err(format!("{e} (startup = \"wait\" waits by the retry policy)"));
                }
                Err(e) => match state.next(policy, Instant::now(), &mut rng) {
                    Some(delay) => {
                        eprintln!(
                            "corestream: {e}; attempt {} of {}, next in {delay:?}",
                            state.attempts() - 1,
                            policy.attempts_max()
                        );
                        std::thread::sleep(delay);
                    }
                    None => {
                        return Err(format!(
                            "{e}; gave up after {} attempts in {:?} (the [retry] policy)",
                            state.attempts(),
                            started.elapsed()
                        ));
                    }
                },
            }
        }
    }

    /// One round trip for `keys` (cold relative to messages: once per batch of
    /// misses): `MGET` for strings, a pipeline of `HGETALL` for hashes (hashes come
    /// back as `[field, value, ...]` flattened into one reply per key, or `None`).
    pub fn fetch(
        &self,
        fetch: Fetch,
        workers: usize,
        keys: &[&[u8]],
    ) -> Result<Vec<FetchReply>, RedisFailure> {
        self.connect(workers).map_err(RedisFailure)?;
        let pool = self.pool.get().expect("connected");
        let mut conn = match pool.try_get() {
            Some(c) => c,
            None => {
                self.counts.waits.fetch_add(1, Ordering::Relaxed);
                pool.get().map_err(|e| {
                    self.counts.round_trip_failures.fetch_add(1, Ordering::Relaxed);
                    RedisFailure(format!(
                        "no Redis connection to {} within {:?}: {e}",
                        self.settings.url_redacted(),
                        self.settings.connect_timeout
                    ))
                })?
            }
        };
        self.counts.round_trips.fetch_add(1, Ordering::Relaxed);
        let answered = match fetch {
            Fetch::Strings => redis::cmd("MGET")
                .arg(keys)
                .query::<Vec<Reply>>(&mut *conn)
                .map(|v| v.into_iter().map(FetchReply::String).collect::<Vec<_>>()),
            Fetch::Hashes => {
                let mut pipe = redis::pipe();
                for key in keys {
                    pipe.cmd("HGETALL").arg(*key);
                }
                pipe.query::<Vec<Vec<(Vec<u8>, Vec<u8>)>>>(&mut *conn)
                    .map(|v| v.into_iter().map(FetchReply::Hash).collect())
            }
        };
        match answered {
            Ok(v) if v.len() == keys.len() => Ok(v),
            Ok(v) => {
                self.counts.round_trip_failures.fetch_add(1, Ordering::Relaxed);
                Err(RedisFailure(format!(
                    "Redis answered {} values for {} keys",
                    v.len(),
                    keys.len()
                )))
            }
            Err(e) => {
                self.counts.round_trip_failures.fetch_add(1, Ordering::Relaxed);
                Err(RedisFailure(format!("Redis at {}: {e}", self.settings.url_redacted())))
            }
        }
    }

    /// Connects if needed and sends `PING` (for `corestream check`).
    pub fn ping(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let mut conn = self
            .client
            .get_connection_with_timeout(self.settings.connect_timeout)
            .map_err(|e| format!("cannot connect: {e}"))?;
        conn.set_read_timeout(Some(self.settings.timeout)).map_err(|e| e.to_string())?;
        redis::cmd("PING").query::<()>(&mut conn).map_err(|e| format!("PING failed: {e}"))?;
        Ok(started.elapsed())
    }

    /// This pool's statistics now.
    pub fn snapshot(&self) -> PoolSnapshot {
        let (connections, idle) = self.pool.get().map_or((0, 0), |p| {
            let s = p.state();
            (s.connections, s.idle_connections)
        });
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PoolSnapshot {
            url: self.settings.url_redacted(),
            connections,
            idle,
            max: self.max.load(Ordering::Relaxed) as u32,
            created: get(&c.created),
            failed: get(&c.failed),
            waits: get(&c.waits),
            round_trips: get(&c.round_trips),
            round_trip_failures: get(&c.round_trip_failures),
            health_checks: get(&c.health_checks),
            health_check_failures: get(&c.health_check_failures),
        }
    }
}

/// One reply of [`Link::fetch`].
#[derive(Debug)]
pub enum FetchReply {
    String(Reply),
    /// A hash's fields and values; empty: no such key.
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
}

/// The health check thread: every `interval`, check one connection out and `PING`;
/// ends when the pool is dropped.
fn spawn_health_check(pool: &r2d2::Pool<Manager>, interval: Duration, counts: Arc<PoolCounts>) {
    // A pool handle that does not keep the pool alive: r2d2 pools are cheap clones of
    // an Arc, so the thread holds a clone and stops when it is the last holder.
    let pool = pool.clone();
    let spawned =
        std::thread::Builder::new().name("corestream-redis-health".into()).spawn(move || {
            let step = Duration::from_millis(100).min(interval);
            let mut waited = Duration::ZERO;
            loop {
                std::thread::sleep(step);
                if Arc::strong_count(&counts) <= 2 {
                    // Only this thread and the pool's manager hold the counts: the
                    // link is gone.
                    return;
                }
                waited += step;
                if waited < interval {
                    continue;
                }
                waited = Duration::ZERO;
                counts.health_checks.fetch_add(1, Ordering::Relaxed);
                let ok = match pool.get() {
                    Ok(mut conn) => {
                        let pinged = redis::cmd("PING").query::<()>(&mut *conn);
                        pinged.is_ok()
                    }
                    Err(_) => false,
                };
                if !ok {
                    counts.health_check_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("corestream: redis: cannot start the health check thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_offline() {
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("unix:///tmp/redis.sock").is_ok());
        assert!(check_url("http://x").unwrap_err().contains("not a Redis URL"));
        assert!(check_url("rediss://x").unwrap_err().contains("TLS"));
        assert!(check_url("redis://host:notaport").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }
}
