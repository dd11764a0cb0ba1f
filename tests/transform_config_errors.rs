//! Compile errors of the processor chain as a user sees them through the configuration
//! loader: message, file:line:column, the line with a caret under the mistake, and the
//! hint. One case per kind of error the chain reports.

use std::path::Path;

use corestream::config::PipelineConfig;
use corestream::config::build::{BuildError, processors};

const HEAD: &str = "[source]\ntype = \"generator\"\n\n[sink]\ntype = \"null\"\n\n";

/// Loads `steps` after a fixed head and returns the rendered error of the chain.
fn rendered(steps: &str) -> String {
    let text = format!("{HEAD}{steps}");
    let config = PipelineConfig::parse(Path::new("p.toml"), &text, |_| None)
        .unwrap_or_else(|e| panic!("the head and TOML are valid, got:\n{e}"));
    match processors(&config) {
        Ok(_) => panic!("expected a compile error for:\n{steps}"),
        Err(BuildError::Config(e)) => e.to_string(),
        Err(other) => panic!("expected a config error, got {other}"),
    }
}

#[test]
fn unknown_function_points_at_its_name_with_a_hint() {
    let got = rendered("[[processor]]\ntype = \"filter\"\nexpr = 'lowr(region) == \"eu\"'\n");
    assert_eq!(
        got,
        "error: unknown function `lowr`\n  --> p.toml:9:9\n    |\n  9 | expr = 'lowr(region) == \"eu\"'\n    |         ^^^^\n  = hint: did you mean `lower`?"
    );
}

#[test]
fn type_mismatch_known_from_the_schema() {
    let got = rendered(
        "[[processor]]\ntype = \"schema\"\nfields = { amount = \"float\" }\n\n[[processor]]\ntype = \"filter\"\nexpr = 'len(amount) > 3'\n",
    );
    assert!(got.starts_with("error: type mismatch: `len` expects string as argument 1, found number\n  --> p.toml:13:13\n"), "{got}");
    assert!(got.ends_with("  13 | expr = 'len(amount) > 3'\n     |             ^^^^^^"), "{got}");
}

#[test]
fn bad_expression_syntax() {
    let got = rendered("[[processor]]\ntype = \"filter\"\nexpr = 'amount > = 3'\n");
    assert!(got.starts_with("error: unexpected `=`\n  --> p.toml:9:18\n"), "{got}");
    assert!(got.ends_with("= hint: use `==` to compare"), "{got}");
    let got = rendered("[[processor]]\ntype = \"filter\"\nexpr = 'amount > (3'\n");
    assert!(
        got.starts_with(
            "error: expected `)`, found the end of the expression\n  --> p.toml:9:20\n"
        ),
        "{got}"
    );
}

#[test]
fn unclosed_template_field() {
    let got = rendered("[[processor]]\ntype = \"route\"\ntopic = \"orders.${region\"\n");
    assert!(got.starts_with("error: unclosed `${`\n  --> p.toml:9:17\n"), "{got}");
    assert!(got.ends_with("^^\n  = hint: close the field with `}`"), "{got}");
}

#[test]
fn bad_template_field_name() {
    let got = rendered("[[processor]]\ntype = \"route\"\ntopic = \"orders.${re gion}\"\n");
    assert!(
        got.starts_with(
            "error: invalid character ` ` in a template field name\n  --> p.toml:9:21\n"
        ),
        "{got}"
    );
}

#[test]
fn unknown_field_type_with_a_hint() {
    let got = rendered("[[processor]]\ntype = \"schema\"\nfields = { id = \"strng\" }\n");
    assert!(got.starts_with("error: unknown field type `strng`\n  --> p.toml:9:17\n"), "{got}");
    assert!(got.ends_with("= hint: did you mean `string`?"), "{got}");
}

