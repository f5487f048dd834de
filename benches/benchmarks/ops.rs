//! Backend ops on graft-tch and graft-ndarray: the kernels the zoo spends its time in.

use criterion::{BenchmarkId, Criterion, criterion_group};
use graft::backend::{BatchNormMode, BatchNormTensors, Conv2dOpts};
use graft::{Backend, NdArray, Tch};

use super::{config, values};

fn ops_on<B: Backend>(c: &mut Criterion, b: &B) {
    let up = |shape: &[usize], seed| b.from_data(&values(shape, seed)).expect("upload");
    let mut g = c.benchmark_group("ops");
    let a = up(&[256, 512], 1);
    let w = up(&[512, 256], 2);
    g.bench_function(BenchmarkId::new("matmul 256x512x256", b.name()), |bch| {
        bch.iter(|| b.matmul(&a, &w).expect("matmul"))
    });
    let x = up(&[8, 64, 32, 32], 3);
    let k3 = up(&[64, 64, 3, 3], 4);
    let o = Conv2dOpts::new().padding(1);
    g.bench_function(
        BenchmarkId::new("conv2d 3x3 64->64 8x32x32", b.name()),
        |bch| bch.iter(|| b.conv2d(&x, &k3, None, o).expect("conv")),
    );
    let dw = up(&[64, 1, 3, 3], 5);
    let odw = Conv2dOpts::new().padding(1).groups(64);
    g.bench_function(
        BenchmarkId::new("conv2d depthwise 3x3 64 8x32x32", b.name()),
        |bch| bch.iter(|| b.conv2d(&x, &dw, None, odw).expect("conv dw")),
    );
    let (gamma, beta, mean) = (up(&[64], 6), up(&[64], 7), up(&[64], 8));
    let var = b
        .add_scalar(&b.mul(&mean, &mean).expect("sq"), 1.0)
        .expect("var");
    g.bench_function(
        BenchmarkId::new("batch_norm eval 8x64x32x32", b.name()),
        |bch| {
            bch.iter(|| {
                let bn = BatchNormTensors {
                    weight: Some(&gamma),
                    bias: Some(&beta),
                    running_mean: &mean,
                    running_var: &var,
                    num_batches_tracked: None,
                    eps: 1e-5,
                };
                b.batch_norm(&x, bn, BatchNormMode::Eval).expect("bn")
            })
        },
    );
    g.bench_function(BenchmarkId::new("relu 8x64x32x32", b.name()), |bch| {
        bch.iter(|| b.relu(&x).expect("relu"))
    });
    let t = up(&[8, 197, 192], 9);
    let (lw, lb) = (up(&[192], 10), up(&[192], 11));
    g.bench_function(BenchmarkId::new("layer_norm 8x197x192", b.name()), |bch| {
        bch.iter(|| b.layer_norm(&t, 1, Some(&lw), Some(&lb), 1e-6).expect("ln"))
    });
    g.bench_function(BenchmarkId::new("softmax 8x197x192", b.name()), |bch| {
        bch.iter(|| b.softmax(&t, 2).expect("softmax"))
    });
    let (q, k, v) = (
        up(&[8, 3, 197, 64], 12),
        up(&[8, 3, 197, 64], 13),
        up(&[8, 3, 197, 64], 14),
    );
    g.bench_function(BenchmarkId::new("attention 8x3x197x64", b.name()), |bch| {
        bch.iter(|| {
            b.scaled_dot_product_attention(&q, &k, &v, None, None)
                .expect("sdpa")
        })
    });
    g.finish();
}

fn ops(c: &mut Criterion) {
    ops_on(c, &Tch::cpu());
    ops_on(c, &NdArray);
}

criterion_group! {
    name = benches;
    config = config();
    targets = ops
}
