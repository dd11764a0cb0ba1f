//! Compiling the state steps, `dedup` and `enrich` (cold): their keys, durations,
//! cache sizes and, for `enrich`, the Redis settings. The caches themselves are
//! allocated per worker when the chain is cloned; nothing here connects.

use std::time::Duration;

use toml::Spanned;

use super::{CompileError, DedupStep, EnrichStep, StepConfig, expr_error, missing};
use crate::state::cache::{CacheSettings, ENTRIES_MAX, ENTRY_BYTES_MAX, Eviction};
use crate::state::dedup::{Dedup, DedupSettings};
use crate::state::enrich::{Enrich, EnrichSettings, OnMiss, RedisStepConfig, ValueKind};
use crate::state::redis::{POOL_MAX_LIMIT, RedisSettings, Startup, TIMEOUT_LIMIT, check_url};
use crate::transform::expr::{Expr, Resolver, did_you_mean};
use crate::transform::value::Type;

/// Compiles a `dedup` step: the key expression and the window's settings.
pub(super) fn compile_dedup(
    step: &StepConfig,
    config_text: &str,
    resolve: &mut Resolver<'_>,
) -> Result<DedupStep, CompileError> {
    let kind_span = step.kind.span();
    let key = key_expr(step, "dedup", config_text, resolve)?;
    let window = step.window.as_ref().ok_or_else(|| missing(&kind_span))?;
    let window_ms = duration_ms(window, "window", "a dedup window")?;
    let mut settings = DedupSettings::new(window_ms);
    cache_settings(step, &mut settings.cache)?;
    let dedup = Dedup::new(settings).map_err(|m| cache_error(step, m))?;
    Ok(DedupStep { key, dedup })
}

/// Compiles an `enrich` step: key, target field, miss policy, cache and Redis.
pub(super) fn compile_enrich(
    step: &StepConfig,
    config_text: &str,
    resolve: &mut Resolver<'_>,
) -> Result<EnrichStep, CompileError> {
    let kind_span = step.kind.span();
    let key = key_expr(step, "enrich", config_text, resolve)?;
    let redis = step.redis.as_ref().ok_or_else(|| missing(&kind_span))?;
    let (redis_settings, prefix, value) = compile_redis(redis.get_ref())?;
    let mut settings = EnrichSettings::new(redis_settings);
    settings.prefix = prefix.into();
    settings.value = value;
    if let Some(f) = &step.field {
        if f.get_ref().is_empty() {
            return Err(at(
                f,
                "`field` must not be empty",
                Some("leave it out to merge into the top level"),
            ));
        }
        settings.field = Some(f.get_ref().clone());
    }
    let top_level = settings.field.is_none();
    if top_level && value == ValueKind::String {
        return Err(at(
            redis,
            "a `string` value cannot be merged into the top level",
            Some("set `field`, the member the text goes into"),
        ));
    }
    settings.on_miss = match &step.on_miss {
        Some(m) => OnMiss::from_name(m.get_ref()).ok_or_else(|| CompileError {
            span: m.span(),
            message: format!("unknown on_miss `{}`", m.get_ref()),
            hint: did_you_mean(m.get_ref(), OnMiss::NAMES)
                .or_else(|| Some("on_miss is pass, drop, dead_letter or default".into())),
        })?,
        None if step.default.is_some() => OnMiss::Default,
        None => OnMiss::Pass,
    };
    match (&step.default, settings.on_miss) {
        (Some(d), OnMiss::Default) => {
            let json = crate::state::enrich::check_json(d.get_ref().as_bytes(), top_level)
                .map_err(|why| at(d, &format!("the default value {why}"), None))?;
            settings.default = Some(json.into());
        }
        (None, OnMiss::Default) => {
            let span = step.on_miss.as_ref().map_or(kind_span.clone(), Spanned::span);
            return Err(CompileError {
                span,
                message: "on_miss = \"default\" needs a `default` value".into(),
                hint: Some("e.g. default = '{\"segment\": \"unknown\"}'".into()),
            });
        }
        (Some(d), other) => {
            return Err(at(
                d,
                &format!(
                    "`default` is only used with on_miss = \"default\", not \"{}\"",
                    other.name()
                ),
                None,
            ));
        }
        (None, _) => {}
    }
    settings.cache.ttl_ms = match &step.ttl {
        Some(t) => Some(duration_ms(t, "ttl", "an enrich ttl")?),
        None => settings.cache.ttl_ms,
    };
    cache_settings(step, &mut settings.cache)?;
    if settings.prefix.len() >= settings.cache.entry_bytes_max {
        return Err(cache_error(step, "the key prefix alone fills entry_bytes".into()));
    }
    let enrich = Enrich::new(settings).map_err(|m| cache_error(step, m))?;
    Ok(EnrichStep { key, enrich })
}

/// The key expression of a state step (`key`), which must not be null.
fn key_expr(
    step: &StepConfig,
    kind: &str,
    config_text: &str,
    resolve: &mut Resolver<'_>,
) -> Result<Expr, CompileError> {
    let src = step.key.as_ref().ok_or_else(|| missing(&step.kind.span()))?;
    let key = Expr::compile(src.get_ref(), resolve).map_err(|e| expr_error(config_text, src, e))?;
    if key.ty() == Type::NULL {
        return Err(CompileError {
            span: src.span(),
            message: format!("a {kind} key must not be null"),
            hint: Some("name a field, e.g. `id`, or `key` for the message key".into()),
        });
    }
    Ok(key)
}

