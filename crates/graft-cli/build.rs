//! rpath to libtorch when the `tch` feature links it (graft-tch exports the directory as
//! DEP_GRAFT_TCH_LIBTORCH_LIB; its own `rustc-link-arg` does not reach this binary).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_GRAFT_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_GRAFT_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
