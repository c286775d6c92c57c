//! memplot's figure (seeds/002, "Memory Timeline Visualization"): memmon samples, benchmark
//! report records and load/unload events, recognised line by line by their content, turned
//! into three rows sharing one time axis — memory, CPU, GPU (only when any sample has GPU data).

use crate::report::markdown::parse_rfc3339;
use crate::table::round_to;
use serde_json::{Value, json};
use std::fmt::Write;

/// Above this many samples the series are decimated for display (min and max per bucket, so
/// peaks survive); the plot says so.
pub const MAX_POINTS: usize = 4000;

#[derive(Debug, Default)]
pub struct Inputs {
    pub samples: Vec<Value>,
    pub tests: Vec<Value>,
    pub events: Vec<Value>,
    /// `file:line: why` for every line that was skipped.
    pub skipped: Vec<String>,
}

impl Inputs {
    /// Sorts one JSON Lines text into samples, tests and events by what each line holds.
    pub fn add_text(&mut self, name: &str, text: &str) {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => {
                    self.skipped
                        .push(format!("{name}:{}: not valid JSON ({e})", i + 1));
                    continue;
                }
            };
            if v.get("summary").is_some() {
                continue;
            } else if v.get("schema_version").is_some() {
                self.tests.push(v);
            } else if matches!(v["type"].as_str(), Some("load" | "unload")) {
                self.events.push(v);
            } else if v.get("type").is_some() {
                // Other records of our tools (result, delta, model …) carry nothing to draw.
            } else if v["ts"].is_number() {
                self.samples.push(v);
            } else {
                self.skipped.push(format!(
                    "{name}:{}: neither a memmon sample, a report record nor a load/unload event",
                    i + 1
                ));
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: &'static str,
    /// 1 memory, 2 CPU, 3 GPU.
    pub row: u8,
    pub right_axis: bool,
    pub color: &'static str,
    pub fill: bool,
    pub dash: bool,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub x0: f64,
    pub x1: f64,
    /// A model is in RAM (gray) or an infrastructure test (light blue).
    pub model: Option<String>,
    pub test: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub x: f64,
    pub text: String,
    pub full: String,
}

#[derive(Debug, Default)]
pub struct Timeline {
    /// Unix seconds of x = 0.
    pub t0: f64,
    pub series: Vec<Series>,
    pub regions: Vec<Region>,
    pub model_labels: Vec<Label>,
    pub test_labels: Vec<Label>,
    /// (y in GB, label) lines at 50 % and 25 % of total RAM.
    pub thresholds: Vec<(f64, String)>,
    /// (x, ram_free_gb, level) where memory_pressure > 1.
    pub pressure: Vec<(f64, f64, u8)>,
    pub has_gpu: bool,
    /// (samples read, points shown per series) when decimated.
    pub decimated: Option<(usize, usize)>,
    pub x_max: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TimelineError {
    #[error("no memmon samples in the inputs (give at least one memmon JSONL file)")]
    NoSamples,
}

fn short(s: &str, n: usize) -> String {
    let last = s.rsplit('/').next().unwrap_or(s);
    let last = last.rsplit("::").next().unwrap_or(last);
    if last.chars().count() <= n {
        last.to_string()
    } else {
        format!("{}…", last.chars().take(n - 1).collect::<String>())
    }
}

/// Min/max per bucket over time-ordered points: at most `max` points, peaks kept.
pub fn decimate(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let buckets = max / 2;
    let per = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(max);
    for chunk in points.chunks(per) {
        let (mut lo, mut hi) = (chunk[0], chunk[0]);
        for p in chunk {
            if p.1 < lo.1 {
                lo = *p;
            }
            if p.1 > hi.1 {
                hi = *p;
            }
        }
        if lo.0 <= hi.0 {
            out.push(lo);
            if hi != lo {
                out.push(hi);
            }
        } else {
            out.push(hi);
            out.push(lo);
        }
    }
    out
}

pub fn build(inputs: &Inputs) -> Result<Timeline, TimelineError> {
    let mut samples: Vec<&Value> = inputs.samples.iter().collect();
    if samples.is_empty() {
        return Err(TimelineError::NoSamples);
    }
    samples.sort_by(|a, b| {
        a["ts"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b["ts"].as_f64().unwrap_or(0.0))
    });
    let t0 = samples[0]["ts"].as_f64().unwrap_or(0.0);
    let x = |ts: f64| ((ts - t0) * 1000.0).round() / 1000.0;
    let col = |key: &str| -> Vec<(f64, f64)> {
        samples
            .iter()
            .filter_map(|s| Some((x(s["ts"].as_f64()?), s[key].as_f64()?)))
            .collect()
    };
    let mut t = Timeline {
        t0,
        ..Default::default()
    };
    t.x_max = x(samples.last().and_then(|s| s["ts"].as_f64()).unwrap_or(t0));

    let mut add = |name, row, right_axis, color, fill, dash, points: Vec<(f64, f64)>| {
        if !points.is_empty() {
            t.series.push(Series {
                name,
                row,
                right_axis,
                color,
                fill,
                dash,
                points,
            });
        }
    };
    add(
        "RAM free (GB)",
        1,
        false,
        "#1f77b4",
        false,
        false,
        col("ram_free_gb"),
    );
    let swap = col("swap_used_mb");
    if swap.iter().any(|p| p.1 > 0.0) {
        add("Swap used (MB)", 1, true, "#d62728", false, false, swap);
    }
    add(
        "Process tree RSS (GB)",
        1,
        false,
        "#9467bd",
        false,
        false,
        col("proc_rss_mb")
            .into_iter()
            .map(|(a, b)| (a, b / 1000.0))
            .collect(),
    );
    add(
        "CPU user %",
        2,
        false,
        "#17becf",
        false,
        false,
        col("cpu_user"),
    );
    add(
        "CPU sys %",
        2,
        false,
        "#ff7f0e",
        false,
        false,
        col("cpu_sys"),
    );
    add(
        "CPU idle %",
        2,
        false,
        "#2ca02c",
        true,
        false,
        col("cpu_idle"),
    );
    add("Load 1 min", 2, true, "#8c564b", false, true, col("load_1"));
    let gpu = col("gpu_util");
    let has_gpu = !gpu.is_empty();
    add("GPU %", 3, false, "#ff7f0e", false, false, gpu);
    add(
        "GPU renderer %",
        3,
        false,
        "#2ca02c",
        true,
        false,
        col("gpu_renderer_util"),
    );
    add(
        "GPU tiler %",
        3,
        false,
        "#9467bd",
        false,
        true,
        col("gpu_tiler_util"),
    );
    t.has_gpu = has_gpu;

    let longest = t.series.iter().map(|s| s.points.len()).max().unwrap_or(0);
    if longest > MAX_POINTS {
        for s in &mut t.series {
            s.points = decimate(&s.points, MAX_POINTS);
        }
        let shown = t.series.iter().map(|s| s.points.len()).max().unwrap_or(0);
        t.decimated = Some((longest, shown));
    }

    if let Some(total) = samples
        .iter()
        .rev()
        .find_map(|s| s["ram_total_gb"].as_f64())
    {
        t.thresholds = vec![
            (total * 0.5, format!("50% of RAM ({:.0} GB)", total * 0.5)),
            (total * 0.25, format!("25% of RAM ({:.0} GB)", total * 0.25)),
        ];
    }
    for s in &samples {
        if let (Some(ts), Some(free), Some(level)) = (
            s["ts"].as_f64(),
            s["ram_free_gb"].as_f64(),
            s["memory_pressure"].as_u64(),
        ) && level > 1
        {
            t.pressure.push((x(ts), free, level as u8));
        }
    }

    // Exact model-in-RAM spans from load/unload events.
    let mut events: Vec<&Value> = inputs.events.iter().collect();
    events.sort_by(|a, b| {
        a["ts"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b["ts"].as_f64().unwrap_or(0.0))
    });
    let mut open: Vec<(String, f64)> = Vec::new();
    let mut spans = Vec::new();
    for e in events {
        let (Some(ts), Some(model)) = (e["ts"].as_f64(), e["model"].as_str()) else {
            continue;
        };
        if e["type"] == "load" {
            open.push((model.to_string(), ts));
        } else if let Some(i) = open.iter().position(|(m, _)| m == model) {
            let (m, start) = open.remove(i);
            spans.push((m, start, ts));
        }
    }
    for (m, start) in open {
        // Loaded but never unloaded in these files: in RAM until the last sample.
        spans.push((m, start, t0 + t.x_max));
    }
    let exact_models = !spans.is_empty();
    for (m, a, b) in &spans {
        t.regions.push(Region {
            x0: x(*a),
            x1: x(*b),
            model: Some(m.clone()),
            test: None,
        });
    }

    // Tests: gray when a model was involved (unless events give exact spans), else light blue.
    let mut tests: Vec<(f64, f64, String, Option<String>)> = inputs
        .tests
        .iter()
        .filter_map(|r| {
            let dur = r["duration"].as_f64().unwrap_or(0.0);
            let (a, b) = match (r["test_start_ts"].as_f64(), r["test_end_ts"].as_f64()) {
                (Some(a), Some(b)) => (a, b),
                _ => {
                    let end = parse_rfc3339(r["timestamp"].as_str()?)?;
                    (end - dur, end)
                }
            };
            Some((
                a,
                b,
                r["test"].as_str().unwrap_or("?").to_string(),
                r["model"]["id"].as_str().map(str::to_string),
            ))
        })
        .collect();
    tests.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (a, b, test, model) in &tests {
        // With load/unload events, the exact spans already show when a model was in RAM.
        if !(exact_models && model.is_some()) {
            t.regions.push(Region {
                x0: x(*a),
                x1: x(*b),
                model: model.clone(),
                test: Some(test.clone()),
            });
        }
        t.test_labels.push(Label {
            x: x(*a),
            text: short(test, 28),
            full: test.clone(),
        });
    }

    // Model names at each switch.
    let mut model_regions: Vec<&Region> = t.regions.iter().filter(|r| r.model.is_some()).collect();
    model_regions.sort_by(|a, b| a.x0.total_cmp(&b.x0));
    let mut last: Option<&str> = None;
    let mut labels = Vec::new();
    for r in model_regions {
        let m = r.model.as_deref().unwrap_or("");
        if last != Some(m) {
            labels.push(Label {
                x: r.x0,
                text: short(m, 28),
                full: m.to_string(),
            });
            last = Some(m);
        }
    }
    t.model_labels = labels;
    Ok(t)
}

/// 50 % of RAM green, 25 % orange (the seed's colours).
const THRESHOLD_COLORS: [&str; 2] = ["green", "orange"];
const GRAY: &str = "rgba(200, 200, 200, 0.3)";
const LIGHT_BLUE: &str = "rgba(173, 216, 230, 0.2)";

impl Timeline {
    fn rows(&self) -> u8 {
        if self.has_gpu { 3 } else { 2 }
    }

