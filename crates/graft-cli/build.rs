//! rpath to libtorch when the `tch` feature links it (graft-tch's own `rustc-link-arg` does not
//! reach this binary; graft-build reads the directory graft-tch exports).
fn main() {
    graft_build::link_libtorch();
}
