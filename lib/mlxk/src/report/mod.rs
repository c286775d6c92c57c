//! Benchmark report records (schema 0.1.0 – 0.2.2, seeds/000): validation against the
//! embedded JSON Schemas, additive migration, and the Markdown report (`markdown`).

pub mod markdown;
pub mod run;

use serde_json::Value;

/// Every schema version this build knows, oldest first.
pub const VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.2.1", "0.2.2"];
/// The version new records are written in (`report-current.schema.json`).
pub const CURRENT: &str = "0.2.2";

const SCHEMA_TEXTS: &[(&str, &str)] = &[
    (
        "0.1.0",
        include_str!("../../../../benchmarks/schemas/report-v0.1.0.schema.json"),
    ),
    (
        "0.2.0",
        include_str!("../../../../benchmarks/schemas/report-v0.2.0.schema.json"),
    ),
    (
        "0.2.1",
        include_str!("../../../../benchmarks/schemas/report-v0.2.1.schema.json"),
    ),
    (
        "0.2.2",
        include_str!("../../../../benchmarks/schemas/report-v0.2.2.schema.json"),
    ),
];

/// The compiled validators, built once per process.
pub struct Schemas {
    validators: Vec<(&'static str, jsonschema::Validator)>,
}

impl Schemas {
    pub fn new() -> Self {
        let validators = SCHEMA_TEXTS
            .iter()
            .map(|(v, text)| {
                let schema: Value =
                    serde_json::from_str(text).expect("embedded schema is valid JSON");
                let validator = jsonschema::draft7::options()
                    .should_validate_formats(true)
                    .build(&schema)
                    .expect("embedded schema is a valid draft-07 schema");
                (*v, validator)
            })
            .collect();
        Schemas { validators }
    }

    pub fn get(&self, version: &str) -> Option<&jsonschema::Validator> {
        self.validators
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, s)| s)
    }

    /// Problems of one record against the version it declares (empty when valid).
    pub fn check(&self, record: &Value) -> Vec<Problem> {
        let Some(obj) = record.as_object() else {
            return vec![Problem::new("/", "a report record must be a JSON object")];
        };
        let version = match obj.get("schema_version") {
            Some(Value::String(v)) => v.as_str(),
            Some(other) => {
                return vec![Problem::new(
                    "/schema_version",
                    &format!("{other} is not a version string"),
                )];
            }
            None => {
                return vec![Problem::new(
                    "/",
                    "\"schema_version\" is a required property",
                )];
            }
        };
        let Some(validator) = self.get(version) else {
            return vec![Problem::new(
                "/schema_version",
                &format!(
                    "unknown schema version \"{version}\" (known: {})",
                    VERSIONS.join(", ")
                ),
            )];
        };
        // The common case is a valid record: the boolean check is far cheaper than collecting errors.
        let mut problems: Vec<Problem> = if validator.is_valid(record) {
            Vec::new()
        } else {
            validator
                .iter_errors(record)
                .map(|e| Problem::new(e.instance_path().as_str(), &describe(&e)))
                .collect()
        };
        if let (Some(start), Some(end)) = (
            obj.get("test_start_ts").and_then(Value::as_f64),
            obj.get("test_end_ts").and_then(Value::as_f64),
        ) && end < start
        {
            problems.push(Problem::new(
                "/test_end_ts",
                &format!("test_end_ts {end} is before test_start_ts {start}"),
            ));
        }
        problems
    }
}

/// The validator's message, except that enum errors list every allowed value (the library
/// shortens long lists to "or N other candidates", which hides the fix).
fn describe(e: &jsonschema::ValidationError) -> String {
    match e.kind() {
        jsonschema::error::ValidationErrorKind::Enum { options } => {
            let all: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(Value::to_string).collect())
                .unwrap_or_default();
            format!("{} is not one of {}", e.instance(), all.join(", "))
        }
        _ => e.to_string(),
    }
}

impl Default for Schemas {
    fn default() -> Self {
        Self::new()
    }
}

/// One thing wrong with one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// JSON Pointer into the record (`/` for the whole record).
    pub path: String,
    pub message: String,
}

impl Problem {
    fn new(path: &str, message: &str) -> Self {
        let path = if path.is_empty() { "/" } else { path };
        Problem {
            path: path.to_string(),
            message: message.to_string(),
        }
    }
}

/// A problem at a line of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct LineProblem {
    pub line: usize,
    pub problem: Problem,
}

/// The parsed, non-blank lines of a JSON Lines text, and the problems of those that failed.
pub struct Parsed {
    pub records: Vec<(usize, Value)>,
    pub problems: Vec<LineProblem>,
    /// Non-blank lines seen (valid or not).
    pub lines: usize,
}

