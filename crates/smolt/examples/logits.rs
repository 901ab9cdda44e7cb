//! Next-token logits of a model (and adapter) for given token ids, as raw little-endian f32:
//! the reference side of the interop checks (`interop/llamacpp_check.py`), which compare them
//! with llama.cpp's on the same ids.
//!
//! ```text
//! cargo run --release --example logits -- MODEL.gguf IDS.json OUT.f32 [--adapter PATH] [--last N] [--f32]
//! ```
//! IDS.json is a JSON array of token ids; OUT.f32 gets the logits of the last N positions
//! (default 8), `N × vocab` values, row by row.

use anyhow::{bail, Context};
use smolt::model::{Logits, Model, Precision};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut pos, mut adapter, mut last, mut precision) = (vec![], None, 8usize, Precision::Fast);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--adapter" => adapter = Some(it.next().context("--adapter PATH")?),
            "--last" => last = it.next().context("--last N")?.parse()?,
            "--f32" => precision = Precision::F32,
            _ => pos.push(a),
        }
    }
    let [model, ids, out] = &pos[..] else {
        bail!("usage: logits MODEL.gguf IDS.json OUT.f32 [--adapter PATH] [--last N] [--f32]");
    };
    let mut m = Model::load(model, precision).with_context(|| format!("loading {model}"))?;
    if let Some(a) = adapter {
        smolt::lora::attach_adapter(&mut m, std::path::Path::new(&a))?;
    }
    let ids: Vec<u32> = serde_json::from_str(&std::fs::read_to_string(ids)?)?;
    let logits = m.forward(&ids, &mut m.new_cache(), Logits::All)?;
    let v = m.spec.vocab_size;
    let keep = last.min(ids.len());
    let tail = &logits[(ids.len() - keep) * v..];
    let bytes: Vec<u8> = tail.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(out, bytes)?;
    Ok(())
}
