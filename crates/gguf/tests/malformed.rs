//! Damaged and hostile GGUF files: each must give the specific error, with a message that
//! names the culprit, and nothing may panic or allocate what the file cannot back.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use smolt_gguf::{Error, GgmlType, Gguf, GgufWriter, Value, ValueType};

/// A small valid image. Keys `tiny.k1`/`tiny.k2` and tensors `t.a`/`t.b` have equal-length
/// names so that a one-byte patch can make them collide.
fn base_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("tiny".into()));
    w.set("tiny.k1", Value::U32(7));
    w.set("tiny.k2", Value::U32(8));
    w.set("tiny.flag", Value::Bool(true));
    w.set(
        "tiny.tokens",
        Value::Array(
            ValueType::String,
            ["alpha", "beta", "gamma"]
                .iter()
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
    );
    w.add_f32("t.a", &[8, 2], &[1.0; 16]).unwrap();
    w.add_tensor("t.b", &[32, 2], GgmlType::Q8_0, vec![7; 68])
        .unwrap();
    w
}

fn base() -> Vec<u8> {
    base_writer().to_bytes()
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} not in image", String::from_utf8_lossy(needle)))
}

/// Byte positions of a metadata entry: its key's length prefix, its type id, its value.
struct KvPos {
    len: usize,
    ty: usize,
    value: usize,
}

fn kv_pos(img: &[u8], key: &str) -> KvPos {
    let k = find(img, key.as_bytes());
    KvPos {
        len: k - 8,
        ty: k + key.len(),
        value: k + key.len() + 4,
    }
}

/// Byte positions of a tensor record's fields.
struct TensorPos {
    name: usize,
    n_dims: usize,
    dims: usize,
    ty: usize,
    offset: usize,
}

fn tensor_pos(img: &[u8], name: &str, n_dims: usize) -> TensorPos {
    let p = find(img, name.as_bytes());
    let dims = p + name.len() + 4;
    TensorPos {
        name: p,
        n_dims: p + name.len(),
        dims,
        ty: dims + 8 * n_dims,
        offset: dims + 8 * n_dims + 4,
    }
}

