//! A real Redis for tests: `redis-server` (Debian package `redis-server`, installed by
//! `.ci/run`) started on a free loopback port in its own temporary directory, with
//! persistence off, and stopped when dropped. No mocks on the Redis path.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    pub fn start(name: &str) -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "corestream-redis-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer { port: free_port(), dir, child: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port (after [`RedisServer::kill`]); its data
    /// is gone (persistence is off).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): apt-get install redis-server (.ci/run does)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = self.connection() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not answer on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(1))
    }

    /// `SET key value` for every pair, in one pipeline.
    pub fn set_all(&self, pairs: &[(String, String)]) {
        let mut c = self.connection().expect("connect");
        let mut pipe = redis::pipe();
        for (k, v) in pairs {
            pipe.cmd("SET").arg(k).arg(v).ignore();
        }
        pipe.query::<()>(&mut c).expect("SET");
    }

    /// `HSET key field value ...`.
    pub fn hset(&self, key: &str, fields: &[(&str, &str)]) {
        let mut c = self.connection().expect("connect");
        let mut cmd = redis::cmd("HSET");
        cmd.arg(key);
        for (f, v) in fields {
            cmd.arg(*f).arg(*v);
        }
        cmd.query::<()>(&mut c).expect("HSET");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
