use smolt_gguf::{GgmlType, Gguf, GgufWriter, Value, ValueType};

#[test]
fn writer_output_reads_back_identically() {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("gemma3".into()))
        .set("a.u8", Value::U8(7))
        .set("a.i8", Value::I8(-7))
        .set("a.u16", Value::U16(65535))
        .set("a.i16", Value::I16(-300))
        .set("a.u32", Value::U32(1 << 31))
        .set("a.i32", Value::I32(-1))
        .set("a.f32", Value::F32(1.5))
        .set("a.bool", Value::Bool(true))
        .set("a.u64", Value::U64(u64::MAX))
        .set("a.i64", Value::I64(i64::MIN))
        .set("a.f64", Value::F64(-2.25))
        .set(
            "a.strings",
            Value::Array(
                ValueType::String,
                vec![Value::String("▁hi".into()), Value::String("".into())],
            ),
        )
        .set("a.empty", Value::Array(ValueType::F32, vec![]));
    let vals: Vec<f32> = (0..64).map(|i| i as f32 * 0.5).collect();
    w.add_f32("t.f32", &[8, 8], &vals).unwrap();
    let q8 = vec![0u8; GgmlType::Q8_0.type_size() * 2];
    w.add_tensor("t.q8", &[32, 2], GgmlType::Q8_0, q8.clone())
        .unwrap();

    let g = Gguf::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.metadata().len(), 14);
    assert_eq!(g.get_str("general.architecture").unwrap(), "gemma3");
    assert_eq!(g.get("a.i8"), Some(&Value::I8(-7)));
    assert_eq!(g.get("a.u64"), Some(&Value::U64(u64::MAX)));
    assert_eq!(g.get("a.i64"), Some(&Value::I64(i64::MIN)));
    assert_eq!(g.get_str_array("a.strings").unwrap(), vec!["▁hi", ""]);
    assert_eq!(
        g.get("a.empty"),
        Some(&Value::Array(ValueType::F32, vec![]))
    );
    let (info, data) = g.tensor("t.f32").unwrap();
    assert_eq!(info.dims, vec![8, 8]);
    assert_eq!(info.row_len(), 8);
    assert_eq!(info.n_rows(), 8);
    let back: Vec<f32> = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(back, vals);
    let (info, data) = g.tensor("t.q8").unwrap();
    assert_eq!(info.ty, GgmlType::Q8_0);
    assert_eq!(data, &q8[..]);
    for t in g.tensors() {
        assert_eq!(
            (g.data_offset() + t.offset) % 32,
            0,
            "{} is aligned",
            t.name
        );
    }
    assert!(matches!(
        g.tensor("nope"),
        Err(smolt_gguf::Error::MissingTensor(_))
    ));
}

#[test]
fn writer_refuses_inconsistent_tensors() {
    let mut w = GgufWriter::new();
    assert!(w.add_f32("x", &[4], &[1.0; 3]).is_err());
    assert!(w
        .add_tensor("y", &[31], GgmlType::Q8_0, vec![0; 34])
        .is_err());
    w.add_f32("z", &[1], &[1.0]).unwrap();
    assert!(w.add_f32("z", &[1], &[1.0]).is_err());
}

#[test]
fn file_round_trip_through_mmap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let mut w = GgufWriter::new();
    w.set("general.alignment", Value::U32(64));
    w.add_f32("a", &[3], &[1.0, 2.0, 3.0]).unwrap();
    w.add_f32("b", &[5], &[4.0; 5]).unwrap();
    w.write(&path).unwrap();
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.alignment, 64);
    assert_eq!(g.tensor("b").unwrap().0.offset % 64, 0);
    assert_eq!(g.path(), Some(path.as_path()));
}

/// Releasing a mapped tensor's pages (after a caller copied it into another layout) leaves
/// the bytes read through the mapping unchanged, the borrowed slice included; tensors that
/// share the released pages read the same as well.
#[test]
fn released_tensor_reads_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let big: Vec<f32> = (0..50_000).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut w = GgufWriter::new();
    w.add_f32("small", &[7], &[1.0, -2.0, 3.5, 4.0, 5.0, 6.0, 7.0])
        .unwrap();
    w.add_f32("big", &[50_000], &big).unwrap();
    w.add_f32("after", &[3], &[9.0, 8.0, 7.0]).unwrap();
    w.write(&path).unwrap();
    let g = Gguf::open(&path).unwrap();
    let copy = |name: &str| g.tensor(name).unwrap().1.to_vec();
    let before: Vec<Vec<u8>> = ["small", "big", "after"].map(copy).to_vec();
    let (info, held) = g.tensor("big").unwrap();
    assert_eq!(held, &before[1][..]);
    // Parts of it, and ranges past its end (clamped to the tensor), then the whole.
    g.release_tensor_bytes(info, 4096, 70_000);
    g.release_tensor_bytes(info, 150_000, 1 << 30);
    g.release_tensor_bytes(info, 1 << 30, 10);
    assert_eq!(held, &before[1][..]);
    g.release_tensor(info);
    assert_eq!(
        held,
        &before[1][..],
        "the borrowed slice reads the file's bytes"
    );
    let after: Vec<Vec<u8>> = ["small", "big", "after"].map(copy).to_vec();
    assert_eq!(after, before);
    // A file read into memory has nothing to release.
    let owned = Gguf::from_bytes(std::fs::read(&path).unwrap()).unwrap();
    owned.release_tensor(owned.tensor_info("big").unwrap());
    assert_eq!(owned.tensor("big").unwrap().1, &before[1][..]);
}