/// The non-blank lines of a JSON Lines text: (1-based number, bytes, is the unterminated last line).
fn split_lines(bytes: &[u8]) -> Vec<(usize, &[u8], bool)> {
    let ends_with_newline = bytes.last() == Some(&b'\n');
    let chunks: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let count = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .filter(|(_, raw)| !raw.iter().all(|b| b.is_ascii_whitespace()))
        .map(|(i, raw)| (i + 1, raw, i + 1 == count && !ends_with_newline))
        .collect()
}

/// One line as JSON; an unterminated last line that does not parse is a truncated write (the
/// writer crashed), not bad JSON.
fn parse_line(n: usize, raw: &[u8], unterminated: bool) -> Result<Value, LineProblem> {
    let problem = |message: String| LineProblem {
        line: n,
        problem: Problem::new("/", &message),
    };
    match serde_json::from_slice::<Value>(raw) {
        Ok(v) => Ok(v),
        Err(e) if std::str::from_utf8(raw).is_err() => Err(problem(format!("not UTF-8 ({e})"))),
        Err(e) if unterminated => Err(problem(format!(
            "truncated last line (no newline, JSON ends early: {e}); the writer stopped mid-record"
        ))),
        Err(e) => Err(problem(format!("not valid JSON: {e}"))),
    }
}

/// Parses JSON Lines into records and the problems of lines that are not JSON.
pub fn parse_lines(bytes: &[u8]) -> Parsed {
    let lines = split_lines(bytes);
    let mut out = Parsed {
        records: Vec::new(),
        problems: Vec::new(),
        lines: lines.len(),
    };
    for (n, raw, unterminated) in lines {
        match parse_line(n, raw, unterminated) {
            Ok(v) => out.records.push((n, v)),
            Err(p) => out.problems.push(p),
        }
    }
    out
}

/// Validates every line; returns the problems (sorted by line) and the number of records.
/// Lines are parsed and checked on all cores: 100 000 records in well under a second.
pub fn validate_bytes(schemas: &Schemas, bytes: &[u8]) -> (Vec<LineProblem>, usize) {
    let lines = split_lines(bytes);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let per = lines.len().div_ceil(threads).max(1);
    let mut problems: Vec<LineProblem> = std::thread::scope(|scope| {
        let workers: Vec<_> = lines
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut found = Vec::new();
                    for &(n, raw, unterminated) in chunk {
                        match parse_line(n, raw, unterminated) {
                            Ok(record) => found.extend(
                                schemas
                                    .check(&record)
                                    .into_iter()
                                    .map(|problem| LineProblem { line: n, problem }),
                            ),
                            Err(p) => found.push(p),
                        }
                    }
                    found
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("validation worker panicked"))
            .collect()
    });
    problems.sort_by_key(|p| p.line);
    (problems, lines.len())
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MigrateError {
    #[error("unknown target version \"{0}\" (known: {known})", known = VERSIONS.join(", "))]
    UnknownTarget(String),
    #[error("line {line}: cannot migrate {from} down to {to}: migration only upgrades")]
    Downgrade {
        line: usize,
        from: String,
        to: String,
    },
    #[error("line {line}: {path}: {message}")]
    Invalid {
        line: usize,
        path: String,
        message: String,
    },
}

