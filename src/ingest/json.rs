//! A JSON list of turns: `[{"speaker", "text", "start"?, "end"?}]`, with `role`/`content` as
//! synonyms (chat-style exports) and an optional `{"turns": [...]}` wrapper. Times are seconds
//! as a number or a `HH:MM:SS(.mmm)` string.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::build::{Draft, Who};
use super::labels::{collapse, parse_clock, role_of};
use super::IngestError;

#[derive(Deserialize)]
struct JsonTurn {
    #[serde(alias = "role", deserialize_with = "speaker_name")]
    speaker: String,
    #[serde(alias = "content")]
    text: String,
    #[serde(default, deserialize_with = "time_ms")]
    start: Option<u64>,
    #[serde(default, deserialize_with = "time_ms")]
    end: Option<u64>,
}

#[derive(Deserialize)]
struct Wrapper {
    #[serde(alias = "messages")]
    turns: Vec<JsonTurn>,
}

/// Whether `text` is a JSON document this parser takes: an array, or an object with a
/// `turns` (or `messages`) array.
pub(crate) fn looks_like(text: &str) -> bool {
    let t = text.trim_start();
    if !(t.starts_with('[') || t.starts_with('{')) {
        return false;
    }
    match serde_json::from_str::<serde_json::Value>(t) {
        Ok(serde_json::Value::Array(_)) => true,
        Ok(serde_json::Value::Object(map)) => ["turns", "messages"]
            .iter()
            .any(|k| map.get(*k).is_some_and(serde_json::Value::is_array)),
        _ => false,
    }
}

pub(crate) fn parse(text: &str) -> Result<Vec<Draft>, IngestError> {
    let turns = if text.trim_start().starts_with('{') {
        serde_json::from_str::<Wrapper>(text).map(|w| w.turns)
    } else {
        serde_json::from_str::<Vec<JsonTurn>>(text)
    }
    .map_err(malformed)?;
    Ok(turns
        .into_iter()
        .map(|t| {
            let name = collapse(&t.speaker);
            let who = if name.is_empty() {
                Who::Unlabelled
            } else {
                role_of(&name).map_or(Who::Name(name), Who::Role)
            };
            Draft {
                who,
                text: t.text,
                start_ms: t.start,
                end_ms: t.end,
            }
        })
        .collect())
}

/// serde_json's message without its " at line L column C" suffix (the line goes in the error's
/// own field), naming the synonyms a missing field may also be spelled as.
fn malformed(e: serde_json::Error) -> IngestError {
    let full = e.to_string();
    let mut message = match full.rfind(" at line ") {
        Some(i) if e.line() > 0 => full[..i].to_string(),
        _ => full,
    };
    if e.is_data() {
        for (field, synonym) in [
            ("speaker", "role"),
            ("text", "content"),
            ("turns", "messages"),
        ] {
            if message == format!("missing field `{field}`") {
                message.push_str(&format!(" (or `{synonym}`)"));
            }
        }
    }
    if e.line() > 0 {
        message.push_str(&format!(" (column {})", e.column()));
    }
    if message.is_empty() {
        message = "invalid JSON".to_string();
    }
    IngestError::Malformed {
        format: "json",
        line: e.line().max(1),
        message,
    }
}

/// A speaker is a string, or a number as diarization tools write it (`0` → "Speaker 0").
fn speaker_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a speaker name (string) or a speaker number")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(format!("Speaker {v}"))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(format!("Speaker {v}"))
        }
        /// `null`: the turn is unattributed.
        fn visit_unit<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
    }
    d.deserialize_any(V)
}

/// A time in seconds (number) or a clock string, as milliseconds; `null` means absent.
fn time_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a time in seconds or as \"HH:MM:SS(.mmm)\"")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            v.checked_mul(1000)
                .map(Some)
                .ok_or_else(|| E::custom(format!("time {v} seconds is too large")))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!("time {v} is negative"))),
            }
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if !(0.0..=1e12).contains(&v) {
                return Err(E::custom(format!(
                    "time {v} is not a valid number of seconds"
                )));
            }
            Ok(Some((v * 1000.0).round() as u64))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if let Ok(secs) = v.trim().parse::<f64>() {
                return self.visit_f64(secs);
            }
            parse_clock(v).map(Some).ok_or_else(|| {
                E::custom(format!(
                    "time `{v}` is neither seconds nor \"HH:MM:SS(.mmm)\""
                ))
            })
        }
    }
    d.deserialize_any(V)
}
