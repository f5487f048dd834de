//! graft reads `torch.save` files without running them (graft-zoo's `torch_file`): every storage
//! kind, strided and shared views, parameters and nested dicts equal what PyTorch saved, in the zip
//! format and the legacy one; a pickle that would run a command is refused and the command never
//! runs; a view past its storage and a file of neither format are errors naming the file
//! (tests/python/torch_files.py writes the files).

mod common;

use graft::backend::safetensors_io;
use graft::zoo::torch_file;

#[test]
fn torch_save_files_read_exactly_and_hostile_ones_are_refused() {
    let dir = common::temp_dir("torch-files");
    common::run_python("torch_files.py", &[dir.to_str().expect("utf-8")]);
    let (want, _) = safetensors_io::load(&dir.join("good.safetensors")).expect("reference");
    for file in ["good.pth", "legacy.pth"] {
        let got = torch_file::read(&dir.join(file)).expect(file);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "tensor names (the int `epoch` beside them is skipped)"
        );
        for (k, w) in &want {
            let g = &got[k];
            assert_eq!(g.dtype(), w.dtype(), "{k}");
            assert_eq!(g.shape(), w.shape(), "{k}");
            assert_eq!(g.max_abs_diff(w).expect("diff"), 0.0, "{file} {k}");
        }
    }

    let e = torch_file::read(&dir.join("evil.pth")).expect_err("evil");
    let msg = e.to_string();
    assert!(msg.contains("evil.pth") && msg.contains("system"), "{msg}");
    assert!(!dir.join("pwned").exists(), "the payload never ran");

    let e = torch_file::read(&dir.join("overrun.pth")).expect_err("overrun");
    assert!(
        e.to_string().contains("overrun.pth") && e.to_string().contains("storage"),
        "{e}"
    );

    let e = torch_file::read(&dir.join("junk.pth")).expect_err("junk");
    assert!(
        e.to_string().contains("junk.pth") && e.to_string().contains("safetensors"),
        "{e}"
    );
}
