//! What the CLI guards on the way out: an output never replaces a file the command reads, and a
//! closed stdout (`graft models | head`) ends the process quietly, as Unix tools do.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// True when `a` and `b` are the same existing file (the same inode: through a symlink, a hard
/// link, `./x` against `x`).
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    }
}

/// The files a command reads, to keep its output off them.
#[derive(Debug, Default)]
pub struct Reads(Vec<(String, PathBuf)>);

impl Reads {
    /// A file read as `what` (`--input`, `--weights`).
    pub fn file(mut self, what: &str, p: &Path) -> Self {
        self.0.push((what.to_string(), p.to_path_buf()));
        self
    }
    /// Every file directly in the directory `dir` (a model directory: weights, config, tokenizer).
    pub fn dir(mut self, what: &str, dir: &Path) -> Self {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.path().is_file() {
                    self.0.push((what.to_string(), e.path()));
                }
            }
        }
        self
    }
    /// Refuses an `--output` that is one of the files read: writing it would replace an input
    /// (weights, a model's files, the input array) with the command's result.
    pub fn check_output(&self, output: &Path) -> Result<()> {
        if output.is_dir() {
            bail!(
                "--output {}: is a directory; give a file name",
                output.display()
            );
        }
        for (what, p) in &self.0 {
            if same_file(output, p) {
                bail!(
                    "--output {} is the file read as {what} ({}): give another output path",
                    output.display(),
                    p.display()
                );
            }
        }
        Ok(())
    }
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error: the process
/// ends quietly with status 0, as `ls | head` does.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: stdout: {e}");
        std::process::exit(1);
    }
}

/// `print!` through [`print`]: a closed stdout ends the process quietly instead of a panic.
macro_rules! out {
    ($($t:tt)*) => { $crate::guard::print(&format!($($t)*)) };
}

/// `println!` through [`print`].
macro_rules! outln {
    () => { $crate::guard::print("\n") };
    ($($t:tt)*) => { $crate::guard::print(&format!("{}\n", format_args!($($t)*))) };
}
