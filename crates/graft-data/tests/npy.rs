//! `.npy` array datasets: images `[N, C, H, W]` or `[N, H, W]` float32 with int labels; bad files
//! and mismatched counts are errors naming the file.

use graft_data::{ArrayDataset, Dataset};

#[test]
fn npy_pairs_load_and_mismatches_are_named() {
    let d = std::env::temp_dir().join(format!("graft-data-npy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp");
    let x = ndarray::Array4::<f32>::from_shape_fn((5, 2, 3, 4), |(n, c, h, w)| {
        (n * 100 + c * 10 + h * 4 + w) as f32
    });
    let y = ndarray::Array1::<i64>::from(vec![0, 2, 1, 2, 0]);
    ndarray_npy::write_npy(d.join("x.npy"), &x).expect("x");
    ndarray_npy::write_npy(d.join("y.npy"), &y).expect("y");
    let ds = ArrayDataset::from_npy(&d.join("x.npy"), &d.join("y.npy")).expect("load");
    assert_eq!(ds.len(), 5);
    assert_eq!(ds.classes(), ["0", "1", "2"]);
    let s = ds
        .get(3)
        .expect("sample")
        .into_image("test")
        .expect("image");
    assert_eq!(s.shape, [2, 3, 4]);
    assert_eq!(s.label, 2);
    assert_eq!(s.data[0], 300.0);
    // [N, H, W] gets one channel; int32 labels work
    let x3 = ndarray::Array3::<f32>::zeros((5, 3, 4));
    ndarray_npy::write_npy(d.join("x3.npy"), &x3).expect("x3");
    ndarray_npy::write_npy(
        d.join("y32.npy"),
        &ndarray::Array1::<i32>::from(vec![1, 0, 1, 0, 1]),
    )
    .expect("y32");
    let ds = ArrayDataset::from_npy(&d.join("x3.npy"), &d.join("y32.npy")).expect("load");
    assert_eq!(ds.sample_shape(), [1, 3, 4]);
    // too few labels, a negative label, a non-npy file
    ndarray_npy::write_npy(
        d.join("short.npy"),
        &ndarray::Array1::<i64>::from(vec![0, 1]),
    )
    .expect("short");
    let err = ArrayDataset::from_npy(&d.join("x.npy"), &d.join("short.npy")).expect_err("count");
    assert!(err.to_string().contains("short.npy"), "{err}");
    ndarray_npy::write_npy(
        d.join("neg.npy"),
        &ndarray::Array1::<i64>::from(vec![0, -1, 0, 0, 0]),
    )
    .expect("neg");
    let err = ArrayDataset::from_npy(&d.join("x.npy"), &d.join("neg.npy")).expect_err("negative");
    assert!(err.to_string().contains("neg.npy"), "{err}");
    std::fs::write(d.join("junk.npy"), b"nope").expect("junk");
    let err = ArrayDataset::from_npy(&d.join("junk.npy"), &d.join("y.npy")).expect_err("junk");
    assert!(err.to_string().contains("junk.npy"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

/// Issue 17.2 / 17.4: a header's shape is checked against the file's length before anything is
/// allocated; a label past graft's class bound and a non-finite image value are errors naming
/// the file.
#[test]
fn npy_sizes_labels_and_values_are_checked() {
    let d = std::env::temp_dir().join(format!("graft-data-npy-checks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp");
    let x = ndarray::Array4::<f32>::zeros((2, 1, 2, 2));
    ndarray_npy::write_npy(d.join("x.npy"), &x).expect("x");
    // the same header claiming a huge first dimension
    let mut bytes = std::fs::read(d.join("x.npy")).expect("read");
    let at = bytes
        .windows(12)
        .position(|w| w == b"(2, 1, 2, 2)")
        .expect("shape in header");
    // 12 more characters in the shape, 12 fewer spaces of padding: the header keeps its length
    bytes.splice(at..at + 12, b"(9999999999999, 1, 2, 2)".iter().copied());
    let nl = bytes.iter().position(|&b| b == b'\n').expect("header end");
    bytes.drain(nl - 12..nl);
    std::fs::write(d.join("huge.npy"), &bytes).expect("write");
    let err = graft_data::npy::read_f32(&d.join("huge.npy")).expect_err("huge");
    assert!(
        err.to_string().contains("huge.npy")
            && err.to_string().contains("[9999999999999, 1, 2, 2]"),
        "{err}"
    );
    let big = ndarray::Array1::<i64>::from(vec![0, 1 << 21]);
    ndarray_npy::write_npy(d.join("big.npy"), &big).expect("big");
    let err = ArrayDataset::from_npy(&d.join("x.npy"), &d.join("big.npy")).expect_err("label");
    assert!(
        err.to_string().contains("big.npy") && err.to_string().contains("2097152"),
        "{err}"
    );
    let mut nan = ndarray::Array4::<f32>::zeros((2, 1, 2, 2));
    nan[[1, 0, 1, 1]] = f32::NAN;
    ndarray_npy::write_npy(d.join("nan.npy"), &nan).expect("nan");
    ndarray_npy::write_npy(d.join("y.npy"), &ndarray::Array1::<i64>::from(vec![0, 1])).expect("y");
    let err = ArrayDataset::from_npy(&d.join("nan.npy"), &d.join("y.npy")).expect_err("nan");
    assert!(
        err.to_string().contains("nan.npy") && err.to_string().contains("value 7"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
