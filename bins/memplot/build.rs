//! Takes plotly.min.js from the plotly crate's offline bundle (without MathJax, which memplot
//! never uses), gzips and base64-encodes it into OUT_DIR for `include_str!`.
use base64::Engine;
use std::io::Write;

fn main() {
    let bundle = plotly::Plot::offline_js_sources();
    let open = "<script type=\"text/javascript\">";
    let start = bundle.find(open).expect("plotly bundle has a script tag") + open.len();
    let end = start
        + bundle[start..]
            .find("</script>")
            .expect("plotly script tag is closed");
    let js = &bundle[start..end];
    assert!(
        js.contains("plotly.js v"),
        "the first script of the bundle is plotly.js"
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(js.as_bytes()).expect("gzip in memory");
    let bytes = gz.finish().expect("gzip in memory");
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("plotly.min.js.gz.b64"), b64).expect("write OUT_DIR");
}
