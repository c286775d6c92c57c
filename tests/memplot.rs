//! memplot end to end: figure structure from fixture files, SVG rows, a 4-hour run, bad
//! inputs, and the HTML opened in headless Chromium (installed by scripts/bootstrap).

#[allow(dead_code)]
mod support;
use serde_json::Value;
use std::path::{Path, PathBuf};
use support::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/memplot")
        .join(name)
}

fn memplot(args: &[&std::ffi::OsStr]) -> Run {
    run_tool("memplot", args)
}

fn figure_of(html: &str) -> Value {
    let start = html
        .find(r#"<script id="figure" type="application/json">"#)
        .expect("figure script")
        + 44;
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end].replace("<\\/", "</")).unwrap()
}

/// The figure reduced to what a person sees: traces and their axes, regions by colour,
/// labels, thresholds.
fn structure(fig: &Value) -> String {
    let mut out = String::from("traces:\n");
    for t in fig["data"].as_array().unwrap() {
        out += &format!(
            "  {} [{} {}] {} points\n",
            t["name"].as_str().unwrap(),
            t["xaxis"].as_str().unwrap(),
            t["yaxis"].as_str().unwrap(),
            t["x"].as_array().unwrap().len()
        );
    }
    out += "shapes:\n";
    for s in fig["layout"]["shapes"].as_array().unwrap() {
        let what = match (s["type"].as_str().unwrap(), s["fillcolor"].as_str()) {
            ("rect", Some(c)) if c.starts_with("rgba(200") => "model region",
            ("rect", _) => "infrastructure region",
            ("line", _) if s["xref"] == "paper" => "threshold",
            _ => "test start",
        };
        let x = if s["xref"] == "paper" {
            format!("y={}", s["y0"])
        } else {
            format!("x={}..{}", s["x0"], s["x1"])
        };
        out += &format!("  {what} {x}\n");
    }
    out += "annotations:\n";
    for a in fig["layout"]["annotations"].as_array().unwrap() {
        out += &format!(
            "  {} (hover: {})\n",
            a["text"].as_str().unwrap(),
            a["hovertext"].as_str().unwrap_or("-")
        );
    }
    let axes: Vec<&String> = fig["layout"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.contains("axis"))
        .collect();
    out += &format!(
        "axes: {axes:?}\ntitle: {}\n",
        fig["layout"]["title"]["text"]
    );
    out
}

#[test]
fn figure_structure_golden_with_events() {
    let d = tempfile::tempdir().unwrap();
    let html = d.path().join("t.html");
    let Run {
        stdout: out,
        stderr: err,
        code,
    } = memplot(&[
        fixture("events.jsonl").as_os_str(),
        fixture("mem.jsonl").as_os_str(),
        fixture("bench.jsonl").as_os_str(),
        "-o".as_ref(),
        html.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), html.display().to_string());
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(
        !text.contains("cdn.plot.ly") && !text.contains("https://"),
        "works offline: no remote scripts"
    );
    insta::assert_snapshot!("memplot_structure_events", structure(&figure_of(&text)));
}

