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

#[test]
fn make_install_puts_everything_under_prefix_and_uninstall_takes_it_away() {
    let prefix = tempfile::tempdir().unwrap();
    let make = |target: &str| {
        let out = std::process::Command::new("make")
            .arg("-C")
            .arg(root())
            .args([target, "PROFILE=debug"])
            .arg(format!("PREFIX={}", prefix.path().display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    make("install");
    let p = |rel: &str| prefix.path().join(rel);
    for b in ["mlxk-gen", "mlxk-serve", "memmon", "report-gen"] {
        for f in [
            format!("bin/{b}"),
            format!("share/man/man1/{b}.1"),
            format!("share/bash-completion/completions/{b}"),
            format!("share/zsh/site-functions/_{b}"),
            format!("share/fish/vendor_completions.d/{b}.fish"),
        ] {
            assert!(p(&f).exists(), "{f} not installed");
        }
    }
    assert!(p("lib/mlxk/mlx/lib/libmlx.so").exists());
    // The installed binary runs, and finds the MLX installed beside it once .deps is gone.
    let v = std::process::Command::new(p("bin/mlxk-gen"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(v.status.success());
    let elf = std::fs::read(p("bin/mlxk-gen")).unwrap();
    let needle = b"$ORIGIN/../lib/mlxk/mlx/lib";
    assert!(
        elf.windows(needle.len()).any(|w| w == needle),
        "the runpath names the library beside the binary"
    );
    let bash = std::fs::read_to_string(p("share/bash-completion/completions/mlxk-gen")).unwrap();
    assert!(
        bash.contains("--prompt-cache"),
        "completions know the flags"
    );
    make("uninstall");
    let left: Vec<_> = walk(prefix.path())
        .into_iter()
        .filter(|f| f.is_file())
        .collect();
    assert!(left.is_empty(), "left after uninstall: {left:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        }
        v.push(p);
    }
    v
}
