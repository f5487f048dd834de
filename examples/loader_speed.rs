//! Loader throughput: an ImageFolder of JPEGs through timm's eval transform (resize shorter side
//! to 256, center crop 224, normalise), batches of 32, decoding and transforms in parallel on
//! rayon with prefetch. Prints images/s for one pass.
//!
//! cargo run --release --example loader_speed -- ROOT
//! (scripts/loader_speed.py makes the folder and runs this beside torchvision's DataLoader)

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use graft::data::transform::eval_transform;
use graft::data::{Dataset, ImageFolder, Loader, LoaderConfig};

fn main() -> Result<()> {
    let root = std::env::args()
        .nth(1)
        .context("usage: loader_speed ROOT")?;
    let ds: Arc<dyn Dataset> = Arc::new(ImageFolder::new(root.as_ref())?);
    // ResNet-18's eval transform: resize to 256, centre crop 224, bilinear, ImageNet mean / std
    let cfg = graft::train::data_config(&graft::zoo::Registry::builtin().get("resnet18")?.cfg);
    let loader = Loader::new(ds.clone(), LoaderConfig::eval(32))?
        .with_transform(Arc::new(eval_transform(&cfg, true)));
    let t0 = Instant::now();
    let mut n = 0;
    for b in loader.epoch(0) {
        n += b?.labels.len();
    }
    let s = t0.elapsed().as_secs_f64();
    println!("graft {n} images in {s:.3} s: {:.1} img/s", n as f64 / s);
    Ok(())
}
