//! `grader prompts diff`: what changed between two prompt versions, as a reviewer needs it —
//! a structural summary of the rubric (which anchors, flags, templates changed) first, then
//! the exact text diff of the files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use similar::TextDiff;

use super::PromptVersion;

/// A structural summary of the changes from `a` to `b`, then a unified diff of the two files
/// with `--- id@va` / `+++ id@vb` headers.
pub fn diff(a: &PromptVersion, b: &PromptVersion) -> String {
    let mut out = String::new();
    let (fa, fb) = (&a.file, &b.file);
    let _ = writeln!(out, "{} → {}", a.key(), b.key());
    let _ = writeln!(out, "  sha256: {} → {}", short(&a.sha256), short(&b.sha256));
    let before = out.len();

    for (field, x, y) in [
        ("id", &fa.id, &fb.id),
        ("title", &fa.title, &fb.title),
        ("description", &fa.description, &fb.description),
    ] {
        if x != y {
            let _ = writeln!(out, "  {field}: {} → {}", quote(x), quote(y));
        }
    }
    if fa.stage != fb.stage {
        let _ = writeln!(out, "  stage: {} → {}", fa.stage, fb.stage);
    }

    // Dimensions.
    let dims_a: BTreeMap<&str, _> = fa.dimensions.iter().map(|d| (d.id.as_str(), d)).collect();
    let dims_b: BTreeMap<&str, _> = fb.dimensions.iter().map(|d| (d.id.as_str(), d)).collect();
    let added: Vec<&str> = fb
        .dimensions
        .iter()
        .map(|d| d.id.as_str())
        .filter(|id| !dims_a.contains_key(id))
        .collect();
    let removed: Vec<&str> = fa
        .dimensions
        .iter()
        .map(|d| d.id.as_str())
        .filter(|id| !dims_b.contains_key(id))
        .collect();
    if !added.is_empty() {
        let _ = writeln!(out, "  dimensions added: {}", added.join(", "));
    }
    if !removed.is_empty() {
        let _ = writeln!(out, "  dimensions removed: {}", removed.join(", "));
    }
    let common_a: Vec<&str> = fa
        .dimensions
        .iter()
        .map(|d| d.id.as_str())
        .filter(|id| dims_b.contains_key(id))
        .collect();
    let common_b: Vec<&str> = fb
        .dimensions
        .iter()
        .map(|d| d.id.as_str())
        .filter(|id| dims_a.contains_key(id))
        .collect();
    if common_a != common_b {
        let _ = writeln!(
            out,
            "  dimension order: {} → {}",
            common_a.join(", "),
            common_b.join(", ")
        );
    }
    for id in &common_b {
        let (da, db) = (dims_a[id], dims_b[id]);
        if da == db {
            continue;
        }
        let _ = writeln!(out, "  dimension `{id}` changed:");
        let mut lines = field_changes(da, db, &["id", "anchors"]);
        let levels: BTreeSet<&String> = da.anchors.keys().chain(db.anchors.keys()).collect();
        let mut levels: Vec<&String> = levels.into_iter().collect();
        levels.sort_by_key(|l| (l.parse::<u32>().unwrap_or(u32::MAX), l.to_string()));
        for level in levels {
            match (da.anchors.get(level), db.anchors.get(level)) {
                (Some(x), Some(y)) if x != y => {
                    lines.push(format!("anchor {level}: {} → {}", quote(x), quote(y)))
                }
                (Some(x), None) => lines.push(format!("anchor {level} removed: {}", quote(x))),
                (None, Some(y)) => lines.push(format!("anchor {level} added: {}", quote(y))),
                _ => {}
            }
        }
        for line in lines {
            let _ = writeln!(out, "    {line}");
        }
    }

    // Flags.
    let flags_a: BTreeMap<&str, _> = fa.flags.iter().map(|f| (f.id.as_str(), f)).collect();
    let flags_b: BTreeMap<&str, _> = fb.flags.iter().map(|f| (f.id.as_str(), f)).collect();
    for f in fb
        .flags
        .iter()
        .filter(|f| !flags_a.contains_key(f.id.as_str()))
    {
        let _ = writeln!(
            out,
            "  flag added: {} ({}, {}): {}",
            f.id,
            plain(&f.kind),
            plain(&f.severity),
            quote(&f.label)
        );
    }
    for f in fa
        .flags
        .iter()
        .filter(|f| !flags_b.contains_key(f.id.as_str()))
    {
        let _ = writeln!(out, "  flag removed: {}", f.id);
    }
    for f in &fb.flags {
        if let Some(old) = flags_a.get(f.id.as_str()) {
            if *old != f {
                let _ = writeln!(out, "  flag `{}` changed:", f.id);
                for line in field_changes(*old, f, &["id"]) {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
    }

    // Templates and examples.
    for (which, x, y) in [
        ("system", &fa.template.system, &fb.template.system),
        ("user", &fa.template.user, &fb.template.user),
    ] {
        if x != y {
            let stat = TextDiff::from_lines(x.as_str(), y.as_str());
            let (mut ins, mut del) = (0, 0);
            for change in stat.iter_all_changes() {
                match change.tag() {
                    similar::ChangeTag::Insert => ins += 1,
                    similar::ChangeTag::Delete => del += 1,
                    similar::ChangeTag::Equal => {}
                }
            }
            let _ = writeln!(out, "  {which} template changed (+{ins} -{del} lines)");
        }
    }
    if fa.examples != fb.examples {
        let _ = writeln!(
            out,
            "  examples changed: {} → {}",
            fa.examples.len(),
            fb.examples.len()
        );
    }

    if out.len() == before {
        if a.sha256 == b.sha256 {
            let _ = writeln!(out, "  identical");
        } else {
            let _ = writeln!(out, "  no structural changes (formatting or comments only)");
        }
    }

    let text = TextDiff::from_lines(a.source.as_str(), b.source.as_str());
    let unified = text
        .unified_diff()
        .context_radius(3)
        .header(&a.key(), &b.key())
        .to_string();
    if !unified.is_empty() {
        out.push('\n');
        out.push_str(&unified);
    }
    out
}

/// `field: old → new` for every serialized field that differs, except `skip`; works for any
/// field added to the domain types later without touching this code.
fn field_changes<T: Serialize>(a: &T, b: &T, skip: &[&str]) -> Vec<String> {
    let (va, vb) = (to_map(a), to_map(b));
    let keys: BTreeSet<&String> = va.keys().chain(vb.keys()).collect();
    keys.into_iter()
        .filter(|k| !skip.contains(&k.as_str()))
        .filter_map(|k| {
            let (x, y) = (va.get(k), vb.get(k));
            (x != y).then(|| format!("{k}: {} → {}", show(x), show(y)))
        })
        .collect()
}

fn to_map<T: Serialize>(v: &T) -> serde_json::Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "(none)".to_string(),
        Some(Value::String(s)) => quote(s),
        Some(Value::Object(m))
            if m.len() == 2 && m.contains_key("min") && m.contains_key("max") =>
        {
            format!("{}-{}", m["min"], m["max"])
        }
        Some(other) => {
            let s = other.to_string();
            if s.chars().count() > 160 {
                format!("{}…", s.chars().take(160).collect::<String>())
            } else {
                s
            }
        }
    }
}

fn plain<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn quote(s: &str) -> String {
    format!("{:?}", s.trim())
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
