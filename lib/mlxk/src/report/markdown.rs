//! The Markdown benchmark report (seeds/004): run summary, system, quality, per-model table,
//! slowest tests, failures, and an optional comparison with an older run. Output depends only
//! on the input records, so the same input gives a byte-identical report.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One report record, reduced to what the report reads.
#[derive(Debug, Clone)]
pub struct Entry {
    pub test: String,
    pub outcome: String,
    pub duration: f64,
    pub model: Option<String>,
    pub tokens_per_sec: Option<f64>,
    pub load_time_s: Option<f64>,
    pub peak_ram_gb: Option<f64>,
    pub quality_flags: Vec<String>,
    /// `vision`/`text`/`audio`/`video`, or None for records older than 0.2.1.
    pub modality: Option<String>,
    pub start_ts: Option<f64>,
    pub end_ts: Option<f64>,
    /// End of the test from `timestamp` (Unix seconds), for the wall-time fallback.
    pub timestamp_ts: Option<f64>,
    pub timestamp: String,
    pub version: String,
    pub system: Option<Value>,
}

impl Entry {
    pub fn from_record(r: &Value) -> Entry {
        let num = |v: &Value| v.as_f64();
        let timestamp = r["timestamp"].as_str().unwrap_or_default().to_string();
        Entry {
            test: r["test"].as_str().unwrap_or("?").to_string(),
            outcome: r["outcome"].as_str().unwrap_or("?").to_string(),
            duration: num(&r["duration"]).unwrap_or(0.0),
            model: r["model"]["id"].as_str().map(str::to_string),
            tokens_per_sec: num(&r["performance"]["tokens_per_sec"]),
            load_time_s: num(&r["performance"]["model_load_time_s"]),
            peak_ram_gb: num(&r["performance"]["peak_ram_gb"]),
            quality_flags: r["system_health"]["quality_flags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            modality: r["metadata"]["inference_modality"]
                .as_str()
                .map(str::to_string),
            start_ts: num(&r["test_start_ts"]),
            end_ts: num(&r["test_end_ts"]),
            timestamp_ts: parse_rfc3339(&timestamp),
            timestamp,
            version: r["mlx_knife_version"]
                .as_str()
                .unwrap_or("unknown")
                .to_string(),
            system: r.get("system").filter(|s| s.is_object()).cloned(),
        }
    }

    /// (start, end) in Unix seconds: exact from 0.2.2 fields, else `timestamp − duration`.
    fn window(&self) -> Option<(f64, f64)> {
        match (self.start_ts, self.end_ts) {
            (Some(s), Some(e)) => Some((s, e)),
            _ => self.timestamp_ts.map(|end| (end - self.duration, end)),
        }
    }
}

/// Unix seconds of an RFC 3339 / ISO 8601 date-time (`2026-01-30T10:00:00.5+01:00`).
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let (date, rest) = s.split_once(['T', ' '])?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (time, offset) = match rest.find(['+', '-', 'Z', 'z']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let mut t = time.split(':');
    let hh: f64 = t.next()?.parse().ok()?;
    let mm: f64 = t.next()?.parse().ok()?;
    let ss: f64 = t.next().unwrap_or("0").parse().ok()?;
    let off = match offset {
        "" | "Z" | "z" => 0.0,
        o => {
            let sign = if o.starts_with('-') { -1.0 } else { 1.0 };
            let (oh, om) = o[1..].split_once(':').unwrap_or((&o[1..], "0"));
            sign * (oh.parse::<f64>().ok()? * 3600.0 + om.parse::<f64>().ok()? * 60.0)
        }
    };
    // days from civil (Howard Hinnant's algorithm)
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days as f64 * 86400.0 + hh * 3600.0 + mm * 60.0 + ss - off)
}

