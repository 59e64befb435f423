//! Reading long-form ratings: CSV with a header, or JSONL.
//!
//! Columns (CSV header names or JSON keys): `item_id`, `dimension`, `rater`, `score`, and
//! optionally `scale_min` and `scale_max`. Other columns are ignored. The format is sniffed
//! from the content: a first non-blank character `{` means JSONL, anything else CSV (RFC 4180:
//! comma-separated, fields may be double-quoted with `""` for a quote, quoted fields may span
//! lines). Blank lines are skipped. Errors name the 1-based line of the offending row.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::error::CalibrationError;
use super::kappa::check_scale;

/// One rating: `rater` gave `score` to `item_id` on `dimension`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    pub item_id: String,
    pub dimension: String,
    pub rater: String,
    pub score: f64,
}

/// Parsed ratings with their source lines and any scales the file declared.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RatingsInput {
    pub ratings: Vec<Rating>,
    /// `lines[i]` is the 1-based line where `ratings[i]` starts.
    pub lines: Vec<usize>,
    /// Scales declared by `scale_min`/`scale_max` columns, per dimension.
    pub scales: BTreeMap<String, (i64, i64)>,
}

/// Parses `MIN-MAX` (or `MIN..MAX`), e.g. `1-5`, `0-4`, `-2-2`.
pub fn parse_scale(spec: &str) -> Result<(i64, i64), CalibrationError> {
    let bad = || CalibrationError::BadScaleSpec(spec.to_string());
    let s = spec.trim();
    let (a, b) = if let Some((a, b)) = s.split_once("..") {
        (a, b)
    } else {
        // skip a leading minus sign when looking for the separator
        let first = s.chars().next().map_or(0, char::len_utf8);
        let pos = s
            .get(first..)
            .and_then(|rest| rest.find('-'))
            .ok_or_else(bad)?
            + first;
        (&s[..pos], &s[pos + 1..])
    };
    let min: i64 = a.trim().parse().map_err(|_| bad())?;
    let max: i64 = b.trim().parse().map_err(|_| bad())?;
    if min > max {
        return Err(bad());
    }
    Ok((min, max))
}

/// Parses CSV or JSONL ratings (sniffed, see the module docs).
pub fn parse_ratings(text: &str) -> Result<RatingsInput, CalibrationError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rows = if text.trim_start().starts_with('{') {
        jsonl_rows(text)?
    } else {
        csv_rows(text)?
    };
    let mut out = RatingsInput::default();
    let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
    let mut scale_lines: BTreeMap<String, usize> = BTreeMap::new();
    for row in rows {
        let line = row.line;
        let key = (
            row.item_id.clone(),
            row.dimension.clone(),
            row.rater.clone(),
        );
        if let Some(&first_line) = seen.get(&key) {
            return Err(CalibrationError::Duplicate {
                line,
                first_line,
                item_id: row.item_id,
                dimension: row.dimension,
                rater: row.rater,
            });
        }
        seen.insert(key, line);
        if let Some(scale) = row.scale {
            if let Some(&prev) = out.scales.get(&row.dimension) {
                if prev != scale {
                    return Err(CalibrationError::BadScaleColumn {
                        line,
                        message: format!(
                            "scale {}-{} for dimension {:?} contradicts {}-{} given on line {}",
                            scale.0,
                            scale.1,
                            row.dimension,
                            prev.0,
                            prev.1,
                            scale_lines.get(&row.dimension).copied().unwrap_or(0)
                        ),
                    });
                }
            } else {
                out.scales.insert(row.dimension.clone(), scale);
                scale_lines.insert(row.dimension.clone(), line);
            }
            if row.score < scale.0 as f64 || row.score > scale.1 as f64 {
                return Err(CalibrationError::OutOfScale {
                    location: format!("line {line}: "),
                    score: row.score,
                    min: scale.0,
                    max: scale.1,
                });
            }
        }
        out.lines.push(line);
        out.ratings.push(Rating {
            item_id: row.item_id,
            dimension: row.dimension,
            rater: row.rater,
            score: row.score,
        });
    }
    if out.ratings.is_empty() {
        return Err(CalibrationError::Empty);
    }
    Ok(out)
}

/// One row before duplicate and scale checks.
struct Row {
    line: usize,
    item_id: String,
    dimension: String,
    rater: String,
    score: f64,
    scale: Option<(i64, i64)>,
}

fn number(line: usize, field: &'static str, raw: &str) -> Result<f64, CalibrationError> {
    let v: f64 = raw
        .trim()
        .parse()
        .map_err(|_| CalibrationError::NotNumeric {
            line,
            field,
            value: raw.to_string(),
        })?;
    if !v.is_finite() {
        return Err(CalibrationError::NotNumeric {
            line,
            field,
            value: raw.to_string(),
        });
    }
    Ok(v)
}

/// Combines optional `scale_min`/`scale_max` values into a scale.
fn scale_of(
    line: usize,
    min: Option<f64>,
    max: Option<f64>,
) -> Result<Option<(i64, i64)>, CalibrationError> {
    let bad = |message: String| CalibrationError::BadScaleColumn { line, message };
    match (min, max) {
        (None, None) => Ok(None),
        (Some(a), Some(b)) => {
            if a.fract() != 0.0 || b.fract() != 0.0 || a.abs() > 1e12 || b.abs() > 1e12 {
                return Err(bad(format!("scale bounds {a}-{b} must be integers")));
            }
            let scale = (a as i64, b as i64);
            check_scale(scale).map_err(|e| bad(e.to_string()))?;
            Ok(Some(scale))
        }
        _ => Err(bad(
            "give both scale_min and scale_max, or neither".to_string()
        )),
    }
}

