//! Prints a few synthetic receipts: `cargo run -p smolt-data --example receipts -- [n] [seed] [year] [noise]`.
fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let get = |i: usize, d: &str| a.get(i).cloned().unwrap_or_else(|| d.to_string());
    let cfg = smolt_data::SynthConfig {
        n: get(0, "3").parse().unwrap(),
        seed: get(1, "7").parse().unwrap(),
        year: get(2, "2020").parse().unwrap(),
        noise_rate: get(3, "0").parse().unwrap(),
        ..Default::default()
    };
    for r in smolt_data::receipts(&cfg) {
        println!(
            "{}\n{}\n",
            r.input,
            serde_json::to_string(&r.output).unwrap()
        );
    }
}
