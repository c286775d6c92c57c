//! The repository's own build files: every Makefile target named phony has a rule, and what the
//! rules run (scripts, examples, benches) exists.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn makefile() -> String {
    std::fs::read_to_string(root().join("Makefile")).unwrap()
}

#[test]
fn every_phony_target_has_a_rule() {
    let mk = makefile();
    let phony: Vec<&str> = mk
        .lines()
        .find_map(|l| l.strip_prefix(".PHONY:"))
        .expect(".PHONY line")
        .split_whitespace()
        .collect();
    for t in phony {
        let rule = format!("\n{t}:");
        assert!(mk.contains(&rule), "`make {t}` is phony but has no rule");
    }
}

#[test]
fn what_the_rules_run_exists() {
    let mk = makefile();
    for word in mk.split_whitespace() {
        if (word.starts_with("benchmarks/") || word.starts_with("scripts/")) && !word.contains('*')
        {
            assert!(
                root().join(word).exists(),
                "the Makefile runs {word}, which does not exist"
            );
        }
    }
    let words: Vec<&str> = mk.split_whitespace().collect();
    for w in words.windows(2) {
        let (kind, dir) = match w[0] {
            "--example" => ("example", "examples"),
            "--bench" => ("bench", "benches"),
            _ => continue,
        };
        let found = ["lib/mlxk-infer", "lib/mlxk"].iter().any(|c| {
            root()
                .join(c)
                .join(dir)
                .join(format!("{}.rs", w[1]))
                .exists()
        });
        assert!(
            found,
            "the Makefile runs {kind} {}, which does not exist",
            w[1]
        );
    }
}