/// UTC calendar fields `(year, month, day, hour, minute, second)` of Unix seconds
/// (the inverse of [`parse_rfc3339`]; Howard Hinnant's civil-from-days).
pub fn civil_from_unix(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

/// `strftime`-style formatting of Unix seconds in UTC (`%Y %m %d %H %M %S %b %B %%`).
pub fn format_utc(secs: u64, fmt: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let (y, m, d, hh, mm, ss) = civil_from_unix(secs);
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('H') => out.push_str(&format!("{hh:02}")),
            Some('M') => out.push_str(&format!("{mm:02}")),
            Some('S') => out.push_str(&format!("{ss:02}")),
            Some('B') => out.push_str(MONTHS[(m - 1) as usize]),
            Some('b') => out.push_str(&MONTHS[(m - 1) as usize][..3]),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Mean and sample standard deviation (0 for one value), as llama-bench reports repeats.
fn mean_sd(v: &[f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    Some((mean, sd))
}

/// `1.23s ± 0.04s` over repeats, the plain duration for one run.
fn duration_sd(v: &[f64]) -> String {
    match mean_sd(v) {
        None => "—".into(),
        Some((m, _)) if v.len() == 1 => duration(m),
        Some((m, sd)) => format!("{} ± {}", duration(m), duration(sd)),
    }
}

/// The runs of one test on one model (its repeats).
struct Repeats {
    durations: Vec<f64>,
    tps: Vec<f64>,
}

/// Runs grouped by test and model (the same prompt on two models is two tests). Where a test
/// passed at least once only its passed runs count: a failed or skipped run's time says
/// nothing of the test's speed. A test that never passed keeps all its runs.
fn per_test(entries: &[Entry]) -> BTreeMap<(String, String), Repeats> {
    let mut all: BTreeMap<(String, String), (Repeats, Repeats)> = BTreeMap::new();
    for e in entries {
        let (passed, any) = all
            .entry((e.test.clone(), e.model.clone().unwrap_or_default()))
            .or_insert_with(|| {
                let empty = || Repeats {
                    durations: vec![],
                    tps: vec![],
                };
                (empty(), empty())
            });
        for r in [Some(&mut *any), (e.outcome == "passed").then_some(passed)]
            .into_iter()
            .flatten()
        {
            r.durations.push(e.duration);
            r.tps.extend(e.tokens_per_sec);
        }
    }
    all.into_iter()
        .map(|(k, (passed, any))| {
            (
                k,
                if passed.durations.is_empty() {
                    any
                } else {
                    passed
                },
            )
        })
        .collect()
}

fn test_cell(key: &(String, String)) -> String {
    if key.1.is_empty() {
        format!("`{}`", cell(&key.0))
    } else {
        format!("`{}` ({})", cell(&key.0), cell(&key.1))
    }
}

/// `1h 02m 03.4s`, `5m 12.3s`, `12.3s`.
pub fn duration(s: f64) -> String {
    let sign = if s < 0.0 { "-" } else { "" };
    let s = s.abs();
    let h = (s / 3600.0).floor();
    let m = ((s - h * 3600.0) / 60.0).floor();
    let sec = s - h * 3600.0 - m * 60.0;
    if h > 0.0 {
        format!("{sign}{h:.0}h {m:02.0}m {sec:04.1}s")
    } else if m > 0.0 {
        format!("{sign}{m:.0}m {sec:04.1}s")
    } else if sec < 1.0 && sec > 0.0 {
        format!("{sign}{sec:.2}s")
    } else {
        format!("{sign}{sec:.1}s")
    }
}

fn opt(v: Option<f64>, unit: &str, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}{unit}"))
        .unwrap_or_else(|| "—".into())
}

fn pct(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.0}%", 100.0 * part / whole)
    } else {
        "—".into()
    }
}

/// Markdown-safe cell text.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

struct ModelStats {
    runs: usize,
    total: f64,
    durations: Vec<f64>,
    tps: Vec<f64>,
    load: Vec<f64>,
    peak: Option<f64>,
    by_modality: BTreeMap<String, f64>,
}

fn per_model(entries: &[Entry]) -> BTreeMap<String, ModelStats> {
    let mut m: BTreeMap<String, ModelStats> = BTreeMap::new();
    for e in entries {
        let Some(id) = &e.model else { continue };
        let s = m.entry(id.clone()).or_insert_with(|| ModelStats {
            runs: 0,
            total: 0.0,
            durations: vec![],
            tps: vec![],
            load: vec![],
            peak: None,
            by_modality: BTreeMap::new(),
        });
        s.runs += 1;
        s.total += e.duration;
        s.durations.push(e.duration);
        s.tps.extend(e.tokens_per_sec);
        s.load.extend(e.load_time_s);
        if let Some(p) = e.peak_ram_gb {
            s.peak = Some(s.peak.map_or(p, |q: f64| q.max(p)));
        }
        *s.by_modality
            .entry(e.modality.clone().unwrap_or_else(|| "legacy".into()))
            .or_default() += e.duration;
    }
    m
}

