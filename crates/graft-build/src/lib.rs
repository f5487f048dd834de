//! graft-build: the one line a crate that depends on graft puts in its `build.rs`, so that its
//! binaries, tests and examples find libtorch at run time with no `LD_LIBRARY_PATH`.
//!
//! ```toml
//! [dependencies]
//! graft-tl = "0.1"  # the `graft` library
//! [build-dependencies]
//! graft-build = "0.1"
//! ```
//!
//! ```text
//! // build.rs
//! fn main() {
//!     graft_build::link_libtorch();
//! }
//! ```
//!
//! Why it is needed: graft-tch's build script adds libtorch's directory to the rpath with
//! `cargo:rustc-link-arg`, and Cargo applies that only to graft-tch's own targets, never to a
//! dependent's binaries. graft-tch and the `graft` facade therefore export the directory as build
//! metadata (`links` keys `graft_tch` and `graft`), which Cargo hands to the build script of each
//! crate that depends on them directly (`DEP_GRAFT_TCH_LIBTORCH_LIB`, `DEP_GRAFT_LIBTORCH_LIB`);
//! this helper reads it and adds the same rpath to the dependent's targets.
//!
//! Owns: that rpath line. Must not know: anything else of graft (it has no dependencies, so a
//! build script pays nothing to use it).

#![deny(unsafe_code)]

use std::path::PathBuf;

/// The variables Cargo sets for a crate depending directly on the `graft` facade or on
/// graft-tch, in the order they are looked at.
pub const METADATA_VARS: [&str; 2] = ["DEP_GRAFT_LIBTORCH_LIB", "DEP_GRAFT_TCH_LIBTORCH_LIB"];

/// libtorch's library directory as graft's build reported it, if graft was built with libtorch
/// (`None` for `graft-tl = { default-features = false }`, the pure-Rust stack, and for a build
/// script of a crate that does not depend on graft directly).
pub fn libtorch_lib_dir() -> Option<PathBuf> {
    METADATA_VARS
        .iter()
        .find_map(std::env::var_os)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

/// Call from `build.rs`: adds libtorch's directory to the rpath of this crate's binaries, tests,
/// examples and benches. Returns the directory, or `None` (and does nothing) when graft was built
/// without libtorch.
pub fn link_libtorch() -> Option<PathBuf> {
    for v in METADATA_VARS {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let dir = libtorch_lib_dir()?;
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    Some(dir)
}