    /// Vertical domain of a row (row 1 on top) on the paper.
    fn domain(&self, row: u8) -> (f64, f64) {
        let n = self.rows() as f64;
        let (bottom, top) = (0.12, 0.88);
        let h = (top - bottom) / n;
        let gap = 0.03;
        let i = (row - 1) as f64;
        (
            round_to(top - (i + 1.0) * h + gap, 3),
            round_to(top - i * h, 3),
        )
    }

    fn title(&self) -> String {
        let mut title = String::from("Memory / CPU");
        if self.has_gpu {
            title.push_str(" / GPU");
        }
        title.push_str(" timeline");
        if let Some((n, shown)) = self.decimated {
            let _ = write!(
                title,
                " — decimated for display: {n} samples shown as ≤{shown} points per series (min/max per bucket)"
            );
        }
        title
    }

    /// The Plotly figure: `{data, layout}`.
    pub fn to_plotly(&self) -> Value {
        let axis_id = |row: u8, right: bool| -> (String, String) {
            // rows use y, y2, y3 on the left and y4, y5, y6 on the right
            let n = if right { row + 3 } else { row };
            let y = if n == 1 {
                "y".to_string()
            } else {
                format!("y{n}")
            };
            let x = if row == 1 {
                "x".to_string()
            } else {
                format!("x{row}")
            };
            (x, y)
        };
        let mut data = Vec::new();
        for s in &self.series {
            let (xa, ya) = axis_id(s.row, s.right_axis);
            let mut tr = json!({
                "type": "scatter", "mode": "lines", "name": s.name, "xaxis": xa, "yaxis": ya,
                "x": s.points.iter().map(|p| p.0).collect::<Vec<_>>(),
                "y": s.points.iter().map(|p| p.1).collect::<Vec<_>>(),
                "line": {"color": s.color, "width": 1.5},
                "hovertemplate": format!("{}: %{{y}}<extra></extra>", s.name),
            });
            if s.fill {
                tr["fill"] = json!("tozeroy");
            }
            if s.dash {
                tr["line"]["dash"] = json!("dash");
            }
            data.push(tr);
        }
        if !self.pressure.is_empty() {
            let color = |l: u8| if l >= 4 { "#d62728" } else { "#e6c700" };
            data.push(json!({
                "type": "scatter", "mode": "markers", "name": "memory pressure", "xaxis": "x", "yaxis": "y",
                "x": self.pressure.iter().map(|p| p.0).collect::<Vec<_>>(),
                "y": self.pressure.iter().map(|p| p.1).collect::<Vec<_>>(),
                "marker": {"symbol": "diamond", "size": 8, "color": self.pressure.iter().map(|p| color(p.2)).collect::<Vec<_>>()},
                "text": self.pressure.iter().map(|p| if p.2 >= 4 { "critical" } else { "warning" }).collect::<Vec<_>>(),
                "hovertemplate": "pressure: %{text}<extra></extra>",
            }));
        }

        let mut shapes = Vec::new();
        for r in &self.regions {
            shapes.push(json!({
                "type": "rect", "xref": "x", "yref": "paper", "x0": r.x0, "x1": r.x1, "y0": 0.12, "y1": 0.88,
                "fillcolor": if r.model.is_some() { GRAY } else { LIGHT_BLUE }, "line": {"width": 0}, "layer": "below",
            }));
        }
        for l in &self.test_labels {
            shapes.push(json!({"type": "line", "xref": "x", "yref": "paper", "x0": l.x, "x1": l.x, "y0": 0.12, "y1": 0.88,
                "line": {"color": "rgba(120,120,120,0.35)", "width": 1}}));
        }
        for ((y, _), color) in self.thresholds.iter().zip(THRESHOLD_COLORS) {
            shapes.push(json!({"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": y, "y1": y,
                "line": {"color": color, "width": 1, "dash": "dash"}}));
        }
        let mut annotations = Vec::new();
        for l in &self.model_labels {
            annotations.push(json!({"x": l.x, "y": 0.875, "xref": "x", "yref": "paper", "text": l.text, "hovertext": l.full,
                "showarrow": false, "textangle": -90, "xanchor": "left", "yanchor": "top", "font": {"size": 10, "color": "black"}}));
        }
        for l in &self.test_labels {
            annotations.push(json!({"x": l.x, "y": 0.125, "xref": "x", "yref": "paper", "text": l.text, "hovertext": l.full,
                "showarrow": false, "textangle": -90, "xanchor": "left", "yanchor": "bottom", "font": {"size": 9, "color": "gray"}}));
        }
        for (y, text) in &self.thresholds {
            annotations.push(json!({"x": 1, "y": y, "xref": "paper", "yref": "y", "text": text, "showarrow": false,
                "xanchor": "right", "yanchor": "bottom", "font": {"size": 9}}));
        }

        let mut layout = json!({
            "title": {"text": self.title(), "font": {"size": 14}},
            "hovermode": "x unified",
            "showlegend": true,
            "legend": {"orientation": "h", "y": -0.02, "yanchor": "top"},
            "margin": {"t": 110, "b": 140, "l": 60, "r": 60},
            "shapes": shapes,
            "annotations": annotations,
        });
        let titles = [
            (1, "RAM free (GB)", "Swap (MB)"),
            (2, "CPU %", "Load"),
            (3, "GPU %", ""),
        ];
        for (row, left, right) in titles.iter().take(self.rows() as usize) {
            let (lo, hi) = self.domain(*row);
            let (xa, ya) = axis_id(*row, false);
            let xkey = if *row == 1 {
                "xaxis".to_string()
            } else {
                format!("xaxis{row}")
            };
            let last_row = *row == self.rows();
            let mut xaxis = json!({"anchor": ya, "showticklabels": last_row, "title": {"text": if last_row { "elapsed (s)" } else { "" }}});
            if *row != 1 {
                xaxis["matches"] = json!("x");
            }
            if last_row {
                xaxis["rangeslider"] = json!({"visible": true, "thickness": 0.05});
            }
            layout[xkey] = xaxis;
            let ykey = if *row == 1 {
                "yaxis".to_string()
            } else {
                format!("yaxis{row}")
            };
            layout[ykey] = json!({"domain": [lo, hi], "title": {"text": left}, "anchor": xa});
            if !right.is_empty() {
                layout[format!("yaxis{}", row + 3)] = json!({"overlaying": ya, "anchor": xa, "side": "right", "title": {"text": right}, "showgrid": false});
            }
        }
        json!({"data": data, "layout": layout})
    }