/// The report for `entries` read from `source`; with `old`, a comparison section follows.
pub fn render(source: &str, entries: &[Entry], old: Option<(&str, &[Entry])>) -> String {
    let mut o = String::new();
    let version = most_common(entries.iter().map(|e| e.version.as_str())).unwrap_or("unknown");
    let date = run_date(entries);
    let _ = writeln!(o, "# Benchmark report — {version}, {date}\n");
    let _ = writeln!(o, "Source: `{source}` ({} records)\n", entries.len());

    // Run summary
    let count = |k: &str| entries.iter().filter(|e| e.outcome == k).count();
    let total: f64 = entries.iter().map(|e| e.duration).sum();
    let windows: Vec<(f64, f64)> = entries.iter().filter_map(Entry::window).collect();
    let _ = writeln!(o, "## Run summary\n");
    let _ = writeln!(o, "| | |\n| --- | --- |");
    let _ = writeln!(
        o,
        "| Tests | {} ({} passed, {} failed, {} skipped) |",
        entries.len(),
        count("passed"),
        count("failed"),
        count("skipped")
    );
    let _ = writeln!(o, "| Total test duration | {} |", duration(total));
    if let (Some(first), Some(last)) = (
        windows.iter().map(|w| w.0).min_by(f64::total_cmp),
        windows.iter().map(|w| w.1).max_by(f64::total_cmp),
    ) {
        let wall = last - first;
        let _ = writeln!(
            o,
            "| Wall time | {} (first test start → last test end) |",
            duration(wall)
        );
        let exact: Vec<f64> = entries
            .iter()
            .filter_map(|e| Some(e.end_ts? - e.start_ts?))
            .collect();
        if !exact.is_empty() {
            let eff: f64 = exact.iter().sum();
            let _ = writeln!(
                o,
                "| Effective compute time | {} ({} of wall time; test_start_ts/test_end_ts of {} of {} tests) |",
                duration(eff),
                pct(eff, wall),
                exact.len(),
                entries.len()
            );
        } else {
            let _ = writeln!(
                o,
                "| Effective compute time | — (no test_start_ts/test_end_ts: schema < 0.2.2) |"
            );
        }
    }
    o.push('\n');

    // Hardware and system
    if let Some(sys) = entries.iter().find_map(|e| e.system.as_ref()) {
        let _ = writeln!(o, "## Hardware and system\n");
        let _ = writeln!(o, "| | |\n| --- | --- |");
        flatten(sys, "", &mut |k, v| {
            let _ = writeln!(o, "| {} | {} |", cell(k), cell(v));
        });
        o.push('\n');
    }

    // Quality
    let _ = writeln!(o, "## Quality\n");
    let mut flags: BTreeMap<&str, usize> = BTreeMap::new();
    let mut degraded = Vec::new();
    let mut unflagged = 0;
    for e in entries {
        if e.quality_flags.is_empty() {
            unflagged += 1;
        }
        for f in &e.quality_flags {
            *flags.entry(f.as_str()).or_default() += 1;
        }
        let bad: Vec<&str> = e
            .quality_flags
            .iter()
            .filter(|f| *f != "clean")
            .map(String::as_str)
            .collect();
        if !bad.is_empty() {
            degraded.push(format!(
                "- `{}`{}: {}",
                e.test,
                model_suffix(e),
                bad.join(", ")
            ));
        }
    }
    let _ = writeln!(o, "| Flag | Tests |\n| --- | --- |");
    for (f, n) in &flags {
        let _ = writeln!(o, "| {f} | {n} |");
    }
    if unflagged > 0 {
        let _ = writeln!(o, "| (no system_health) | {unflagged} |");
    }
    if !degraded.is_empty() {
        let _ = writeln!(o, "\nDegraded tests:\n\n{}", degraded.join("\n"));
    }
    o.push('\n');

    // Models
    let stats = per_model(entries);
    let _ = writeln!(o, "## Models\n");
    if stats.is_empty() {
        let _ = writeln!(o, "No test recorded a model.\n");
    } else {
        let _ = writeln!(
            o,
            "| Model | Runs | Total | Median | Tokens/s | Load | Peak RAM | Vision | Text | Audio | Legacy |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        let mut rows: Vec<(&String, &ModelStats)> = stats.iter().collect();
        rows.sort_by(|a, b| b.1.total.total_cmp(&a.1.total).then(a.0.cmp(b.0)));
        for (id, s) in rows {
            let share = |k: &str| {
                s.by_modality
                    .get(k)
                    .map(|t| pct(*t, s.total))
                    .unwrap_or_else(|| "—".into())
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(id),
                s.runs,
                duration(s.total),
                opt(median(s.durations.clone()), "s", 1),
                opt(median(s.tps.clone()), "", 1),
                opt(median(s.load.clone()), "s", 2),
                opt(s.peak, " GB", 2),
                share("vision"),
                share("text"),
                share("audio"),
                share("legacy")
            );
        }
        o.push('\n');
    }

    // Repeats: the spread of each test over its runs (when a test ran more than once).
    let tests = per_test(entries);
    if tests.values().any(|r| r.durations.len() > 1) {
        let _ = writeln!(o, "## Repeats\n");
        let _ = writeln!(
            o,
            "Mean ± sample standard deviation over each test's runs.\n\n| Test | Model | Runs | Duration | Tokens/s |\n| --- | --- | ---: | ---: | ---: |"
        );
        for ((test, model), r) in &tests {
            let tps = match mean_sd(&r.tps) {
                None => "—".into(),
                Some((m, _)) if r.tps.len() == 1 => format!("{m:.1}"),
                Some((m, sd)) => format!("{m:.1} ± {sd:.1}"),
            };
            let _ = writeln!(
                o,
                "| `{}` | {} | {} | {} | {tps} |",
                cell(test),
                if model.is_empty() {
                    "—".into()
                } else {
                    cell(model)
                },
                r.durations.len(),
                duration_sd(&r.durations)
            );
        }
        o.push('\n');
    }

    // Slowest tests
    let _ = writeln!(o, "## Slowest tests\n");
    let mut slow: Vec<&Entry> = entries.iter().collect();
    slow.sort_by(|a, b| b.duration.total_cmp(&a.duration).then(a.test.cmp(&b.test)));
    let _ = writeln!(
        o,
        "| # | Test | Model | Duration | Outcome |\n| ---: | --- | --- | ---: | --- |"
    );
    for (i, e) in slow.iter().take(10).enumerate() {
        let _ = writeln!(
            o,
            "| {} | `{}` | {} | {} | {} |",
            i + 1,
            cell(&e.test),
            cell(e.model.as_deref().unwrap_or("—")),
            duration(e.duration),
            e.outcome
        );
    }
    o.push('\n');

    // Failures
    let _ = writeln!(o, "## Failures\n");
    let failed: Vec<&Entry> = entries.iter().filter(|e| e.outcome == "failed").collect();
    if failed.is_empty() {
        let _ = writeln!(o, "None.\n");
    } else {
        for e in failed {
            let _ = writeln!(
                o,
                "- `{}`{} after {}",
                e.test,
                model_suffix(e),
                duration(e.duration)
            );
        }
        o.push('\n');
    }

    if let Some((old_source, old_entries)) = old {
        compare(&mut o, old_source, old_entries, entries);
    }
    while o.ends_with("\n\n") {
        o.pop();
    }
    o
}

fn model_suffix(e: &Entry) -> String {
    e.model
        .as_ref()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default()
}

fn flatten(v: &Value, prefix: &str, f: &mut dyn FnMut(&str, &str)) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &key, f);
            }
        }
        Value::String(s) => f(prefix, s),
        Value::Null => {}
        other => f(prefix, &other.to_string()),
    }
}

