//! `.npy` files read safely: the header's shape and dtype are a claim checked against the file's
//! length before `ndarray-npy` allocates for them (a 200-byte file declaring a terabyte shape is
//! an error naming the file, not an aborted process). The format is NumPy's
//! (`numpy/lib/format.py`, NEP 1): magic `\x93NUMPY`, version, a little-endian header length,
//! then a Python dict literal with `descr`, `fortran_order` and `shape`.

use std::io::Read;
use std::path::Path;

use graft_core::{Error, Result};

/// What a `.npy` header declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// NumPy's dtype string (`<f4`, `|u1`, `<i8`).
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Where the data starts.
    pub data_offset: u64,
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::format(path, format!("not a valid .npy file: {}", msg.into()))
}

/// The quoted value after `'key':` in a header dict.
fn field<'a>(dict: &'a str, key: &str) -> Option<&'a str> {
    let at = dict.find(&format!("'{key}'"))?;
    let rest = dict[at + key.len() + 2..].trim_start();
    Some(rest.strip_prefix(':')?.trim_start())
}

/// Reads and checks the header of `path`: the declared shape times the item size must be the
/// bytes the file holds after the header.
pub fn header(path: &Path) -> Result<NpyHeader> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut pre = [0u8; 10];
    f.read_exact(&mut pre)
        .map_err(|_| bad(path, "shorter than the 10-byte preamble"))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(bad(path, "no \\x93NUMPY magic"));
    }
    let (len, start) = match pre[6] {
        1 => (u64::from(u16::from_le_bytes([pre[8], pre[9]])), 10u64),
        2 | 3 => {
            let mut more = [0u8; 2];
            f.read_exact(&mut more)
                .map_err(|_| bad(path, "truncated preamble"))?;
            (
                u64::from(u32::from_le_bytes([pre[8], pre[9], more[0], more[1]])),
                12,
            )
        }
        v => return Err(bad(path, format!("format version {v}"))),
    };
    if start + len > file_len {
        return Err(bad(
            path,
            format!("the header claims {len} bytes, the file has {file_len}"),
        ));
    }
    let mut text = vec![0u8; len as usize];
    f.read_exact(&mut text).map_err(|e| Error::io(path, e))?;
    let dict = String::from_utf8_lossy(&text);
    let descr = field(&dict, "descr")
        .and_then(|v| v.strip_prefix('\''))
        .and_then(|v| v.split('\'').next())
        .ok_or_else(|| bad(path, "no 'descr' in the header"))?
        .to_string();
    let fortran_order = field(&dict, "fortran_order")
        .ok_or_else(|| bad(path, "no 'fortran_order' in the header"))?
        .starts_with("True");
    let shape_text = field(&dict, "shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or_else(|| bad(path, "no 'shape' tuple in the header"))?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| bad(path, format!("shape ({shape_text}): {s:?} is not a size")))
        })
        .collect::<Result<Vec<usize>>>()?;
    let item: u128 = descr
        .get(2..)
        .and_then(|n| n.parse().ok())
        .filter(|&n: &u128| n > 0)
        .ok_or_else(|| bad(path, format!("dtype {descr:?}")))?;
    let data_offset = start + len;
    let want = graft_core::limits::numel(&shape).and_then(|n| n.checked_mul(item));
    let have = u128::from(file_len - data_offset);
    if want != Some(have) {
        return Err(Error::format(
            path,
            format!(
                "the header declares shape {shape:?} of {descr} ({}), the file holds {have} bytes of data",
                want.map_or("an overflowing size".to_string(), |w| format!("{w} bytes"))
            ),
        ));
    }
    Ok(NpyHeader {
        descr,
        fortran_order,
        shape,
        data_offset,
    })
}

/// A float32 array of any rank from a `.npy` file, its header checked first.
pub fn read_f32(path: &Path) -> Result<ndarray::ArrayD<f32>> {
    header(path)?;
    ndarray_npy::read_npy(path)
        .map_err(|e| Error::format(path, format!("expected a float32 .npy array: {e}")))
}
