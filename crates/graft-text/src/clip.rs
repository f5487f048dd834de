//! CLIP's tokenizer from the byte-pair merges OpenAI published with CLIP (`data/`), for a CLIP
//! whose repo carries no `tokenizer.json` — open_clip's `SimpleTokenizer` reads the same file.
//!
//! The tokenizer is written as the `tokenizer.json` Hugging Face's `CLIPTokenizer` makes of these
//! merges (NFC, whitespace runs to one space, lower case; CLIP's word pattern; byte-level symbols;
//! BPE with the `</w>` end-of-word mark; `<|startoftext|>` … `<|endoftext|>` around every text)
//! and read by the `tokenizers` crate. It gives open_clip's ids for text that open_clip's
//! cleaning leaves alone: open_clip first runs `ftfy.fix_text` and HTML unescaping, so text with
//! mojibake, curly quotes or HTML entities can tokenise differently.

use std::io::Read;
use std::path::Path;

use graft_core::{Error, Result};
use serde_json::{Value, json};

use crate::Tokenizer;

const MERGES_GZ: &[u8] = include_bytes!("../data/bpe_simple_vocab_16e6.txt.gz");
const ORIGIN: &str = "graft-text/data/bpe_simple_vocab_16e6.txt.gz";
/// Merges CLIP uses: its vocabulary is 49,408 = 256 bytes × 2 + merges + 2 special tokens.
const MERGES: usize = 49152 - 256 - 2;

/// GPT-2's byte → printable-character table, in its order: the printable Latin-1 bytes map to
/// themselves, the other 68 to U+0100 onwards.
fn byte_symbols() -> Vec<char> {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut order: Vec<u32> = (0..256).filter(|&b| printable(b)).collect();
    let mut symbols: Vec<u32> = order.clone();
    let mut next = 256;
    for b in 0..256 {
        if !printable(b) {
            order.push(b);
            symbols.push(next);
            next += 1;
        }
    }
    symbols.into_iter().filter_map(char::from_u32).collect()
}

/// The `tokenizer.json` of CLIP's BPE.
fn tokenizer_json() -> Result<Value> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(MERGES_GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::format(ORIGIN, e.to_string()))?;
    let merges: Vec<(&str, &str)> = text
        .lines()
        .skip(1)
        .take(MERGES)
        .map(|l| l.split_once(' '))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::format(ORIGIN, "a merge line is not two symbols"))?;
    if merges.len() != MERGES {
        return Err(Error::format(
            ORIGIN,
            format!("{} merges, expected {MERGES}", merges.len()),
        ));
    }
    let bytes = byte_symbols();
    let mut vocab: Vec<String> = bytes.iter().map(|c| c.to_string()).collect();
    vocab.extend(bytes.iter().map(|c| format!("{c}</w>")));
    vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
    vocab.push("<|startoftext|>".into());
    vocab.push("<|endoftext|>".into());
    let (sot, eot) = (vocab.len() - 2, vocab.len() - 1);
    let vocab: serde_json::Map<String, Value> = vocab
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, json!(i)))
        .collect();
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(sot, "<|startoftext|>"), special(eot, "<|endoftext|>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"},
            {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}
        ]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split",
             "pattern": {"Regex": "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
             "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
        ]},
        "post_processor": {"type": "RobertaProcessing",
            "sep": ["<|endoftext|>", eot], "cls": ["<|startoftext|>", sot],
            "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<|endoftext|>",
            "continuing_subword_prefix": "", "end_of_word_suffix": "</w>", "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab,
            "merges": merges.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>()}
    }))
}

impl Tokenizer {
    /// CLIP's tokenizer (OpenAI's BPE merges, shipped with graft), truncating at `max_len`
    /// tokens (CLIP's context: 77), padding with 0 as open_clip does.
    pub fn clip(max_len: usize) -> Result<Self> {
        let json = serde_json::to_vec(&tokenizer_json()?)
            .map_err(|e| Error::format(ORIGIN, e.to_string()))?;
        Ok(Self::from_bytes(&json, Path::new(ORIGIN), max_len)?.with_pad_id(0))
    }
}