#[test]
fn without_events_tests_with_models_are_gray() {
    let d = tempfile::tempdir().unwrap();
    let html = d.path().join("t.html");
    let Run {
        stderr: err, code, ..
    } = memplot(&[
        fixture("mem.jsonl").as_os_str(),
        fixture("bench.jsonl").as_os_str(),
        "-o".as_ref(),
        html.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let fig = figure_of(&std::fs::read_to_string(&html).unwrap());
    let s = structure(&fig);
    assert_eq!(s.matches("model region").count(), 2, "{s}");
    assert_eq!(s.matches("infrastructure region").count(), 2, "{s}");
    assert!(
        s.contains("test_old"),
        "0.2.0 records are placed by timestamp − duration: {s}"
    );
}

#[test]
fn python_tools_samples_plot_and_gpu_row_is_omitted() {
    let d = tempfile::tempdir().unwrap();
    let html = d.path().join("py.html");
    let Run {
        stderr: err, code, ..
    } = memplot(&[
        fixture("python-mem.jsonl").as_os_str(),
        "-o".as_ref(),
        html.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let fig = figure_of(&std::fs::read_to_string(&html).unwrap());
    let names: Vec<&str> = fig["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "RAM free (GB)",
            "CPU user %",
            "CPU sys %",
            "CPU idle %",
            "Load 1 min"
        ]
    );
    assert!(
        fig["layout"].get("yaxis3").is_none(),
        "no GPU data, no GPU row"
    );
    assert!(
        fig["layout"]["shapes"].as_array().unwrap().is_empty(),
        "no swap, no thresholds without total RAM"
    );
}

#[test]
fn svg_parses_and_has_three_rows() {
    let d = tempfile::tempdir().unwrap();
    let svg = d.path().join("t.svg");
    let Run {
        stderr: err, code, ..
    } = memplot(&[
        fixture("mem.jsonl").as_os_str(),
        fixture("bench.jsonl").as_os_str(),
        fixture("events.jsonl").as_os_str(),
        "-o".as_ref(),
        svg.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("well-formed SVG");
    let rows: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_attribute("data-row"))
        .map(|n| n.attribute("data-row").unwrap())
        .collect();
    assert_eq!(rows, ["1", "2", "3"]);
    let series = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("series"))
        .count();
    assert_eq!(series, 8, "RAM, swap, RSS, CPU user, sys, idle, load, GPU");
    let regions = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("region"))
        .count();
    assert_eq!(
        regions, 4,
        "2 model spans from events + 2 infrastructure tests"
    );
    let labels: Vec<String> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("model-label"))
        .map(|n| {
            n.descendants()
                .rfind(|c| c.is_text())
                .unwrap()
                .text()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(labels, ["Qwen3-0.6B-4bit", "pixtral-12b-8bit"]);
}

fn four_hour_run(dir: &Path) -> PathBuf {
    let p = dir.join("long.jsonl");
    let mut text = String::with_capacity(72_000 * 200);
    for i in 0..72_000u32 {
        let ts = 1769767200.0 + i as f64 * 0.2;
        let free = if i == 50_000 {
            1.0
        } else {
            20.0 + (i % 100) as f64 / 100.0
        };
        text.push_str(&format!(
            "{{\"ts\":{ts:.1},\"elapsed_s\":{:.1},\"ram_free_gb\":{free},\"ram_total_gb\":24.0,\"swap_used_mb\":0.0,\"load_1\":1.5,\"cpu_user\":30.0,\"cpu_sys\":5.0,\"cpu_idle\":65.0,\"proc_rss_mb\":900.0}}\n",
            i as f64 * 0.2
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn four_hour_run_is_decimated_small_and_keeps_the_dip() {
    let d = tempfile::tempdir().unwrap();
    let long = four_hour_run(d.path());
    let html = d.path().join("long.html");
    let Run {
        stderr: err, code, ..
    } = memplot(&[long.as_os_str(), "-o".as_ref(), html.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    let size = std::fs::metadata(&html).unwrap().len();
    assert!(size < 5_000_000, "{size} bytes");
    let fig = figure_of(&std::fs::read_to_string(&html).unwrap());
    let title = fig["layout"]["title"]["text"].as_str().unwrap();
    assert!(
        title.contains("decimated for display: 72000 samples"),
        "{title}"
    );
    let ram = &fig["data"][0];
    assert!(ram["y"].as_array().unwrap().len() <= mlxk::timeline::MAX_POINTS);
    assert!(
        ram["y"]
            .as_array()
            .unwrap()
            .iter()
            .any(|y| y.as_f64() == Some(1.0)),
        "the dip to 1 GB survives"
    );
}

#[test]
fn malformed_lines_are_named_and_skipped_bad_inputs_fail() {
    let d = tempfile::tempdir().unwrap();
    let html = d.path().join("b.html");
    let Run {
        stderr: err, code, ..
    } = memplot(&[
        fixture("broken.jsonl").as_os_str(),
        "-o".as_ref(),
        html.as_os_str(),
    ]);
    assert_eq!(code, 0);
    let name = fixture("broken.jsonl").display().to_string();
    assert!(
        err.contains(&format!("memplot: skipped {name}:2: not valid JSON")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "memplot: skipped {name}:3: neither a memmon sample"
        )),
        "{err}"
    );

    let empty = d.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let Run {
        stderr: err, code, ..
    } = memplot(&[empty.as_os_str(), "-o".as_ref(), html.as_os_str()]);
    assert_eq!(code, 1);
    assert!(err.contains("is empty"), "{err}");
    let Run {
        stderr: err, code, ..
    } = memplot(&[
        fixture("bench.jsonl").as_os_str(),
        "-o".as_ref(),
        html.as_os_str(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("no memmon samples"), "{err}");
    let Run {
        stderr: err, code, ..
    } = memplot(&[
        fixture("mem.jsonl").as_os_str(),
        "-o".as_ref(),
        "t.png".as_ref(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("use .html or .svg"), "{err}");
}

/// Renders `page` in headless Chromium: (screenshot PNG bytes, browser log, DOM after scripts).
fn chromium(page: &Path, dir: &Path) -> (Vec<u8>, String, String) {
    let exe = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|c| {
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {c}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect(
            "Chromium is not installed: run scripts/bootstrap (it installs the chromium package)",
        );
    let common = |extra: &[&str]| {
        let mut c = std::process::Command::new(exe);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1000",
            "--virtual-time-budget=10000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            tempfile::tempdir_in(dir).unwrap().keep().display()
        ))
        .args(extra)
        .arg(format!("file://{}", page.display()));
        c
    };
    let shot = dir.join("shot.png");
    let o = common(&[
        "--enable-logging=stderr",
        "--v=0",
        &format!("--screenshot={}", shot.display()),
    ])
    .output()
    .unwrap();
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    let dom = common(&["--dump-dom"]).output().unwrap();
    (
        std::fs::read(&shot).expect("screenshot written"),
        log,
        String::from_utf8_lossy(&dom.stdout).into(),
    )
}

#[test]
fn html_renders_in_a_real_browser_without_errors() {
    let d = tempfile::tempdir().unwrap();
    let html = d.path().join("t.html");
    let Run {
        stderr: err, code, ..
    } = memplot(&[
        fixture("mem.jsonl").as_os_str(),
        fixture("bench.jsonl").as_os_str(),
        fixture("events.jsonl").as_os_str(),
        "-o".as_ref(),
        html.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (png_bytes, log, dom) = chromium(&html, d.path());
    assert!(
        dom.contains(r#"data-rendered="yes""#),
        "Plotly finished drawing (inflated offline)"
    );
    assert!(dom.contains("main-svg"), "Plotly's SVG is in the page");
    let js_errors: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("CONSOLE")
                && (l.contains("Uncaught") || l.contains("Error") || l.contains("memplot:"))
        })
        .collect();
    assert!(js_errors.is_empty(), "{js_errors:#?}");

    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let mut colors = std::collections::HashSet::new();
    let mut non_white = 0usize;
    for p in buf[..info.buffer_size()].chunks(px) {
        colors.insert(p[..3].to_vec());
        if p[..3] != [255, 255, 255] {
            non_white += 1;
        }
    }
    assert!(colors.len() > 50, "not blank: {} colours", colors.len());
    assert!(
        non_white > 20_000,
        "something is drawn: {non_white} non-white pixels"
    );
}