#[test]
fn unknown_step_type_and_misplaced_keys() {
    let got = rendered("[[processor]]\ntype = \"fliter\"\nexpr = 'true'\n");
    assert!(got.starts_with("error: unknown step type `fliter`\n  --> p.toml:8:8\n"), "{got}");
    assert!(got.ends_with("= hint: did you mean `filter`?"), "{got}");
    let got = rendered("[[processor]]\ntype = \"map\"\nexpr = 'true'\nfields = { a = \"1\" }\n");
    assert!(
        got.starts_with("error: `expr` does not belong in a `map` step\n  --> p.toml:9:8\n"),
        "{got}"
    );
    let got = rendered("[[processor]]\ntype = \"dedup\"\nkey = \"id\"\n");
    assert!(got.starts_with("error: a `dedup` step needs `window`\n  --> p.toml:8:8\n"), "{got}");
    let got = rendered("[[processor]]\ntype = \"enrich\"\nkey = \"id\"\n");
    assert!(got.starts_with("error: an `enrich` step needs `redis`\n  --> p.toml:8:8\n"), "{got}");
}

#[test]
fn enrich_settings_are_checked_offline_at_their_place() {
    let step = |rest: &str| {
        rendered(&format!("[[processor]]\ntype = \"enrich\"\nkey = \"customer\"\n{rest}"))
    };
    let got = step("[processor.redis]\nurl = \"http://x\"\n");
    assert!(got.starts_with("error: `http://x` is not a Redis URL"), "{got}");
    assert!(got.contains("p.toml:11:7"), "{got}");
    let got = step("on_miss = \"skip\"\n[processor.redis]\nurl = \"redis://h\"\n");
    assert!(got.starts_with("error: unknown on_miss `skip`\n  --> p.toml:10:11\n"), "{got}");
    assert!(got.contains("pass, drop, dead_letter or default"), "{got}");
    let got = step("on_miss = \"default\"\n[processor.redis]\nurl = \"redis://h\"\n");
    assert!(got.starts_with("error: on_miss = \"default\" needs a `default` value"), "{got}");
    let got = step("default = '[1]'\n[processor.redis]\nurl = \"redis://h\"\n");
    assert!(got.contains("the default value is not a JSON object"), "{got}");
    let got = step("ttl = \"soon\"\n[processor.redis]\nurl = \"redis://h\"\n");
    assert!(got.starts_with("error: invalid ttl"), "{got}");
    assert!(got.contains("p.toml:10:7"), "{got}");
    let got = step("[processor.redis]\nurl = \"redis://h\"\nvalue = \"hsah\"\n");
    assert!(got.starts_with("error: unknown value kind `hsah`"), "{got}");
    assert!(got.contains("did you mean `hash`?"), "{got}");
    let got = step("[processor.redis]\nurl = \"redis://h\"\nvalue = \"string\"\n");
    assert!(
        got.starts_with("error: a `string` value cannot be merged into the top level"),
        "{got}"
    );
    let got = step("[processor.redis]\nurl = \"redis://h\"\npool_min = 5\npool_max = 2\n");
    assert!(got.starts_with("error: pool_min = 5 is above pool_max = 2"), "{got}");
    let got = step("[processor.redis]\nurl = \"redis://h\"\ntimeout = \"0s\"\n");
    assert!(got.starts_with("error: `timeout` must be above 0 and at most 1h"), "{got}");
    let got = step("[processor.redis]\nurl = \"redis://h\"\nstartup = \"later\"\n");
    assert!(got.starts_with("error: unknown startup `later`"), "{got}");
    // An unknown key is refused when the file is read, at its place, with the keys.
    let text = format!(
        "{HEAD}[[processor]]\ntype = \"enrich\"\nkey = \"c\"\n[processor.redis]\nurl = \"redis://h\"\nport = 1\n"
    );
    let got = PipelineConfig::parse(Path::new("p.toml"), &text, |_| None).unwrap_err().to_string();
    assert!(got.starts_with("error: unknown field `port`\n  --> p.toml:12:1\n"), "{got}");
    assert!(got.contains("expected one of: url, prefix, value"), "{got}");
}

#[test]
fn filter_that_is_not_a_bool_and_constant_that_always_fails() {
    let got = rendered("[[processor]]\ntype = \"filter\"\nexpr = 'amount * 2'\n");
    assert!(
        got.starts_with(
            "error: a filter expression must be a bool, found number\n  --> p.toml:9:8\n"
        ),
        "{got}"
    );
    let got = rendered("[[processor]]\ntype = \"map\"\nfields = { a = \"1 / 0\" }\n");
    assert!(
        got.starts_with(
            "error: this constant expression always fails: division by zero\n  --> p.toml:9:17\n"
        ),
        "{got}"
    );
}
