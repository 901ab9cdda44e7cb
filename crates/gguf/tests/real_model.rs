//! The flagship model, read for real: the reader must agree with what llama.cpp wrote, and
//! the writer must be able to reproduce it (exports and merged models depend on that).

use std::collections::BTreeMap;

use smolt_gguf::{GgmlType, Gguf, GgufWriter, Value, ValueType};

fn model_path() -> std::path::PathBuf {
    smolt_hub::model_for_tests()
        .unwrap_or_else(|e| panic!("the real-model tests need Gemma 3 270M: {e}"))
}

fn open_model() -> Gguf {
    let path = model_path();
    Gguf::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn tensors_and_types() {
    let g = open_model();
    assert_eq!(g.version, 3);
    assert_eq!(g.alignment, 32);
    assert_eq!(g.file_len(), 253_113_024);
    assert_eq!(g.tensors().len(), 236);
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for t in g.tensors() {
        *by_type.entry(t.ty.name()).or_default() += 1;
    }
    let expect: BTreeMap<&str, usize> = [
        ("F32", 109),
        ("Q5_0", 81),
        ("Q4_K", 27),
        ("Q8_0", 10),
        ("Q6_K", 9),
    ]
    .into_iter()
    .collect();
    assert_eq!(by_type, expect);

    let (emb, data) = g.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.dims, [640, 262_144]);
    assert_eq!(emb.ty, GgmlType::Q8_0);
    assert_eq!(data.len(), 262_144 * 640 / 32 * 34);
    for l in 0..18 {
        for name in [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
            "attn_norm",
            "attn_q_norm",
            "attn_k_norm",
            "post_attention_norm",
            "ffn_norm",
            "post_ffw_norm",
        ] {
            let full = format!("blk.{l}.{name}.weight");
            assert!(g.tensor_info(&full).is_some(), "{full} missing");
        }
    }
    // 18 layers × 13 tensors + token_embd + output_norm.
    assert_eq!(18 * 13 + 2, 236);
    let q = g.tensor_info("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.dims, [640, 1024]);
    // Tensor data ends exactly at the end of the file (no trailing garbage).
    let end = g
        .tensors()
        .iter()
        .map(|t| g.data_offset() + t.offset + t.n_bytes)
        .max()
        .unwrap();
    assert_eq!(end, g.file_len());
    assert!((268_000_000..268_200_000).contains(&g.n_parameters()));
}

#[test]
fn metadata() {
    let g = open_model();
    let keys: Vec<&str> = g.metadata().iter().map(|(k, _)| k.as_str()).collect();
    let expect = [
        "general.architecture",
        "general.type",
        "general.name",
        "general.basename",
        "general.size_label",
        "general.license",
        "general.tags",
        "gemma3.context_length",
        "gemma3.embedding_length",
        "gemma3.block_count",
        "gemma3.feed_forward_length",
        "gemma3.attention.head_count",
        "gemma3.attention.layer_norm_rms_epsilon",
        "gemma3.attention.key_length",
        "gemma3.attention.value_length",
        "gemma3.rope.freq_base",
        "gemma3.attention.sliding_window",
        "gemma3.attention.head_count_kv",
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.scores",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.add_sep_token",
        "tokenizer.ggml.add_eos_token",
        "tokenizer.ggml.add_space_prefix",
        "general.quantization_version",
        "general.file_type",
    ];
    assert_eq!(keys, expect);

    assert_eq!(g.get_str("general.architecture").unwrap(), "gemma3");
    assert_eq!(g.get_u64("gemma3.context_length").unwrap(), 32768);
    assert_eq!(g.get_u64("gemma3.embedding_length").unwrap(), 640);
    assert_eq!(g.get_u64("gemma3.block_count").unwrap(), 18);
    assert_eq!(g.get_u64("gemma3.feed_forward_length").unwrap(), 2048);
    assert_eq!(g.get_u64("gemma3.attention.head_count").unwrap(), 4);
    assert_eq!(g.get_u64("gemma3.attention.head_count_kv").unwrap(), 1);
    assert_eq!(g.get_u64("gemma3.attention.key_length").unwrap(), 256);
    assert_eq!(g.get_u64("gemma3.attention.value_length").unwrap(), 256);
    assert_eq!(g.get_u64("gemma3.attention.sliding_window").unwrap(), 512);
    assert_eq!(g.get_f64("gemma3.rope.freq_base").unwrap(), 1e6);
    let eps = g
        .get_f64("gemma3.attention.layer_norm_rms_epsilon")
        .unwrap();
    assert!((eps - 1e-6).abs() < 1e-12, "{eps}");
    assert_eq!(g.get_str("tokenizer.ggml.model").unwrap(), "llama");
    assert_eq!(g.get_u64("tokenizer.ggml.bos_token_id").unwrap(), 2);
    assert_eq!(g.get_u64("tokenizer.ggml.eos_token_id").unwrap(), 1);
    assert_eq!(g.get_u64("tokenizer.ggml.unknown_token_id").unwrap(), 3);
    assert_eq!(g.get_u64("tokenizer.ggml.padding_token_id").unwrap(), 0);
    assert_eq!(
        g.get("tokenizer.ggml.add_bos_token"),
        Some(&Value::Bool(true))
    );
    assert_eq!(g.get_u64("general.file_type").unwrap(), 15);

    let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 262_144);
    assert_eq!(&tokens[..5], ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]);
    assert_eq!(
        g.get_f32_array("tokenizer.ggml.scores").unwrap().len(),
        262_144
    );
    let types = g.get_i64_array("tokenizer.ggml.token_type").unwrap();
    assert_eq!(types.len(), 262_144);
    assert!(matches!(
        g.get("tokenizer.ggml.token_type"),
        Some(Value::Array(ValueType::I32, _))
    ));

    let s = g.summary();
    assert!(s.contains("[String; 262144]"), "{s}");
    assert!(s.contains("token_embd.weight"), "{s}");
    assert!(s.len() < 64 * 1024, "summary should elide long arrays");
}

