//! rpath to libtorch for the facade's tests, examples and benches (graft-tch's own
//! `rustc-link-arg` reaches only graft-tch's targets), and libtorch's directory handed on to the
//! build scripts of crates that depend on graft (`links = "graft"`: DEP_GRAFT_LIBTORCH_LIB), where
//! `graft_build::link_libtorch()` adds the same rpath to their binaries.
fn main() {
    if let Some(lib) = graft_build::link_libtorch() {
        println!("cargo:libtorch_lib={}", lib.display());
    }
}