// ---------------------------------------------------------------- CSV

/// Splits RFC 4180 text into records, each with the line it starts on. Unquoted fields are
/// trimmed; blank records are dropped. Shared by `grader calibrate` and the HTTP CSV import.
pub fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, CalibrationError> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let (mut in_quotes, mut quoted) = (false, false);
    let (mut line, mut start) = (1usize, 1usize);
    let mut quote_line = 1usize;
    let mut chars = text.chars().peekable();
    let finish_field = |field: &mut String, quoted: bool, fields: &mut Vec<String>| {
        let f = std::mem::take(field);
        fields.push(if quoted { f } else { f.trim().to_string() });
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if !quoted && field.trim().is_empty() => {
                in_quotes = true;
                quoted = true;
                quote_line = line;
                field.clear();
            }
            '"' => {
                return Err(CalibrationError::Csv {
                    line,
                    message: "a quote inside an unquoted field (quote the whole field and double inner quotes)"
                        .to_string(),
                })
            }
            ',' => {
                finish_field(&mut field, quoted, &mut fields);
                quoted = false;
            }
            '\r' => {}
            '\n' => {
                finish_field(&mut field, quoted, &mut fields);
                quoted = false;
                let row = std::mem::take(&mut fields);
                if !(row.len() == 1 && row[0].is_empty()) {
                    records.push((start, row));
                }
                line += 1;
                start = line;
            }
            _ if quoted => {
                if !c.is_whitespace() {
                    return Err(CalibrationError::Csv {
                        line,
                        message: "text after a closing quote".to_string(),
                    });
                }
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(CalibrationError::Csv {
            line: quote_line,
            message: "unterminated quoted field".to_string(),
        });
    }
    if !field.is_empty() || quoted || !fields.is_empty() {
        finish_field(&mut field, quoted, &mut fields);
        if !(fields.len() == 1 && fields[0].is_empty()) {
            records.push((start, fields));
        }
    }
    Ok(records)
}

fn csv_rows(text: &str) -> Result<Vec<Row>, CalibrationError> {
    let records = csv_records(text)?;
    let mut it = records.into_iter();
    let Some((header_line, header)) = it.next() else {
        return Err(CalibrationError::Empty);
    };
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| names.iter().position(|n| n == name);
    let required = |name: &'static str| {
        col(name).ok_or(CalibrationError::MissingColumn {
            line: header_line,
            column: name,
        })
    };
    let (ci, cd, cr, cs) = (
        required("item_id")?,
        required("dimension")?,
        required("rater")?,
        required("score")?,
    );
    let (cmin, cmax) = (col("scale_min"), col("scale_max"));
    it.map(|(line, rec)| {
        let get = |idx: usize, field: &'static str| -> Result<&str, CalibrationError> {
            match rec.get(idx) {
                Some(v) if !v.is_empty() => Ok(v.as_str()),
                _ => Err(CalibrationError::MissingField { line, field }),
            }
        };
        let opt =
            |idx: Option<usize>, field: &'static str| -> Result<Option<f64>, CalibrationError> {
                match idx.and_then(|i| rec.get(i)).filter(|v| !v.is_empty()) {
                    Some(v) => number(line, field, v).map(Some),
                    None => Ok(None),
                }
            };
        Ok(Row {
            line,
            item_id: get(ci, "item_id")?.to_string(),
            dimension: get(cd, "dimension")?.to_string(),
            rater: get(cr, "rater")?.to_string(),
            score: number(line, "score", get(cs, "score")?)?,
            scale: scale_of(line, opt(cmin, "scale_min")?, opt(cmax, "scale_max")?)?,
        })
    })
    .collect()
}

// ---------------------------------------------------------------- JSONL

fn jsonl_rows(text: &str) -> Result<Vec<Row>, CalibrationError> {
    use serde_json::Value;
    let mut rows = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(raw).map_err(|e| CalibrationError::Json {
            line,
            message: format!("invalid JSON: {e}"),
        })?;
        let Value::Object(obj) = v else {
            return Err(CalibrationError::Json {
                line,
                message: "expected a JSON object".to_string(),
            });
        };
        let text_field = |field: &'static str| -> Result<String, CalibrationError> {
            match obj.get(field) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                None | Some(Value::Null) | Some(Value::String(_)) => {
                    Err(CalibrationError::MissingField { line, field })
                }
                Some(other) => Err(CalibrationError::Json {
                    line,
                    message: format!("`{field}` must be a string, got {other}"),
                }),
            }
        };
        let num_field = |field: &'static str| -> Result<Option<f64>, CalibrationError> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .map(Some)
                    .ok_or_else(|| CalibrationError::NotNumeric {
                        line,
                        field,
                        value: n.to_string(),
                    }),
                Some(Value::String(s)) => number(line, field, s).map(Some),
                Some(other) => Err(CalibrationError::NotNumeric {
                    line,
                    field,
                    value: other.to_string(),
                }),
            }
        };
        rows.push(Row {
            line,
            item_id: text_field("item_id")?,
            dimension: text_field("dimension")?,
            rater: text_field("rater")?,
            score: num_field("score")?.ok_or(CalibrationError::MissingField {
                line,
                field: "score",
            })?,
            scale: scale_of(line, num_field("scale_min")?, num_field("scale_max")?)?,
        });
    }
    Ok(rows)
}
