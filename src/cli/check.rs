//! `corestream check <config>`: connect to every Kafka cluster the pipeline names and
//! report its brokers, the topics the pipeline uses and their partitions, and to the
//! Redis of every `enrich` step (`PING`). Every connection is bounded (Kafka by
//! `--timeout-secs`, Redis by the step's `connect_timeout` and `timeout`); an
//! unreachable broker or server or a missing topic is a clear error and exit code 3.
//! Other sections need no connection.

use std::path::Path;

use super::EXIT_OK;
use crate::config::PipelineConfig;
#[cfg(feature = "kafka")]
use {
    super::EXIT_IO,
    crate::config::{DeadLetterSpec, SinkSpec, SourceSpec},
};

/// One cluster to check: what uses it, its client settings, the topics it needs.
#[cfg(feature = "kafka")]
struct Target<'a> {
    role: &'static str,
    client: &'a crate::kafka::KafkaClientSpec,
    topics: Vec<&'a str>,
    /// Topics that may be missing because corestream creates them.
    created: bool,
    /// The consumer group whose offsets to report (the source's).
    group: Option<&'a str>,
}

pub fn run(path: &Path, timeout_secs: u64) -> i32 {
    let config = match super::load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (redis_code, redis_checked) = check_redis(&config);
    let kafka_code =
        check(&config, std::time::Duration::from_secs(timeout_secs.max(1)), redis_checked);
    if redis_code != EXIT_OK { redis_code } else { kafka_code }
}

/// `PING`s the Redis of every `enrich` step; the code, and whether there was any.
fn check_redis(config: &PipelineConfig) -> (i32, bool) {
    let Ok(chain) = crate::config::steps::compile_steps(&config.steps, &config.text) else {
        // `load` compiled the chain already; it cannot fail here.
        return (EXIT_OK, false);
    };
    let links = chain.redis_links();
    let mut code = EXIT_OK;
    for (step, link) in &links {
        println!("step {step} (enrich) redis at {}:", link.settings().url_redacted());
        match link.ping() {
            Ok(took) => println!("  PING answered in {took:?}"),
            Err(e) => {
                eprintln!(
                    "corestream: step {step} (enrich): Redis at {} is not reachable: {e}",
                    link.settings().url_redacted()
                );
                code = super::EXIT_IO;
            }
        }
    }
    (code, !links.is_empty())
}

#[cfg(feature = "kafka")]
fn check(config: &PipelineConfig, timeout: std::time::Duration, redis_checked: bool) -> i32 {
    let mut targets = Vec::new();
    if let SourceSpec::Kafka(s) = &config.source {
        targets.push(Target {
            role: "source",
            client: &s.client,
            topics: s.topics.iter().map(String::as_str).collect(),
            created: s.topic_creation.create,
            group: Some(&s.group),
        });
    }
    if let SinkSpec::Kafka(s) = &config.sink {
        let mut topics = vec![s.topic.as_str()];
        topics.extend(s.dead_letter_topic.as_deref());
        targets.push(Target {
            role: "sink",
            client: &s.client,
            topics,
            created: s.topic_creation.create,
            group: None,
        });
    }
    if let Some(DeadLetterSpec::Kafka(d)) = &config.dead_letter {
        targets.push(Target {
            role: "dead_letter",
            client: &d.client,
            topics: vec![d.topic.as_str()],
            created: false,
            group: None,
        });
    }
    if targets.is_empty() {
        if !redis_checked {
            println!("{}: no Kafka section; nothing to connect to", config.path.display());
        }
        return EXIT_OK;
    }
    let mut code = EXIT_OK;
    // Clients (brokers and properties) already found unreachable: said once, not
    // once per section, and not waited for again.
    let mut unreachable: Vec<&crate::kafka::KafkaClientSpec> = Vec::new();
    for target in targets {
        println!("{} kafka at {}:", target.role, target.client.brokers);
        if unreachable.contains(&target.client) {
            println!("  unreachable (the same brokers and properties as above)");
            continue;
        }
        // The heading comes before its error, though one goes to stdout and the
        // other to stderr.
        use std::io::Write as _;
        std::io::stdout().flush().ok();
        match crate::kafka::admin::check(target.client, &target.topics, target.group, timeout) {
            Ok(report) => {
                print!("{report}");
                for topic in report.topics.iter().filter(|t| !t.exists()) {
                    if target.created {
                        println!(
                            "  note: {} is missing and will be created (create_topics = true)",
                            topic.name
                        );
                    } else {
                        eprintln!(
                            "corestream: {} topic {:?} is not usable: {}",
                            target.role,
                            topic.name,
                            topic.error.as_deref().unwrap_or("no partitions")
                        );
                        code = EXIT_IO;
                    }
                }
            }
            Err(e) => {
                eprintln!("corestream: {e}");
                unreachable.push(target.client);
                code = EXIT_IO;
            }
        }
    }
    code
}

#[cfg(not(feature = "kafka"))]
fn check(config: &PipelineConfig, _timeout: std::time::Duration, redis_checked: bool) -> i32 {
    // The config refuses Kafka types in this build, so there is nothing to reach.
    let _ = (&config.source, &config.sink, &config.dead_letter);
    if !redis_checked {
        println!("{}: no Kafka section; nothing to connect to", config.path.display());
    }
    EXIT_OK
}