    /// A static SVG of the same rows, regions and labels.
    pub fn to_svg(&self) -> String {
        let (w, h) = (1400.0, 300.0 + 250.0 * self.rows() as f64);
        let (left, right) = (70.0, 70.0);
        let plot_w = w - left - right;
        let xmax = self.x_max.max(1e-9);
        let px = |x: f64| left + plot_w * (x / xmax);
        let mut o = String::new();
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#
        );
        let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            o,
            r#"<text x="{}" y="30" font-size="16" text-anchor="middle">{}</text>"#,
            w / 2.0,
            esc(&self.title())
        );
        let row_box = |row: u8| {
            let (lo, hi) = self.domain(row);
            (h * (1.0 - hi), h * (1.0 - lo))
        };
        for r in &self.regions {
            let fill = if r.model.is_some() { GRAY } else { LIGHT_BLUE };
            let (top, _) = row_box(1);
            let (_, bottom) = row_box(self.rows());
            let _ = writeln!(
                o,
                r#"<rect class="region" x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{fill}"><title>{}</title></rect>"#,
                px(r.x0),
                (px(r.x1) - px(r.x0)).max(0.5),
                bottom - top,
                esc(r.model.as_deref().or(r.test.as_deref()).unwrap_or(""))
            );
        }
        for row in 1..=self.rows() {
            let (top, bottom) = row_box(row);
            let series: Vec<&Series> = self.series.iter().filter(|s| s.row == row).collect();
            let _ = writeln!(o, r#"<g class="row" data-row="{row}">"#);
            let _ = writeln!(
                o,
                r##"<rect x="{left}" y="{top:.1}" width="{plot_w}" height="{:.1}" fill="none" stroke="#999"/>"##,
                bottom - top
            );
            for right_axis in [false, true] {
                let on: Vec<&&Series> = series
                    .iter()
                    .filter(|s| s.right_axis == right_axis)
                    .collect();
                let ymax = on
                    .iter()
                    .flat_map(|s| s.points.iter().map(|p| p.1))
                    .fold(0.0f64, f64::max)
                    .max(1e-9)
                    * 1.05;
                let py = |y: f64| bottom - (bottom - top) * (y / ymax);
                if !on.is_empty() {
                    let ax = if right_axis {
                        left + plot_w + 5.0
                    } else {
                        left - 5.0
                    };
                    let anchor = if right_axis { "start" } else { "end" };
                    for frac in [0.0, 0.5, 1.0] {
                        let _ = writeln!(
                            o,
                            r#"<text x="{ax}" y="{:.1}" font-size="10" text-anchor="{anchor}">{:.1}</text>"#,
                            py(ymax * frac) + 3.0,
                            ymax * frac
                        );
                    }
                }
                if row == 1 && !right_axis {
                    for ((y, text), color) in self.thresholds.iter().zip(THRESHOLD_COLORS) {
                        let _ = writeln!(
                            o,
                            r#"<line class="threshold" x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="{color}" stroke-dasharray="4 3"/><text x="{}" y="{:.1}" font-size="9" text-anchor="end">{}</text>"#,
                            left + plot_w,
                            py(*y),
                            py(*y),
                            left + plot_w - 4.0,
                            py(*y) - 3.0,
                            esc(text)
                        );
                    }
                }
                for s in on {
                    let mut d = String::new();
                    for (i, p) in s.points.iter().enumerate() {
                        let _ = write!(
                            d,
                            "{}{:.1},{:.1}",
                            if i == 0 { "M" } else { " L" },
                            px(p.0),
                            py(p.1)
                        );
                    }
                    let dash = if s.dash {
                        r#" stroke-dasharray="5 3""#
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        o,
                        r#"<path class="series" data-name="{}" d="{d}" fill="none" stroke="{}" stroke-width="1.2"{dash}/>"#,
                        esc(s.name),
                        s.color
                    );
                }
            }
            let names: Vec<String> = series
                .iter()
                .map(|s| format!(r#"<tspan fill="{}">■ {}</tspan>"#, s.color, esc(s.name)))
                .collect();
            let _ = writeln!(
                o,
                r#"<text x="{left}" y="{:.1}" font-size="11">{}</text>"#,
                top - 6.0,
                names.join("  ")
            );
            let _ = writeln!(o, "</g>");
        }
        let (top, _) = row_box(1);
        let (_, bottom) = row_box(self.rows());
        for l in &self.model_labels {
            // Inside the top row, reading upwards and ending just below its top edge.
            let (lx, ly) = (px(l.x) + 11.0, top + 5.0);
            let _ = writeln!(
                o,
                r#"<text class="model-label" x="{lx:.1}" y="{ly:.1}" font-size="10" text-anchor="end" transform="rotate(-90 {lx:.1} {ly:.1})"><title>{}</title>{}</text>"#,
                esc(&l.full),
                esc(&l.text)
            );
        }
        for l in &self.test_labels {
            // Inside the bottom row, reading upwards from its bottom edge.
            let (lx, ly) = (px(l.x) + 10.0, bottom - 4.0);
            let _ = writeln!(
                o,
                r##"<line class="test-start" x1="{:.1}" x2="{:.1}" y1="{top:.1}" y2="{bottom:.1}" stroke="#bbb" stroke-width="0.6"/><text class="test-label" x="{lx:.1}" y="{ly:.1}" font-size="9" fill="gray" transform="rotate(-90 {lx:.1} {ly:.1})"><title>{}</title>{}</text>"##,
                px(l.x),
                px(l.x),
                esc(&l.full),
                esc(&l.text)
            );
        }
        let digits = if xmax < 20.0 { 1 } else { 0 };
        for frac in [0.0, 0.25, 0.5, 0.75, 1.0] {
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{:.digits$}s</text>"#,
                px(xmax * frac),
                bottom + 14.0,
                xmax * frac
            );
        }
        o.push_str("</svg>\n");
        o
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One self-contained HTML page: the figure, and plotly.js gzip-compressed and base64-encoded
/// (`plotly_js_gz_b64`), inflated by the browser's DecompressionStream — no network needed.
pub fn to_html(t: &Timeline, plotly_js_gz_b64: &str) -> String {
    let figure = t.to_plotly().to_string().replace("</", "<\\/");
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>html,body{{margin:0;height:100%;font-family:sans-serif}}#plot{{width:100%;height:100vh}}#err{{color:#b00;padding:1em}}</style>
</head><body><div id="plot"></div><div id="err"></div>
<script id="figure" type="application/json">{figure}</script>
<script>
(async function () {{
  const packed = await fetch("data:application/gzip;base64,{plotly_js_gz_b64}");
  const stream = packed.body.pipeThrough(new DecompressionStream("gzip"));
  const source = await new Response(stream).text();
  (0, eval)(source);
  const fig = JSON.parse(document.getElementById("figure").textContent);
  await Plotly.newPlot("plot", fig.data, fig.layout, {{responsive: true, displaylogo: false}});
  document.body.setAttribute("data-rendered", "yes");
}})().catch(e => {{ document.getElementById("err").textContent = "memplot: " + e; console.error(e); }});
</script></body></html>
"#,
        title = esc(&t.title()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimation_keeps_peaks_and_bounds_size() {
        let pts: Vec<(f64, f64)> = (0..10_000)
            .map(|i| (i as f64, if i == 4321 { 99.0 } else { (i % 7) as f64 }))
            .collect();
        let d = decimate(&pts, 1000);
        assert!(d.len() <= 1000, "{}", d.len());
        assert!(d.contains(&(4321.0, 99.0)), "the spike survives");
        assert!(d.windows(2).all(|w| w[0].0 <= w[1].0), "time order kept");
        assert_eq!(decimate(&pts[..10], 1000).len(), 10);
    }

    #[test]
    fn lines_are_recognised_by_content() {
        let mut i = Inputs::default();
        i.add_text(
            "a",
            "{\"ts\": 1.0, \"ram_free_gb\": 3}\n{\"summary\": {}}\n\n{\"schema_version\": \"0.2.2\", \"test\": \"t\"}\n\
             {\"type\": \"load\", \"model\": \"m\", \"ts\": 1.0}\n{\"type\": \"result\"}\nnot json\n{\"x\": 1}\n",
        );
        assert_eq!((i.samples.len(), i.tests.len(), i.events.len()), (1, 1, 1));
        assert_eq!(i.skipped.len(), 2);
        assert!(
            i.skipped[0].starts_with("a:7: not valid JSON"),
            "{:?}",
            i.skipped
        );
    }

    #[test]
    fn no_samples_is_an_error() {
        assert_eq!(
            build(&Inputs::default()).unwrap_err(),
            TimelineError::NoSamples
        );
    }
}