fn put_u32(img: &mut [u8], at: usize, v: u32) {
    img[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(img: &mut [u8], at: usize, v: u64) {
    img[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u64(img: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(img[at..at + 8].try_into().unwrap())
}

/// Parse, expect an error, and check that its message mentions every needle.
fn fails(img: Vec<u8>, needles: &[&str]) -> Error {
    let e = match Gguf::from_bytes(img) {
        Ok(_) => panic!("a damaged image parsed"),
        Err(e) => e,
    };
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "message {msg:?} should mention {n:?}");
    }
    e
}

#[test]
fn base_image_is_valid() {
    let g = Gguf::from_bytes(base()).unwrap();
    assert_eq!(g.metadata().len(), 5);
    assert_eq!(g.tensors().len(), 2);
}

#[test]
fn empty_file() {
    let e = fails(Vec::new(), &["magic", "truncated"]);
    assert!(matches!(e, Error::Truncated { available: 0, .. }), "{e:?}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.gguf");
    std::fs::write(&path, b"").unwrap();
    let e = Gguf::open(&path).err().unwrap();
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
}

#[test]
fn missing_file_names_the_path() {
    let e = Gguf::open("/nonexistent/dir/model.gguf").err().unwrap();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("/nonexistent/dir/model.gguf"), "{e}");
}

#[test]
fn bad_magic() {
    let mut img = base();
    img[..4].copy_from_slice(b"GGML");
    let e = fails(img, &["not a GGUF file", "47 47 55 46"]);
    assert!(
        matches!(e, Error::BadMagic { found } if &found == b"GGML"),
        "{e:?}"
    );
    // Shorter than the magic itself: truncated, not a bad magic.
    let e = fails(b"GG".to_vec(), &["magic"]);
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
}

#[test]
fn version_1_and_99() {
    for v in [0u32, 1, 4, 99] {
        let mut img = base();
        put_u32(&mut img, 4, v);
        let e = fails(img, &[&format!("version {v}")]);
        assert!(matches!(e, Error::UnsupportedVersion(x) if x == v), "{e:?}");
    }
}

#[test]
fn big_endian_version_gets_a_hint() {
    let mut img = base();
    img[4..8].copy_from_slice(&3u32.to_be_bytes());
    let e = fails(img, &["big-endian"]);
    assert!(matches!(e, Error::UnsupportedVersion(_)), "{e:?}");
}

#[test]
fn truncated_in_header() {
    for (cut, what) in [(6, "version"), (12, "tensor count"), (20, "metadata count")] {
        let e = fails(base()[..cut].to_vec(), &[what, "truncated"]);
        assert!(matches!(e, Error::Truncated { .. }), "{cut}: {e:?}");
    }
}

#[test]
fn truncated_inside_a_key() {
    let img = base();
    let p = kv_pos(&img, "tiny.k2");
    // Index 2: general.architecture is 0, tiny.k1 is 1.
    let e = fails(img[..p.len + 8 + 3].to_vec(), &["key of metadata entry 2"]);
    assert!(
        matches!(
            e,
            Error::Truncated {
                needed: 7,
                available: 3,
                ..
            }
        ),
        "{e:?}"
    );
    let e = fails(img[..p.len + 4].to_vec(), &["key of metadata entry 2"]);
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
}

#[test]
fn truncated_inside_a_value() {
    let img = base();
    let p = kv_pos(&img, "tiny.k2");
    let e = fails(img[..p.ty + 2].to_vec(), &["type of metadata `tiny.k2`"]);
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    let e = fails(
        img[..p.value + 3].to_vec(),
        &["value of metadata `tiny.k2`"],
    );
    assert!(matches!(e, Error::Truncated { needed: 4, .. }), "{e:?}");
    // Early in the file the header's counts could not fit either; claim one entry and no
    // tensors so that the truncation itself is what gets reported.
    let mut img = img;
    put_u64(&mut img, 8, 0);
    put_u64(&mut img, 16, 1);
    let p = kv_pos(&img, "general.architecture");
    let e = fails(img[..p.value + 10].to_vec(), &["general.architecture"]);
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
}

#[test]
fn truncated_inside_an_array() {
    let img = base();
    let p = kv_pos(&img, "tiny.tokens");
    // Element type (4), count (8), then "alpha" (13 bytes) and "beta" (12); cut inside "gamma".
    let items = p.value + 12;
    let cut = items + 13 + 12 + 8 + 2;
    let e = fails(img[..cut].to_vec(), &["tiny.tokens"]);
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    // Inside the element type or the count.
    for cut in [p.value + 2, p.value + 6] {
        let e = fails(img[..cut].to_vec(), &["tiny.tokens"]);
        assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    }
}

#[test]
fn truncated_inside_tensor_infos() {
    let img = base();
    let a = tensor_pos(&img, "t.a", 2);
    let e = fails(
        img[..a.dims + 12].to_vec(),
        &["dimension 1 of tensor `t.a`"],
    );
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    let e = fails(img[..a.ty + 1].to_vec(), &["type of tensor `t.a`"]);
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    let e = fails(img[..a.offset + 7].to_vec(), &["offset of tensor `t.a`"]);
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    let b = tensor_pos(&img, "t.b", 2);
    let e = fails(img[..b.name + 1].to_vec(), &["name of tensor 1"]);
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    let e = fails(
        img[..b.n_dims + 2].to_vec(),
        &["dimension count of tensor `t.b`"],
    );
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
}

#[test]
fn truncated_inside_tensor_data() {
    let img = base();
    let len = img.len();
    let e = fails(img[..len - 1].to_vec(), &["`t.b`", "truncated download"]);
    assert!(
        matches!(&e, Error::TensorOutOfBounds { tensor, file_len, .. }
            if tensor == "t.b" && *file_len == len as u64 - 1),
        "{e:?}"
    );
    // Through the mmap path too.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.gguf");
    std::fs::write(&path, &img[..len - 40]).unwrap();
    let e = Gguf::open(&path).err().unwrap();
    assert!(matches!(e, Error::TensorOutOfBounds { .. }), "{e:?}");
    assert!(e.to_string().contains("t.b"), "{e}");
}

#[test]
fn absurd_counts_do_not_allocate() {
    for (at, what) in [(8, "tensor count"), (16, "metadata count")] {
        for n in [u64::MAX, u64::MAX / 13 + 1, 1 << 40] {
            let mut img = base();
            put_u64(&mut img, at, n);
            let e = fails(img, &[what, &n.to_string()]);
            assert!(
                matches!(e, Error::AbsurdCount { count, .. } if count == n),
                "{e:?}"
            );
        }
    }
}

#[test]
fn absurd_array_length() {
    let mut img = base();
    let p = kv_pos(&img, "tiny.tokens");
    put_u64(&mut img, p.value + 4, u64::MAX);
    let e = fails(img, &["length of array `tiny.tokens`"]);
    assert!(
        matches!(
            e,
            Error::AbsurdCount {
                count: u64::MAX,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn absurd_string_lengths() {
    let mut img = base();
    let p = kv_pos(&img, "general.architecture");
    put_u64(&mut img, p.value, u64::MAX);
    let e = fails(img, &["general.architecture"]);
    assert!(
        matches!(
            e,
            Error::Truncated {
                needed: u64::MAX,
                ..
            }
        ),
        "{e:?}"
    );

    let mut img = base();
    let p = kv_pos(&img, "tiny.k1");
    put_u64(&mut img, p.len, u64::MAX - 3);
    let e = fails(img, &["key of metadata entry 1"]);
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");

    let mut img = base();
    let p = tensor_pos(&img, "t.b", 2);
    put_u64(&mut img, p.name - 8, 1 << 62);
    let e = fails(img, &["name of tensor 1"]);
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
}

#[test]
fn unknown_value_type() {
    let mut img = base();
    let p = kv_pos(&img, "tiny.k2");
    put_u32(&mut img, p.ty, 13);
    let e = fails(img, &["tiny.k2", "13"]);
    assert!(
        matches!(&e, Error::UnknownValueType { key, id: 13 } if key == "tiny.k2"),
        "{e:?}"
    );
}

#[test]
fn unknown_array_element_type() {
    let mut img = base();
    let p = kv_pos(&img, "tiny.tokens");
    put_u32(&mut img, p.value, 0xdead);
    let e = fails(img, &["tiny.tokens", &0xdead.to_string()]);
    assert!(matches!(e, Error::UnknownValueType { .. }), "{e:?}");
}

#[test]
fn bool_byte_2() {
    let mut img = base();
    let p = kv_pos(&img, "tiny.flag");
    img[p.value] = 2;
    let e = fails(img, &["tiny.flag", "boolean byte 2"]);
    assert!(matches!(e, Error::BadBool { byte: 2, .. }), "{e:?}");
}

#[test]
fn non_utf8_key_value_and_tensor_name() {
    let mut img = base();
    let p = kv_pos(&img, "tiny.k2");
    img[p.len + 8 + 5] = 0xff;
    let e = fails(img, &["key of metadata entry 2", "tiny."]);
    assert!(matches!(e, Error::BadUtf8 { .. }), "{e:?}");

    let mut img = base();
    let p = kv_pos(&img, "tiny.tokens");
    let beta = p.value + 12 + 13 + 8;
    img[beta] = 0xc3; // a lead byte with no continuation
    let e = fails(img, &["tiny.tokens"]);
    assert!(matches!(e, Error::BadUtf8 { .. }), "{e:?}");

    let mut img = base();
    let p = tensor_pos(&img, "t.b", 2);
    img[p.name + 2] = 0x80;
    let e = fails(img, &["name of tensor 1", "t."]);
    assert!(matches!(e, Error::BadUtf8 { .. }), "{e:?}");
}

#[test]
fn duplicate_key() {
    let mut img = base();
    let p = kv_pos(&img, "tiny.k2");
    img[p.len + 8 + 6] = b'1';
    let e = fails(img, &["`tiny.k1`", "twice"]);
    assert!(
        matches!(&e, Error::DuplicateKey(k) if k == "tiny.k1"),
        "{e:?}"
    );
}

#[test]
fn duplicate_tensor_name() {
    let mut img = base();
    let p = tensor_pos(&img, "t.b", 2);
    img[p.name + 2] = b'a';
    let e = fails(img, &["`t.a`", "twice"]);
    assert!(
        matches!(&e, Error::DuplicateTensor(t) if t == "t.a"),
        "{e:?}"
    );
}

#[test]
fn zero_or_too_many_dimensions() {
    for n in [0u32, 5, u32::MAX] {
        let mut img = base();
        let p = tensor_pos(&img, "t.b", 2);
        put_u32(&mut img, p.n_dims, n);
        let e = fails(img, &["`t.b`", &format!("{n} dimensions")]);
        assert!(
            matches!(&e, Error::BadDims { tensor, .. } if tensor == "t.b"),
            "{e:?}"
        );
    }
}

#[test]
fn a_zero_dimension() {
    let mut img = base();
    let p = tensor_pos(&img, "t.a", 2);
    put_u64(&mut img, p.dims + 8, 0);
    let e = fails(img, &["`t.a`", "zero dimension"]);
    assert!(matches!(e, Error::BadDims { .. }), "{e:?}");
}

#[test]
fn dims_whose_product_overflows() {
    let mut img = base();
    let p = tensor_pos(&img, "t.a", 2);
    put_u64(&mut img, p.dims, 1 << 32);
    put_u64(&mut img, p.dims + 8, 1 << 33);
    let e = fails(img, &["`t.a`", "overflows"]);
    assert!(matches!(e, Error::BadDims { .. }), "{e:?}");

    // The element count fits but the byte count (4 bytes per F32) does not.
    let mut img = base();
    put_u64(&mut img, p.dims, 1 << 31);
    put_u64(&mut img, p.dims + 8, 1 << 31);
    let e = fails(img, &["`t.a`", "byte size"]);
    assert!(matches!(e, Error::BadDims { .. }), "{e:?}");
}

#[test]
fn row_length_not_a_multiple_of_the_block_size() {
    let mut img = base();
    let p = tensor_pos(&img, "t.b", 2);
    put_u64(&mut img, p.dims, 33);
    let e = fails(img, &["`t.b`", "row length 33", "Q8_0", "32"]);
    assert!(matches!(e, Error::BadDims { .. }), "{e:?}");
}

#[test]
fn unknown_ggml_type() {
    for id in [4u32, 5, 31, 1000] {
        let mut img = base();
        let p = tensor_pos(&img, "t.b", 2);
        put_u32(&mut img, p.ty, id);
        let e = fails(img, &["`t.b`", &format!("type id {id}")]);
        assert!(
            matches!(&e, Error::UnknownTensorType { tensor, id: i } if tensor == "t.b" && *i == id),
            "{e:?}"
        );
    }
}

#[test]
fn offset_not_aligned() {
    let mut img = base();
    let p = tensor_pos(&img, "t.b", 2);
    let off = get_u64(&img, p.offset);
    put_u64(&mut img, p.offset, off + 4);
    let e = fails(img, &["`t.b`", &format!("{}", off + 4), "alignment 32"]);
    assert!(
        matches!(e, Error::MisalignedTensor { alignment: 32, .. }),
        "{e:?}"
    );
}

#[test]
fn tensor_past_end_of_file() {
    for off in [1u64 << 40, u64::MAX - 31] {
        let mut img = base();
        let p = tensor_pos(&img, "t.a", 2);
        put_u64(&mut img, p.offset, off);
        let e = fails(img, &["`t.a`", "only"]);
        assert!(
            matches!(&e, Error::TensorOutOfBounds { tensor, .. } if tensor == "t.a"),
            "{e:?}"
        );
    }
}

#[test]
fn overlapping_tensors() {
    let mut img = base();
    let p = tensor_pos(&img, "t.b", 2);
    put_u64(&mut img, p.offset, 32); // t.a occupies 0..64
    let e = fails(img, &["`t.a`", "`t.b`", "overlap"]);
    assert!(matches!(e, Error::OverlappingTensors { .. }), "{e:?}");
}

#[test]
fn bad_general_alignment() {
    for (v, shown) in [
        (Value::U32(0), "0"),
        (Value::U32(3), "3"),
        (Value::U64(1 << 21), "2097152"),
        (Value::I32(-32), "-32"),
        (Value::String("32".into()), "\"32\""),
    ] {
        let mut w = base_writer();
        w.set("general.alignment", v);
        let e = fails(w.to_bytes(), &["general.alignment", shown]);
        assert!(matches!(e, Error::BadAlignment(_)), "{e:?}");
    }
    // A good non-default alignment is honoured end to end.
    let mut w = base_writer();
    w.set("general.alignment", Value::U32(64));
    let g = Gguf::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(g.alignment, 64);
    assert_eq!(g.data_offset() % 64, 0);
    assert_eq!(g.tensor_info("t.b").unwrap().offset, 64);
}

fn nested(depth: usize) -> Value {
    let mut v = Value::Array(ValueType::U8, vec![Value::U8(1)]);
    for _ in 1..depth {
        v = Value::Array(ValueType::Array, vec![v]);
    }
    v
}

#[test]
fn nested_arrays_too_deep() {
    let mut w = base_writer();
    w.set("tiny.nest", nested(4));
    let g = Gguf::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(g.get("tiny.nest"), Some(&nested(4)));

    let mut w = base_writer();
    w.set("tiny.nest", nested(5));
    let e = fails(w.to_bytes(), &["tiny.nest", "too deeply"]);
    assert!(matches!(&e, Error::TooDeep(k) if k == "tiny.nest"), "{e:?}");

    // Hand-assembled: 10,000 levels would overflow the stack without the depth limit.
    let mut img = Vec::new();
    img.extend_from_slice(b"GGUF");
    img.extend_from_slice(&3u32.to_le_bytes());
    img.extend_from_slice(&0u64.to_le_bytes());
    img.extend_from_slice(&1u64.to_le_bytes());
    img.extend_from_slice(&4u64.to_le_bytes());
    img.extend_from_slice(b"deep");
    img.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..10_000 {
        img.extend_from_slice(&9u32.to_le_bytes());
        img.extend_from_slice(&1u64.to_le_bytes());
    }
    let e = fails(img, &["`deep`"]);
    assert!(matches!(e, Error::TooDeep(_)), "{e:?}");
}

#[test]
fn accessor_errors_name_the_key_or_tensor() {
    let g = Gguf::from_bytes(base()).unwrap();
    let e = g.get_u64("tiny.missing").unwrap_err();
    assert!(matches!(e, Error::MissingKey(_)) && e.to_string().contains("tiny.missing"));
    let e = g.get_str("tiny.k1").unwrap_err();
    assert!(matches!(e, Error::WrongType { .. }), "{e:?}");
    assert!(
        e.to_string().contains("tiny.k1") && e.to_string().contains("U32"),
        "{e}"
    );
    let e = g.get_str_array("tiny.k1").unwrap_err();
    assert!(e.to_string().contains("tiny.k1"), "{e}");
    let e = g.tensor("t.zzz").unwrap_err();
    assert!(matches!(e, Error::MissingTensor(_)) && e.to_string().contains("t.zzz"));
}

/// Everything a caller might do with a file that opened, so that a file passing the
/// header checks cannot make a later accessor panic.
fn exercise(g: &Gguf) {
    for t in g.tensors() {
        let data = g.tensor_data(t);
        assert_eq!(data.len() as u64, t.n_bytes);
        let _ = (t.n_elements(), t.row_len(), t.n_rows());
    }
    for (k, _) in g.metadata() {
        let _ = (
            g.get_u64(k),
            g.get_str(k),
            g.get_f32_array(k),
            g.get_i64_array(k),
        );
    }
    let _ = g.summary();
}

/// An image using every value type, so that random damage reaches every parsing branch.
fn rich_image() -> Vec<u8> {
    let mut w = base_writer();
    w.set("v.u8", Value::U8(1));
    w.set("v.i8", Value::I8(-1));
    w.set("v.u16", Value::U16(2));
    w.set("v.i16", Value::I16(-2));
    w.set("v.i32", Value::I32(-3));
    w.set("v.f32", Value::F32(0.5));
    w.set("v.u64", Value::U64(4));
    w.set("v.i64", Value::I64(-4));
    w.set("v.f64", Value::F64(0.25));
    w.set(
        "v.scores",
        Value::Array(ValueType::F32, vec![Value::F32(1.0), Value::F32(2.0)]),
    );
    w.set("v.nest", nested(3));
    w.add_tensor("t.k", &[256], GgmlType::Q4K, vec![3; 144])
        .unwrap();
    w.to_bytes()
}

#[test]
fn never_panics_on_truncation_or_random_damage() {
    let img = rich_image();
    exercise(&Gguf::from_bytes(img.clone()).unwrap());
    let mut cases = 0;
    let mut opened = 0;
    let mut check = |bytes: Vec<u8>, label: &str| {
        let r = catch_unwind(AssertUnwindSafe(|| match Gguf::from_bytes(bytes) {
            Ok(g) => {
                exercise(&g);
                true
            }
            Err(e) => {
                // Messages must render too (they format user data).
                assert!(!e.to_string().is_empty());
                false
            }
        }));
        match r {
            Ok(ok) => opened += ok as usize,
            Err(_) => panic!("parser panicked on {label}"),
        }
        cases += 1;
    };
    for len in 0..img.len() {
        check(img[..len].to_vec(), &format!("truncation to {len} bytes"));
    }
    let mut rng = StdRng::seed_from_u64(0x5eed_6775);
    for case in 0..3000 {
        let mut bytes = img.clone();
        let flips = rng.gen_range(1..=4);
        for _ in 0..flips {
            let at = rng.gen_range(0..bytes.len());
            // Mostly random bytes, sometimes the values that hit edge cases in counts.
            bytes[at] = match rng.gen_range(0..4) {
                0 => 0xff,
                1 => 0,
                _ => rng.gen(),
            };
        }
        if rng.gen_bool(0.2) {
            let cut = rng.gen_range(0..bytes.len());
            bytes.truncate(cut);
        }
        check(bytes, &format!("random case {case}"));
    }
    assert!(cases > img.len() + 2900);
    // Flips inside tensor data still open; make sure that path was exercised.
    assert!(opened > 100, "only {opened} damaged images opened");
}