/// A duration setting, at least 1 ms, in ms.
fn duration_ms(value: &Spanned<String>, name: &str, what: &str) -> Result<u64, CompileError> {
    let d = duration(value, name)?;
    if d.as_millis() < 1 {
        return Err(at(value, &format!("{what} must be at least 1ms"), None));
    }
    Ok(d.as_millis().min(u64::MAX as u128) as u64)
}

fn duration(value: &Spanned<String>, name: &str) -> Result<Duration, CompileError> {
    crate::parse::duration::parse_duration(value.get_ref()).map_err(|e| CompileError {
        span: value.span(),
        message: format!("invalid {name}: {e}"),
        hint: Some("a duration such as \"30s\", \"10m\" or \"1h\"".into()),
    })
}

/// `capacity`, `entry_bytes` and `eviction`, where written.
fn cache_settings(step: &StepConfig, cache: &mut CacheSettings) -> Result<(), CompileError> {
    if let Some(n) = positive(&step.capacity, "capacity", ENTRIES_MAX as u64)? {
        cache.entries_max = n as usize;
    }
    if let Some(n) = positive(&step.entry_bytes, "entry_bytes", ENTRY_BYTES_MAX as u64)? {
        cache.entry_bytes_max = n as usize;
    }
    if let Some(e) = &step.eviction {
        cache.eviction = Eviction::from_name(e.get_ref()).ok_or_else(|| CompileError {
            span: e.span(),
            message: format!("unknown eviction `{}`", e.get_ref()),
            hint: did_you_mean(e.get_ref(), Eviction::NAMES)
                .or_else(|| Some("eviction is lru, lfu or ttl".into())),
        })?;
    }
    Ok(())
}

/// A cache that does not fit its bounds: points at the size the user wrote.
fn cache_error(step: &StepConfig, message: String) -> CompileError {
    CompileError {
        span: step
            .capacity
            .as_ref()
            .map(Spanned::span)
            .or_else(|| step.entry_bytes.as_ref().map(Spanned::span))
            .unwrap_or(step.kind.span()),
        message,
        hint: Some("memory per worker is capacity × (entry_bytes + 40) bytes".into()),
    }
}

fn positive(
    value: &Option<Spanned<i64>>,
    name: &str,
    max: u64,
) -> Result<Option<u64>, CompileError> {
    match value {
        None => Ok(None),
        Some(v) if *v.get_ref() >= 1 && *v.get_ref() as u64 <= max => Ok(Some(*v.get_ref() as u64)),
        Some(v) => Err(CompileError {
            span: v.span(),
            message: format!("`{name}` must be 1..={max}"),
            hint: None,
        }),
    }
}

fn at<T>(value: &Spanned<T>, message: &str, hint: Option<&str>) -> CompileError {
    CompileError { span: value.span(), message: message.into(), hint: hint.map(Into::into) }
}

/// `[processor.redis]`: URL (syntax only), prefix, value kind, pool and timeouts.
fn compile_redis(c: &RedisStepConfig) -> Result<(RedisSettings, Vec<u8>, ValueKind), CompileError> {
    check_url(c.url.get_ref()).map_err(|why| at(&c.url, &why, None))?;
    let mut s = RedisSettings::new(c.url.get_ref().clone());
    let prefix = c.prefix.as_ref().map_or(Vec::new(), |p| p.get_ref().as_bytes().to_vec());
    let value = match &c.value {
        Some(v) => ValueKind::from_name(v.get_ref()).ok_or_else(|| CompileError {
            span: v.span(),
            message: format!("unknown value kind `{}`", v.get_ref()),
            hint: did_you_mean(v.get_ref(), ValueKind::NAMES)
                .or_else(|| Some("value is json, string or hash".into())),
        })?,
        None => ValueKind::Json,
    };
    if let Some(v) = &c.pool_min {
        match u32::try_from(*v.get_ref()) {
            Ok(n) if n <= POOL_MAX_LIMIT => s.pool_min = n,
            _ => return Err(at(v, &format!("`pool_min` must be 0..={POOL_MAX_LIMIT}"), None)),
        }
    }
    if let Some(n) = positive(&c.pool_max, "pool_max", u64::from(POOL_MAX_LIMIT))? {
        s.pool_max = Some(n as u32);
    }
    if let (Some(max), Some(min)) = (s.pool_max, &c.pool_min) {
        if s.pool_min > max {
            return Err(at(
                min,
                &format!("pool_min = {} is above pool_max = {max}", s.pool_min),
                None,
            ));
        }
    }
    let timeouts: [(&Option<Spanned<String>>, &str, &mut Duration); 4] = [
        (&c.connect_timeout, "connect_timeout", &mut s.connect_timeout),
        (&c.timeout, "timeout", &mut s.timeout),
        (&c.idle_timeout, "idle_timeout", &mut s.idle_timeout),
        (&c.health_check_interval, "health_check_interval", &mut s.health_check_interval),
    ];
    for (value, name, into) in timeouts {
        if let Some(v) = value {
            let d = duration(v, name)?;
            if d.is_zero() || d > TIMEOUT_LIMIT {
                return Err(at(v, &format!("`{name}` must be above 0 and at most 1h"), None));
            }
            *into = d;
        }
    }
    if let Some(v) = &c.startup {
        s.startup = Startup::from_name(v.get_ref()).ok_or_else(|| CompileError {
            span: v.span(),
            message: format!("unknown startup `{}`", v.get_ref()),
            hint: Some("startup is fail (the default) or wait (by the [retry] policy)".into()),
        })?;
    }
    Ok((s, prefix, value))
}
