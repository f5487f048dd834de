//! criterion micro-benchmarks: `cargo bench --bench bench_main` (a group: `-- ops`, `-- zoo`,
//! `-- train_step`, `-- loader`). Backend ops and each zoo family's forward on both backends, a
//! fine-tuning train step, loader throughput. Side-by-side numbers against PyTorch come from
//! `benches/compare` (`make bench-compare`), not from here.

use criterion::criterion_main;

mod benchmarks;

criterion_main!(
    benchmarks::ops::benches,
    benchmarks::zoo::benches,
    benchmarks::train::benches,
    benchmarks::loader::benches,
);
