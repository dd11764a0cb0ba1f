//! `corestream top [ADDRESS]`: a live terminal view of a running engine, drawn with
//! ratatui from its `/stats` document (see [`crate::observe::stats`]).
//!
//! It shows the phase, the rates and latency percentiles over the last 1 s / 10 s /
//! 60 s, each worker's counters, input rate (from two successive documents) and ring
//! fill, the errors by category and the memory. `q`, Esc or Ctrl-C quits. When nothing answers
//! at the address at start, it says so and exits with code 3; when the engine goes
//! away later, the view says so and keeps trying until `q`.
//!
//! Not shown yet, because `/stats` does not have them: Kafka lag and checkpoint
//! positions.

use std::io::{IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clap::Args;
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use serde_json::Value;

use super::report::{human, human_ns};
use super::{EXIT_CONFIG, EXIT_IO, EXIT_OK, EXIT_RUNTIME};

/// How long `top` waits for the server to connect and answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest `/stats` answer `top` reads (the document is a few KiB per worker).
const STATS_BYTES_MAX: u64 = 4 << 20;

#[derive(Debug, Args)]
pub struct TopArgs {
    /// The observe server of a running `corestream run` (IP:port).
    #[arg(default_value = crate::observe::OBSERVE_ADDRESS_DEFAULT)]
    pub address: String,
    /// Milliseconds between refreshes.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
}

/// Fetches and parses `/stats` from `address`.
pub fn fetch_stats(address: SocketAddr) -> Result<Value, String> {
    let mut stream =
        TcpStream::connect_timeout(&address, FETCH_TIMEOUT).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(FETCH_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(FETCH_TIMEOUT)).map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /stats HTTP/1.1\r\nHost: corestream\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream.take(STATS_BYTES_MAX).read_to_end(&mut answer).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("not an HTTP answer")?;
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("/stats answered {}", head.lines().next().unwrap_or(head)));
    }
    serde_json::from_str(body).map_err(|e| format!("/stats is not JSON: {e}"))
}

/// What the view shows: the latest document (or why there is none) and the one
/// before it, for per-worker rates.
pub struct View {
    pub address: SocketAddr,
    pub latest: Result<(Instant, Value), String>,
    pub previous: Option<(Instant, Value)>,
}

impl View {
    fn update(&mut self, fetched: Result<Value, String>) {
        match fetched {
            Ok(document) => {
                let latest = std::mem::replace(&mut self.latest, Ok((Instant::now(), document)));
                if let Ok(latest) = latest {
                    self.previous = Some(latest);
                }
            }
            Err(e) => self.latest = Err(e),
        }
    }
}

pub fn run(args: &TopArgs) -> i32 {
    let address: SocketAddr = match crate::observe::ObserveSettings::parse_address(&args.address) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("corestream top: {e}");
            return EXIT_CONFIG;
        }
    };
    let first = match fetch_stats(address) {
        Ok(document) => document,
        Err(e) => {
            eprintln!(
                "corestream top: nothing answers at http://{address}/stats ({e}); start \
                 `corestream run` with its observe server there, or give its address: \
                 corestream top IP:PORT"
            );
            return EXIT_IO;
        }
    };
    if !std::io::stdout().is_terminal() {
        eprintln!(
            "corestream top: needs a terminal (curl http://{address}/stats for the document)"
        );
        return EXIT_CONFIG;
    }
    let interval = Duration::from_millis(args.interval_ms.max(100));
    let mut view = View { address, latest: Ok((Instant::now(), first)), previous: None };
    let mut terminal = ratatui::init();
    let result = (|| -> std::io::Result<()> {
        let mut next_fetch = Instant::now() + interval;
        loop {
            terminal.draw(|frame| draw(frame, &view))?;
            let wait = next_fetch.saturating_duration_since(Instant::now());
            if event::poll(wait)? {
                if let Event::Key(key) = event::read()?
                    && key.kind == KeyEventKind::Press
                {
                    let ctrl_c = key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL);
                    if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                        return Ok(());
                    }
                }
                continue;
            }
            view.update(fetch_stats(address));
            next_fetch = Instant::now() + interval;
        }
    })();
    ratatui::restore();
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("corestream top: terminal: {e}");
            EXIT_RUNTIME
        }
    }
}

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap_or(0.0)
}