fn most_common<'a>(it: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in it {
        *counts.entry(s).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(s, _)| s)
}

/// The run's date: the earliest `timestamp`'s date part (never today's date).
pub fn run_date(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| e.timestamp.get(..10).unwrap_or(""))
        .filter(|d| d.len() == 10)
        .min()
        .unwrap_or("undated")
        .to_string()
}

/// Change marker: ⚠️ slower than `worse` (fraction), ✅ faster than `better`.
fn marker(change: f64, worse: f64, better: f64) -> &'static str {
    if change > worse {
        " ⚠️"
    } else if change < -better {
        " ✅"
    } else {
        ""
    }
}

fn change_cells(old: f64, new: f64, worse: f64) -> (String, String) {
    let delta = new - old;
    let signed = if delta >= 0.0 {
        format!("+{}", duration(delta))
    } else {
        duration(delta)
    };
    if old > 0.0 {
        let c = delta / old;
        (
            signed,
            format!("{:+.1}%{}", 100.0 * c, marker(c, worse, 0.01)),
        )
    } else {
        (signed, "N/A (old time is 0)".into())
    }
}

fn compare(o: &mut String, old_source: &str, old: &[Entry], new: &[Entry]) {
    let _ = writeln!(o, "## Comparison with `{old_source}`\n");
    let _ = writeln!(
        o,
        "⚠️ slower (total > +3%, model or test > +5%), ✅ faster (< −1%).\n"
    );
    let ot: f64 = old.iter().map(|e| e.duration).sum();
    let nt: f64 = new.iter().map(|e| e.duration).sum();
    let (d, c) = change_cells(ot, nt, 0.03);
    let _ = writeln!(
        o,
        "| | Old | New | Δ | Change |\n| --- | ---: | ---: | ---: | ---: |"
    );
    let _ = writeln!(
        o,
        "| Total test duration | {} | {} | {d} | {c} |",
        duration(ot),
        duration(nt)
    );
    let _ = writeln!(
        o,
        "| Tests | {} | {} | {:+} | |\n",
        old.len(),
        new.len(),
        new.len() as i64 - old.len() as i64
    );

    let (om, nm) = (per_model(old), per_model(new));
    let mut ids: Vec<&String> = om.keys().chain(nm.keys()).collect();
    ids.sort();
    ids.dedup();
    let _ = writeln!(o, "### Per model (total time)\n");
    let _ = writeln!(
        o,
        "| Model | Old | New | Δ | Change |\n| --- | ---: | ---: | ---: | ---: |"
    );
    let mut one_sided = false;
    for id in ids {
        match (om.get(id), nm.get(id)) {
            (Some(a), Some(b)) => {
                let (d, c) = change_cells(a.total, b.total, 0.05);
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {d} | {c} |",
                    cell(id),
                    duration(a.total),
                    duration(b.total)
                );
            }
            (None, Some(b)) => {
                one_sided = true;
                let _ = writeln!(o, "| {} | N/A | {} | | NEW |", cell(id), duration(b.total));
            }
            (Some(a), None) => {
                one_sided = true;
                let _ = writeln!(o, "| {} | {} | N/A | | GONE |", cell(id), duration(a.total));
            }
            (None, None) => {}
        }
    }
    if one_sided {
        let _ = writeln!(
            o,
            "\nN/A: the model appears in only one of the two runs (NEW: only in the new run, GONE: only in the old one), so there is nothing to compare it with."
        );
    }
    o.push('\n');

    let (ot, nt) = (per_test(old), per_test(new));
    let _ = writeln!(o, "### Per test (mean duration over repeats)\n");
    let _ = writeln!(
        o,
        "A test on a model is marked ⚠️/✅ only when its mean moved by more than the threshold and by more than the two runs' standard deviations together (repeats that scatter that much do not show a change).\n"
    );
    let _ = writeln!(
        o,
        "| Test | Old | New | Δ | Change |\n| --- | ---: | ---: | ---: | ---: |"
    );
    let mut keys: Vec<&(String, String)> = ot.keys().chain(nt.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        match (ot.get(k), nt.get(k)) {
            (Some(a), Some(b)) => {
                let (Some((ma, sa)), Some((mb, sb))) =
                    (mean_sd(&a.durations), mean_sd(&b.durations))
                else {
                    continue;
                };
                let (d, mut c) = change_cells(ma, mb, 0.05);
                if (mb - ma).abs() <= sa + sb {
                    c = c.replace(" ⚠️", "").replace(" ✅", "");
                }
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {d} | {c} |",
                    test_cell(k),
                    duration_sd(&a.durations),
                    duration_sd(&b.durations)
                );
            }
            (None, Some(b)) => {
                let _ = writeln!(
                    o,
                    "| {} | N/A | {} | | NEW |",
                    test_cell(k),
                    duration_sd(&b.durations)
                );
            }
            (Some(a), None) => {
                let _ = writeln!(
                    o,
                    "| {} | {} | N/A | | GONE |",
                    test_cell(k),
                    duration_sd(&a.durations)
                );
            }
            (None, None) => {}
        }
    }
    o.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips_and_formats() {
        let t = parse_rfc3339("2026-11-23T09:05:07Z").unwrap() as u64;
        assert_eq!(civil_from_unix(t), (2026, 11, 23, 9, 5, 7));
        assert_eq!(
            format_utc(t, "%d %b %Y, %H:%M:%S %B %%"),
            "23 Nov 2026, 09:05:07 November %"
        );
        assert_eq!(civil_from_unix(951_782_400), (2000, 2, 29, 0, 0, 0));
    }

    #[test]
    fn rfc3339_to_unix() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339("2026-01-30T10:00:00+01:00"),
            Some(1769763600.0)
        );
        assert_eq!(
            parse_rfc3339("2025-12-20T02:26:10.5+00:00"),
            Some(1766197570.5)
        );
        assert_eq!(parse_rfc3339("nonsense"), None);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(12.34), "12.3s");
        assert_eq!(duration(312.3), "5m 12.3s");
        assert_eq!(duration(3723.4), "1h 02m 03.4s");
        assert_eq!(duration(-2.0), "-2.0s");
        assert_eq!(duration(0.04), "0.04s");
        assert_eq!(duration(0.0), "0.0s");
    }

    #[test]
    fn markers_follow_thresholds() {
        assert_eq!(change_cells(100.0, 104.0, 0.03).1, "+4.0% ⚠️");
        assert_eq!(change_cells(100.0, 102.0, 0.03).1, "+2.0%");
        assert_eq!(change_cells(100.0, 98.0, 0.05).1, "-2.0% ✅");
        assert_eq!(change_cells(100.0, 104.0, 0.05).1, "+4.0%");
    }

    #[test]
    fn mean_and_spread_over_repeats() {
        let (m, sd) = mean_sd(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((m, sd), (2.0, 1.0));
        assert_eq!(mean_sd(&[4.0]), Some((4.0, 0.0)));
        assert_eq!(mean_sd(&[]), None);
        assert_eq!(duration_sd(&[1.0, 2.0, 3.0]), "2.0s ± 1.0s");
        assert_eq!(duration_sd(&[2.5]), "2.5s");
    }

    #[test]
    fn repeats_show_their_spread_and_only_a_change_beyond_it_is_marked() {
        let runs = |test: &str, durations: &[f64], tps: f64| -> Vec<Entry> {
            durations
                .iter()
                .map(|d| {
                    Entry::from_record(&serde_json::json!({"test": test, "outcome": "passed",
                        "duration": d, "model": {"id": "org/m"},
                        "performance": {"tokens_per_sec": tps + d}}))
                })
                .collect()
        };
        let mut old = runs("steady", &[1.0, 1.1, 0.9], 10.0);
        old.extend(runs("noisy", &[1.0, 2.0, 3.0], 10.0));
        let mut new = runs("steady", &[1.3, 1.4, 1.2], 10.0);
        new.extend(runs("noisy", &[2.5, 2.6, 2.4], 10.0));
        // A failed repeat says nothing of the speed: it is not averaged in.
        new.push(Entry::from_record(&serde_json::json!({"test": "steady",
            "outcome": "failed", "duration": 0.01, "model": {"id": "org/m"}})));
        let md = render("new.jsonl", &new, Some(("old.jsonl", &old)));
        assert!(md.contains("## Repeats"), "{md}");
        assert!(
            md.contains("| `steady` | org/m | 3 | 1.3s ± 0.10s | 11.3 ± 0.1 |"),
            "{md}"
        );
        // +30 % and 0.3 s apart with 0.1 s spreads: slower. +25 % inside a 1 s spread: not marked.
        assert!(
            md.contains("| `steady` (org/m) | 1.0s ± 0.10s | 1.3s ± 0.10s | +0.30s | +30.0% ⚠️ |"),
            "{md}"
        );
        assert!(
            md.contains("| `noisy` (org/m) | 2.0s ± 1.0s | 2.5s ± 0.10s | +0.50s | +25.0% |"),
            "{md}"
        );
        // One run each: no Repeats section.
        let single = render("x", &runs("once", &[1.0], 5.0), None);
        assert!(!single.contains("## Repeats"), "{single}");
    }

    #[test]
    fn median_even_and_odd() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
