//! rpath to libtorch for the facade's tests, examples and benches: graft-tch's own
//! `rustc-link-arg` reaches only graft-tch's targets, so every package with binaries that link
//! graft-tch repeats this (graft-tch exports the directory as DEP_GRAFT_TCH_LIBTORCH_LIB).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_GRAFT_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_GRAFT_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