/// Upgrades every record to `to`. Changes are additive only, so the one edit is the version
/// field; a record that is invalid as it stands, or that would not be valid under `to` (a field
/// the target does not know), is refused — nothing is dropped. All-or-nothing: on any error no
/// output is produced.
pub fn migrate(schemas: &Schemas, bytes: &[u8], to: &str) -> Result<Vec<Value>, Vec<MigrateError>> {
    let Some(target_rank) = VERSIONS.iter().position(|v| *v == to) else {
        return Err(vec![MigrateError::UnknownTarget(to.to_string())]);
    };
    let parsed = parse_lines(bytes);
    let mut errors: Vec<MigrateError> = parsed
        .problems
        .iter()
        .map(|p| MigrateError::Invalid {
            line: p.line,
            path: p.problem.path.clone(),
            message: p.problem.message.clone(),
        })
        .collect();
    let mut out = Vec::new();
    for (n, record) in parsed.records {
        let before = schemas.check(&record);
        if !before.is_empty() {
            errors.extend(before.into_iter().map(|p| MigrateError::Invalid {
                line: n,
                path: p.path,
                message: p.message,
            }));
            continue;
        }
        let from = record["schema_version"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let from_rank = VERSIONS.iter().position(|v| *v == from).unwrap_or(0);
        if from_rank > target_rank {
            errors.push(MigrateError::Downgrade {
                line: n,
                from,
                to: to.to_string(),
            });
            continue;
        }
        let mut upgraded = record;
        upgraded["schema_version"] = Value::String(to.to_string());
        let after = schemas.check(&upgraded);
        if !after.is_empty() {
            errors.extend(after.into_iter().map(|p| MigrateError::Invalid {
                line: n,
                path: p.path,
                message: format!("not carried into {to}: {}", p.message),
            }));
            continue;
        }
        out.push(upgraded);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal(version: &str) -> Value {
        json!({"schema_version": version, "timestamp": "2026-01-30T10:00:00+00:00",
               "mlx_knife_version": "2.0.4-beta.9", "test": "t::a", "outcome": "passed"})
    }

    #[test]
    fn every_version_accepts_its_minimal_record() {
        let s = Schemas::new();
        for v in VERSIONS {
            assert_eq!(s.check(&minimal(v)), vec![], "{v}");
        }
    }

    #[test]
    fn versions_are_additive() {
        let s = Schemas::new();
        let mut full = minimal("0.1.0");
        full["duration"] = json!(1.5);
        full["model"] = json!({"id": "m", "size_gb": 1.0, "family": "llama", "variant": "4bit"});
        full["performance"] = json!({"tokens_per_sec": 12.0});
        full["stop_tokens"] =
            json!({"configured": ["</s>"], "detected": [], "workaround": null, "leaked": false});
        full["system"] = json!({"os": "Linux"});
        full["metadata"] = json!({"anything": [1, 2]});
        for v in VERSIONS {
            let mut r = full.clone();
            r["schema_version"] = json!(v);
            assert_eq!(s.check(&r), vec![], "0.1.0 record must stay valid as {v}");
        }
    }

    #[test]
    fn fields_arrive_in_their_version() {
        let s = Schemas::new();
        let mut r = minimal("0.2.1");
        r["test_start_ts"] = json!(1.0);
        let p = s.check(&r);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "/");
        assert!(p[0].message.contains("test_start_ts"), "{}", p[0].message);
        r["schema_version"] = json!("0.2.2");
        assert_eq!(s.check(&r), vec![]);
    }

    #[test]
    fn enums_types_and_formats_are_checked() {
        let s = Schemas::new();
        let mut r = minimal("0.2.2");
        r["outcome"] = json!("pass");
        r["metadata"] = json!({"inference_modality": "smell"});
        r["timestamp"] = json!("yesterday");
        r["performance"] = json!({"tokens_per_sec": "fast"});
        let mut paths: Vec<String> = s.check(&r).into_iter().map(|p| p.path).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "/metadata/inference_modality",
                "/outcome",
                "/performance/tokens_per_sec",
                "/timestamp"
            ]
        );
    }

    #[test]
    fn reversed_window_is_refused() {
        let s = Schemas::new();
        let mut r = minimal("0.2.2");
        r["test_start_ts"] = json!(10.0);
        r["test_end_ts"] = json!(9.0);
        assert_eq!(s.check(&r)[0].path, "/test_end_ts");
    }

    #[test]
    fn truncated_last_line_is_named() {
        let text = format!("{}\n{{\"schema_version\": \"0.2", minimal("0.2.2"));
        let p = parse_lines(text.as_bytes());
        assert_eq!(p.records.len(), 1);
        assert_eq!(p.problems[0].line, 2);
        assert!(
            p.problems[0]
                .problem
                .message
                .starts_with("truncated last line")
        );
    }

    #[test]
    fn migrate_bumps_only_the_version_and_refuses_unknown_fields() {
        let s = Schemas::new();
        let mut old = minimal("0.1.0");
        old["metadata"] = json!({"x": 1});
        let out = migrate(&s, format!("{old}\n").as_bytes(), "0.2.2").unwrap();
        let mut want = old.clone();
        want["schema_version"] = json!("0.2.2");
        assert_eq!(out, vec![want]);

        let mut bad = minimal("0.2.0");
        bad["system_health"] = json!({"mystery": 1});
        let errs = migrate(&s, format!("{bad}\n").as_bytes(), "0.2.2").unwrap_err();
        assert!(matches!(&errs[0], MigrateError::Invalid { line: 1, .. }));

        let newer = minimal("0.2.2");
        let errs = migrate(&s, format!("{newer}\n").as_bytes(), "0.1.0").unwrap_err();
        assert!(matches!(&errs[0], MigrateError::Downgrade { .. }));
        assert!(matches!(
            migrate(&s, b"", "9.9.9").unwrap_err()[0],
            MigrateError::UnknownTarget(_)
        ));
    }
}