fn seconds_as_ns(value: &Value) -> u64 {
    (number(value) * 1e9) as u64
}

/// Draws the view (pure: tests draw into a `TestBackend`).
pub fn draw(frame: &mut Frame, view: &View) {
    let (at, document) = match &view.latest {
        Ok((at, document)) => (*at, document),
        Err(e) => {
            let text = vec![
                Line::from(format!("corestream top  http://{}", view.address)),
                Line::from(""),
                Line::from(format!("disconnected: {e}")),
                Line::from("(the engine may have finished; retrying; q quits)"),
            ];
            frame.render_widget(Paragraph::new(text).block(Block::bordered()), frame.area());
            return;
        }
    };
    let d = document;
    let workers = d["workers"].as_array().map_or(&[][..], Vec::as_slice);
    let windows = d["performance"]["windows"].as_array().map_or(&[][..], Vec::as_slice);
    let [header, throughput, worker_area, bottom] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(windows.len() as u16 + 3),
        Constraint::Length(workers.len() as u16 + 3),
        Constraint::Min(4),
    ])
    .areas(frame.area());

    let title = format!(
        "corestream top  http://{}   phase {}  {}  uptime {:.1}s  workers {}/{} ({})   q quits",
        view.address,
        d["phase"].as_str().unwrap_or("?"),
        if d["ready"] == true { "ready" } else { "not ready" },
        number(&d["uptime_seconds"]),
        d["concurrency"]["workers_running"],
        d["concurrency"]["workers"],
        d["concurrency"]["placement"].as_str().unwrap_or("?"),
    );
    frame.render_widget(Paragraph::new(title).block(Block::bordered()), header);

    let bold = Style::default().add_modifier(Modifier::BOLD);
    let rows = windows.iter().map(|w| {
        let latency = &w["latency_ingest_to_sink_seconds"];
        Row::new(vec![
            w["window"].as_str().unwrap_or("?").to_string(),
            human(number(&w["messages_in"])),
            human(number(&w["messages_out"])),
            format!("{}B", human(number(&w["input_bytes"]))),
            format!("{}B", human(number(&w["output_bytes"]))),
            human(number(&w["dead_lettered"])),
            human_ns(seconds_as_ns(&latency["p50"])),
            human_ns(seconds_as_ns(&latency["p99"])),
            human_ns(seconds_as_ns(&latency["max"])),
        ])
    });
    let table = Table::new(rows, [Constraint::Length(12); 9])
        .header(
            Row::new([
                "window",
                "msgs in/s",
                "msgs out/s",
                "bytes in/s",
                "out/s",
                "dead/s",
                "p50",
                "p99",
                "max",
            ])
            .style(bold),
        )
        .block(Block::bordered().title("throughput and latency (ingest -> sink)"));
    frame.render_widget(table, throughput);

    let previous = view.previous.as_ref();
    let rows = workers.iter().enumerate().map(|(index, w)| {
        let rate = previous
            .and_then(|(then, old)| {
                let seconds = at.duration_since(*then).as_secs_f64();
                let before = number(&old["workers"][index]["messages_in"]);
                (seconds > 0.0).then(|| (number(&w["messages_in"]) - before).max(0.0) / seconds)
            })
            .map_or("-".to_string(), human);
        Row::new(vec![
            w["worker"].to_string(),
            rate,
            w["messages_in"].to_string(),
            w["messages_out"].to_string(),
            w["filtered"].to_string(),
            w["processor_failed"].to_string(),
            w["dead_lettered"].to_string(),
            w["batches"].to_string(),
            w["batch_records"].to_string(),
            format!(
                "{}B {:.0}%",
                human(number(&d["backpressure"]["ring_used_bytes"][index])),
                100.0 * number(&d["backpressure"]["ring_used_bytes"][index])
                    / number(&d["backpressure"]["ring_capacity_bytes"]).max(1.0)
            ),
        ])
    });
    let table = Table::new(rows, [Constraint::Length(12); 10])
        .header(
            Row::new([
                "worker", "in/s", "in", "out", "filtered", "failed", "dead", "batches", "batch",
                "ring",
            ])
            .style(bold),
        )
        .block(Block::bordered().title("workers"));
    frame.render_widget(table, worker_area);

    let errors = &d["errors"];
    let mut lines = vec![
        Line::from(format!(
            "resident {}B   rings {}B   ack waits {}",
            human(number(&d["memory"]["resident_bytes"])),
            human(number(&d["memory"]["ring_bytes_total"])),
            d["backpressure"]["ack_waits"],
        )),
        Line::from(format!(
            "source rejected {}   processor failed {}   sink dead-lettered {}   sink retries {}   \
             breaker opened {}",
            errors["source_rejected"],
            errors["processor_failed"],
            errors["sink_dead_lettered"],
            errors["sink_retries"],
            errors["breaker_opened"],
        )),
        Line::from(format!(
            "source: {}   sink: {}",
            d["sources"][0]["description"].as_str().unwrap_or("?"),
            d["sinks"][0]["description"].as_str().unwrap_or("?"),
        )),
    ];
    if let Some(categories) = errors["by_category"].as_object() {
        for (category, outcomes) in categories {
            lines.push(Line::from(format!(
                "sink {category}: attempt {}  success {}  gave up {}  dead-lettered {}",
                outcomes["attempt"],
                outcomes["success"],
                outcomes["gave_up"],
                outcomes["dead_lettered"]
            )));
        }
    }
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title("errors, memory, pipeline")),
        bottom,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use serde_json::json;

    fn document(messages_in: u64) -> Value {
        json!({
            "phase": "running", "ready": true, "uptime_seconds": 3.5,
            "concurrency": {"workers": 2, "workers_running": 2, "placement": "pin_per_core"},
            "performance": {"windows": [
                {"window": "1s", "messages_in": 250000.0, "messages_out": 200000.0,
                 "input_bytes": 5.0e7, "output_bytes": 4.0e7, "dead_lettered": 0.0,
                 "latency_ingest_to_sink_seconds": {"p50": 0.000031, "p99": 0.0025, "max": 0.01}}
            ]},
            "workers": [
                {"worker": 0, "messages_in": messages_in, "messages_out": 7, "filtered": 1,
                 "processor_failed": 0, "dead_lettered": 0, "batches": 3, "batch_records": 512},
                {"worker": 1, "messages_in": 5, "messages_out": 5, "filtered": 0,
                 "processor_failed": 0, "dead_lettered": 0, "batches": 1, "batch_records": 512}
            ],
            "memory": {"resident_bytes": 23000000, "ring_bytes_total": 16777216},
            "backpressure": {"ack_waits": 0, "ring_capacity_bytes": 1000, "ring_used_bytes": [250, 0]},
            "errors": {"source_rejected": 0, "processor_failed": 0, "sink_dead_lettered": 0,
                       "sink_retries": 4, "breaker_opened": 1,
                       "by_category": {"timeout": {"attempt": 4, "success": 3, "gave_up": 1, "dead_lettered": 1}}},
            "sources": [{"description": "generator"}], "sinks": [{"description": "null"}]
        })
    }

    fn screen(view: &View) -> String {
        let mut terminal = Terminal::new(TestBackend::new(120, 30)).unwrap();
        terminal.draw(|frame| draw(frame, view)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width).map(|x| buffer[(x, y)].symbol()).collect::<String>() + "\n"
            })
            .collect()
    }

    #[test]
    fn shows_rates_latency_workers_and_errors() {
        let address = "127.0.0.1:9464".parse().unwrap();
        let then = Instant::now();
        let mut view = View { address, latest: Ok((then, document(8))), previous: None };
        let text = screen(&view);
        assert!(text.contains("phase running  ready"), "{text}");
        assert!(
            text.contains("250.0k") && text.contains("31.0us") && text.contains("2.50ms"),
            "{text}"
        );
        assert!(text.contains("sink timeout: attempt 4  success 3  gave up 1"), "{text}");
        view.previous = Some((then - Duration::from_secs(2), document(0)));
        let text = screen(&view);
        let worker_0 = text.lines().find(|l| l.contains("│0 ")).expect(&text).to_string();
        assert!(worker_0.contains(" 4 "), "8 messages in 2 s: {worker_0}");
        assert!(worker_0.contains("250B 25%"), "ring fill: {worker_0}");
        view.latest = Err("connection refused".into());
        assert!(screen(&view).contains("disconnected: connection refused"));
    }
}
