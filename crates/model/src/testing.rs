//! Tiny random models for tests in this and higher crates (decode, train): a real GGUF image,
//! built with `GgufWriter`, small enough to run in milliseconds yet with every feature the real
//! model exercises (sliding and global layers, GQA, q/k norms, several quant formats).

use smolt_gguf::{GgmlType, Gguf, GgufWriter, Value, ValueType};

/// Shapes of a tiny Gemma 3. The defaults: d = 64, 2 query heads × 32 sharing 1 KV head,
/// FFN 256 (so `ffn_down` rows can be a K-quant), 7 layers (layer 5 global, the rest sliding),
/// vocab 300 (`<eos>` = 1, `<bos>` = 2, `<end_of_turn>` = 106), window 8, context 128.
#[derive(Clone, Debug, PartialEq)]
pub struct TinySpec {
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub d_ff: usize,
    pub n_layers: usize,
    pub vocab: usize,
    pub window: usize,
    pub context: usize,
    pub rms_eps: f32,
    pub rope_base_global: f32,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            d_model: 64,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 32,
            d_ff: 256,
            n_layers: 7,
            vocab: 300,
            window: 8,
            context: 128,
            rms_eps: 1e-6,
            rope_base_global: 1e6,
        }
    }
}

/// One tensor before encoding: GGUF dims (`[row length, rows]`), target type, f32 values.
#[derive(Clone, Debug)]
pub struct TinyTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    pub values: Vec<f32>,
}

/// The storage type a tiny model gives each projection: a mix, so every kind of dot kernel the
/// real file uses runs (Q8_0 embedding; Q5_0, Q8_0, Q4_0, Q4_K and F32 projections).
fn proj_type(name: &str) -> GgmlType {
    match name {
        "attn_q" | "ffn_gate" => GgmlType::Q5_0,
        "attn_k" | "ffn_up" => GgmlType::Q8_0,
        "attn_output" => GgmlType::Q4_0,
        "ffn_down" => GgmlType::Q4K,
        _ => GgmlType::F32,
    }
}

/// splitmix64 then Box–Muller: deterministic across platforms and free of dependencies.
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn sample(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let (u1, u2) = (self.uniform(), self.uniform());
                std * ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect()
    }
}

/// Random weights named as in a Gemma 3 GGUF. Projections ~ N(0, 1/in) so activations stay
/// O(1); norm weights ~ 1 + N(0, 0.1²) (the file stores Gemma's `1 + w`).
pub fn tiny_tensors(s: &TinySpec, seed: u64) -> Vec<TinyTensor> {
    let mut rng = Normal(seed);
    let mut ts = Vec::new();
    let mut add = |name: String, dims: Vec<usize>, ty: GgmlType, values: Vec<f32>| {
        ts.push(TinyTensor {
            name,
            dims: dims.iter().map(|&d| d as u64).collect(),
            ty,
            values,
        })
    };
    let (d, hd) = (s.d_model, s.head_dim);
    add(
        "token_embd.weight".into(),
        vec![d, s.vocab],
        GgmlType::Q8_0,
        rng.sample(d * s.vocab, 0.5),
    );
    let norm = |rng: &mut Normal, n: usize| rng.sample(n, 0.1).iter().map(|v| 1.0 + v).collect();
    add(
        "output_norm.weight".into(),
        vec![d],
        GgmlType::F32,
        norm(&mut rng, d),
    );
    for il in 0..s.n_layers {
        let n = |x: &str| format!("blk.{il}.{x}.weight");
        for (x, len) in [
            ("attn_norm", d),
            ("attn_q_norm", hd),
            ("attn_k_norm", hd),
            ("post_attention_norm", d),
            ("ffn_norm", d),
            ("post_ffw_norm", d),
        ] {
            add(n(x), vec![len], GgmlType::F32, norm(&mut rng, len));
        }
        for (x, inp, out) in [
            ("attn_q", d, s.n_heads * hd),
            ("attn_k", d, s.n_kv_heads * hd),
            ("attn_v", d, s.n_kv_heads * hd),
            ("attn_output", s.n_heads * hd, d),
            ("ffn_gate", d, s.d_ff),
            ("ffn_up", d, s.d_ff),
            ("ffn_down", s.d_ff, d),
        ] {
            let std = 1.0 / (inp as f32).sqrt();
            add(
                n(x),
                vec![inp, out],
                proj_type(x),
                rng.sample(inp * out, std),
            );
        }
    }
    ts
}

