pub mod loader;
pub mod ops;
pub mod train;
pub mod zoo;

use std::time::Duration;

use criterion::Criterion;
use graft::TensorData;

/// Short runs: these are regression probes on a 2-core box, not the published numbers.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

/// Deterministic values in [-1, 1].
pub fn values(shape: &[usize], seed: u64) -> TensorData {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| ((i as u64 * 2654435761 + seed * 97) % 10007) as f32 / 5003.5 - 1.0)
        .collect();
    TensorData::f32(shape, v).expect("shape and values agree")
}
