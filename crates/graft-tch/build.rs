//! Adds libtorch's directory to the rpath of every binary that links graft-tch, so `cargo test`,
//! `cargo run` and a bare `target/*/graft` run with no LD_LIBRARY_PATH, and turns a missing or wrong
//! libtorch into a message that says what to run.

use std::path::Path;

const WANT_TORCH: &str = "2.13.0";

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_BYPASS_VERSION_CHECK");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!(
            "cargo:warning=torch-sys did not report libtorch's lib directory; binaries may need LD_LIBRARY_PATH"
        );
        return;
    };
    let lib_dir = Path::new(&lib);
    // torch's version.py sits next to lib/ in a Python wheel; a standalone libtorch has build-version.
    let root = lib_dir.parent().unwrap_or(lib_dir);
    let version = std::fs::read_to_string(root.join("version.py"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("__version__ = ")
                    .map(|v| v.trim_matches(['\'', '"']).to_string())
            })
        })
        .or_else(|| {
            std::fs::read_to_string(root.join("build-version"))
                .ok()
                .map(|s| s.trim().to_string())
        });
    if let Some(v) = version
        && v.split('+').next() != Some(WANT_TORCH)
        && std::env::var_os("LIBTORCH_BYPASS_VERSION_CHECK").is_none()
    {
        eprintln!(
            "error: libtorch at {} is version {v}; graft (tch 0.26) needs {WANT_TORCH}.\n\
                 Run `make setup` (or scripts/setup.sh) to install torch=={WANT_TORCH} into the venv,\n\
                 or export LIBTORCH=/path/to/libtorch-{WANT_TORCH} and run `cargo clean -p torch-sys`.",
            root.display()
        );
        std::process::exit(1);
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    // Exported to crates that depend on graft-tch (DEP_GRAFT_TCH_LIBTORCH_LIB) so their own build
    // scripts can add the same rpath if their binaries need it.
    println!("cargo:libtorch_lib={lib}");
}
