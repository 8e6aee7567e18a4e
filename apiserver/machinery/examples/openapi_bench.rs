//! Times `openapi::build` over every built-in resource (the server builds lazily, off the
//! startup path). `cargo run --release -p ferrokube-machinery --example openapi_bench`

use std::time::Instant;

use ferrokube_machinery::{openapi, resources};

fn main() {
    let all = resources::builtin_resources();
    let mut times = Vec::new();
    let mut sizes = (0, 0, 0);
    for _ in 0..5 {
        let start = Instant::now();
        let docs = openapi::build(all);
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        sizes = (
            docs.v2_json.len(),
            docs.v2_proto.len(),
            docs.v3.values().map(|d| d.json.len()).sum(),
        );
    }
    times.sort_by(f64::total_cmp);
    println!(
        "openapi::build over {} resources: median {:.1} ms (min {:.1}, max {:.1}); v2 json {} B, v2 proto {} B, v3 total {} B",
        all.len(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        sizes.0,
        sizes.1,
        sizes.2
    );
}
