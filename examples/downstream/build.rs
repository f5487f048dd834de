fn main() {
    graft_build::link_libtorch();
}