/// A writer holding `tensors` (encoded to their types) and the metadata of `s`, with
/// `general.architecture = arch` (pass something else than "gemma3" to test refusals).
pub fn tiny_writer(s: &TinySpec, tensors: &[TinyTensor], arch: &str) -> GgufWriter {
    let mut w = GgufWriter::new();
    let u = |v: usize| Value::U32(v as u32);
    w.set("general.architecture", Value::String(arch.into()));
    w.set("gemma3.embedding_length", u(s.d_model));
    w.set("gemma3.block_count", u(s.n_layers));
    w.set("gemma3.feed_forward_length", u(s.d_ff));
    w.set("gemma3.attention.head_count", u(s.n_heads));
    w.set("gemma3.attention.head_count_kv", u(s.n_kv_heads));
    w.set("gemma3.attention.key_length", u(s.head_dim));
    w.set("gemma3.attention.value_length", u(s.head_dim));
    w.set(
        "gemma3.attention.layer_norm_rms_epsilon",
        Value::F32(s.rms_eps),
    );
    w.set("gemma3.rope.freq_base", Value::F32(s.rope_base_global));
    w.set("gemma3.attention.sliding_window", u(s.window));
    w.set("gemma3.context_length", u(s.context));
    let tokens = (0..s.vocab)
        .map(|i| {
            Value::String(match i {
                0 => "<pad>".into(),
                1 => "<eos>".into(),
                2 => "<bos>".into(),
                106 => "<end_of_turn>".into(),
                _ => format!("t{i}"),
            })
        })
        .collect();
    w.set(
        "tokenizer.ggml.tokens",
        Value::Array(ValueType::String, tokens),
    );
    w.set("tokenizer.ggml.eos_token_id", u(1));
    w.set("tokenizer.ggml.bos_token_id", u(2));
    for t in tensors {
        let row = t.dims[0] as usize;
        let rb =
            smolt_quant::row_bytes(t.ty, row).expect("tiny tensor rows fit their type's blocks");
        let mut data = vec![0u8; rb * (t.values.len() / row)];
        for (src, dst) in t.values.chunks(row).zip(data.chunks_mut(rb)) {
            smolt_quant::quantize_row(t.ty, src, dst).expect("encode tiny tensor");
        }
        w.add_tensor(t.name.clone(), &t.dims, t.ty, data)
            .expect("add tiny tensor");
    }
    w
}

/// The default tiny Gemma 3 with weights from `seed`, as an in-memory GGUF.
pub fn tiny_gemma3(seed: u64) -> Gguf {
    let s = TinySpec::default();
    Gguf::from_bytes(tiny_writer(&s, &tiny_tensors(&s, seed), "gemma3").to_bytes())
        .expect("tiny GGUF parses")
}

/// The vocabulary size of [`tiny_text_model`].
pub const TEXT_VOCAB: usize = 464;

/// The pieces of [`tiny_text_model`]'s vocabulary, by id: `<pad> <eos> <bos> <unk>`,
/// `<start_of_turn>` (4), `▁` and the 94 printable ASCII characters (5..=99), six bigrams,
/// `<end_of_turn>` (106, where the other tiny models have it), the 256 byte tokens
/// `<0x00>`..`<0xFF>` (107..=362), then `▁` + letter and more bigrams up to [`TEXT_VOCAB`].
/// With byte fallback any text encodes.
pub fn text_vocab() -> Vec<String> {
    let mut v: Vec<String> = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "<start_of_turn>",
        "\u{2581}",
    ]
    .map(String::from)
    .to_vec();
    v.extend((0x21u8..=0x7E).map(|b| (b as char).to_string()));
    let first = ["\u{2581}a", "\u{2581}t", "th", "he", "in", "er"];
    v.extend(first.map(String::from));
    v.push("<end_of_turn>".into());
    v.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    v.extend(
        ('b'..='z')
            .filter(|&c| c != 't')
            .map(|c| format!("\u{2581}{c}")),
    );
    let common = "etaoinshr";
    for a in common.chars() {
        for b in common.chars() {
            let bigram = format!("{a}{b}");
            if !first.contains(&bigram.as_str()) {
                v.push(bigram);
            }
        }
    }
    assert_eq!(v.len(), TEXT_VOCAB);
    v
}

/// A tiny Gemma 3 (the default shapes, vocabulary [`TEXT_VOCAB`], context 1024: text costs
/// about a token per character) that also carries a working
/// SentencePiece tokenizer ([`text_vocab`]; no chat template, so chat prompts use the built-in
/// Gemma format): for tests that go from text to text, such as the C API's. Random weights
/// from `seed`, so the text it writes is gibberish.
pub fn tiny_text_model(seed: u64) -> GgufWriter {
    let s = TinySpec {
        vocab: TEXT_VOCAB,
        context: 1024,
        ..TinySpec::default()
    };
    let mut w = tiny_writer(&s, &tiny_tensors(&s, seed), "gemma3");
    let pieces = text_vocab();
    // SentencePiece merges the adjacent pair whose piece scores highest: longer pieces first.
    let scores = pieces
        .iter()
        .map(|p| Value::F32(-10.0 + p.chars().count() as f32))
        .collect();
    let types = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Value::I32(match i {
                3 => 2,                         // unknown
                0..=4 | 106 => 3,               // control
                _ if p.starts_with("<0x") => 6, // byte
                _ => 1,                         // normal
            })
        })
        .collect();
    w.set("tokenizer.ggml.model", Value::String("llama".into()));
    w.set(
        "tokenizer.ggml.tokens",
        Value::Array(
            ValueType::String,
            pieces.into_iter().map(Value::String).collect(),
        ),
    );
    w.set(
        "tokenizer.ggml.scores",
        Value::Array(ValueType::F32, scores),
    );
    w.set(
        "tokenizer.ggml.token_type",
        Value::Array(ValueType::I32, types),
    );
    w.set("tokenizer.ggml.unknown_token_id", Value::U32(3));
    w.set("tokenizer.ggml.add_space_prefix", Value::Bool(false));
    w
}
