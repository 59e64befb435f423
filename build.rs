//! Writes the ordinary-token vocabularies of tiktoken's `o200k_base` and `cl100k_base` into
//! `OUT_DIR` as compact blobs that `src/llm/bpe.rs` embeds with `include_bytes!`.
//!
//! tiktoken-rs is only a build (and dev) dependency: it embeds its `.tiktoken` assets, so
//! nothing is downloaded. Each encoding's `CoreBPE` is built here once and asked for every
//! ordinary token's bytes in rank order (`decode_bytes(&[rank])`).
//!
//! Blob format (all integers little-endian):
//!
//! ```text
//! b"BPE1"              magic
//! u32                  n = number of rank slots (highest ordinary rank + 1)
//! n × u8               byte length of the token with that rank; 0 = no ordinary token
//!                      (a gap in the ranks, or a special token's rank)
//! bytes                the tokens' bytes, concatenated in rank order
//! ```
//!
//! Tokens are at most 128 bytes in both encodings; the script fails if one ever exceeds 255.

use std::collections::HashSet;
use std::path::Path;

use tiktoken_rs::{CoreBPE, Rank};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out_dir = std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo");
    let out_dir = Path::new(&out_dir);
    write_blob(
        &tiktoken_rs::o200k_base().expect("tiktoken-rs o200k_base"),
        &out_dir.join("o200k_base.bin"),
    );
    write_blob(
        &tiktoken_rs::cl100k_base().expect("tiktoken-rs cl100k_base"),
        &out_dir.join("cl100k_base.bin"),
    );
}

fn write_blob(bpe: &CoreBPE, path: &Path) {
    // `decode_bytes` also answers for special tokens (`<|endoftext|>`), which ordinary text
    // never produces; their ranks become "no token" slots.
    let special: HashSet<Rank> = bpe
        .special_tokens()
        .into_iter()
        .flat_map(|s| bpe.encode_with_special_tokens(s))
        .collect();
    let max_special = special.iter().copied().max().unwrap_or(0);

    // Walk ranks upward. Stop at the first rank past every special token that does not
    // decode; a failing rank below that is a gap and gets a zero-length slot.
    let mut tokens: Vec<Option<Vec<u8>>> = Vec::new();
    for rank in 0.. {
        match bpe.decode_bytes(&[rank]) {
            Ok(bytes) if !special.contains(&rank) => {
                assert!(
                    !bytes.is_empty() && bytes.len() <= usize::from(u8::MAX),
                    "token {rank} is {} bytes; the blob stores lengths as u8",
                    bytes.len()
                );
                tokens.push(Some(bytes));
            }
            Ok(_) => tokens.push(None),
            Err(_) if rank > max_special => break,
            Err(_) => tokens.push(None),
        }
    }
    while tokens.last().is_some_and(Option::is_none) {
        tokens.pop();
    }

    let n = u32::try_from(tokens.len()).expect("rank count fits u32");
    let total: usize = tokens.iter().flatten().map(Vec::len).sum();
    let mut blob = Vec::with_capacity(8 + tokens.len() + total);
    blob.extend_from_slice(b"BPE1");
    blob.extend_from_slice(&n.to_le_bytes());
    blob.extend(
        tokens
            .iter()
            .map(|t| t.as_ref().map_or(0, |b| b.len() as u8)),
    );
    for t in tokens.iter().flatten() {
        blob.extend_from_slice(t);
    }
    // Only rewrite on change, so the crate is not recompiled for an identical blob.
    if std::fs::read(path).ok().as_deref() != Some(blob.as_slice()) {
        std::fs::write(path, &blob).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}