#[test]
fn writer_reproduces_the_file() {
    let g = open_model();
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        w.set(k.clone(), v.clone());
    }
    for t in g.tensors() {
        w.add_tensor(t.name.clone(), &t.dims, t.ty, g.tensor_data(t).to_vec())
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("copy.gguf");
    w.write(&out).unwrap();
    drop(w);

    let c = Gguf::open(&out).unwrap();
    assert_eq!(c.metadata(), g.metadata());
    assert_eq!(c.tensors(), g.tensors());
    assert_eq!(c.data_offset(), g.data_offset());
    for t in g.tensors() {
        assert!(
            c.tensor_data(t) == g.tensor_data(t),
            "tensor {} differs",
            t.name
        );
    }
    // Same layout rules as llama.cpp's writer: the header (metadata and tensor records) is
    // byte-for-byte the original, and with equal tensor data and length so is the file, up
    // to alignment padding.
    assert_eq!(c.file_len(), g.file_len());
    let head = |p: &std::path::Path| {
        use std::io::Read;
        let mut buf = vec![0u8; g.data_offset() as usize];
        std::fs::File::open(p)
            .unwrap()
            .read_exact(&mut buf)
            .unwrap();
        buf
    };
    assert!(
        head(&model_path()) == head(&out),
        "the rewritten header differs from the original"
    );
}

#[test]
fn a_truncated_download_is_named_as_such() {
    let path = model_path();
    let g = open_model();
    let len = g.file_len() / 2;
    drop(g);
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("half.gguf");
    {
        use std::io::{Read, Write};
        let mut src = std::fs::File::open(&path).unwrap().take(len);
        let mut dst = std::fs::File::create(&cut).unwrap();
        std::io::copy(&mut src, &mut dst).unwrap();
        dst.flush().unwrap();
    }
    let e = Gguf::open(&cut).err().expect("half a model must not open");
    assert!(
        matches!(e, smolt_gguf::Error::TensorOutOfBounds { .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("truncated download") && msg.contains(".weight`"),
        "{msg}"
    );
}
