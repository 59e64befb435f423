//! A compact, count-only BPE for tiktoken's `o200k_base` and `cl100k_base`.
//!
//! [`Bpe::count`] returns exactly what tiktoken-rs's `CoreBPE::encode_ordinary(text).len()`
//! returns (tests/tokens.rs checks it over the shipped transcripts, the golden sets and a few
//! thousand generated strings), at a fraction of the memory:
//!
//! * tiktoken-rs's `CoreBPE` keeps an encoder `HashMap<Vec<u8>, Rank>`, a decoder
//!   `HashMap<Rank, Vec<u8>>` and a sorted `Vec<Vec<u8>>` (one heap allocation per token,
//!   three times over) plus 128 clones of its regex. Building `o200k_base` raised RSS by
//!   about 45 MiB and `cl100k_base` by 24 MiB more; the tokenizer was most of the service's
//!   baseline against its ≤ 100 MB target at 1,000 in-flight gradings.
//! * Here the token bytes stay in a static blob compiled into the binary (build.rs writes it
//!   from tiktoken-rs at build time; nothing is downloaded), and the only heap structure is one
//!   `FxHashMap<&'static [u8], u32>` from token bytes to rank, plus a single regex. We only
//!   ever count, so there is no decoder and no per-token allocation. Measured RSS growth on
//!   building (tests/tokens.rs, `rss_*`): `o200k_base` +10.2 MiB (7.5 MiB heap, most of it
//!   the hash map; 2.8 MiB of touched binary pages, the 1.6 MB blob included) against
//!   tiktoken-rs's +45.4 MiB; `cl100k_base` +5.9 MiB against +23.5 MiB; both +14.4 MiB
//!   against +67.8 MiB. Counting is as fast as tiktoken-rs or a little faster.
//!
//! The algorithm is tiktoken's: split the text with the encoding's pre-tokenizer regex (the
//! same patterns, the same `fancy-regex` engine); a piece that is itself a token counts 1,
//! otherwise it is merged pairwise, lowest rank first, and counts its remaining parts. Pieces
//! under 100 bytes use the simple O(n²) merge on a stack buffer; longer ones (a base64 blob, a
//! run of 50,000 spaces) use the heap-based O(n log n) merge, so they cannot go quadratic.
//!
//! Each encoding is built on first use, once per process ([`Bpe::o200k_base`],
//! [`Bpe::cl100k_base`]).

use std::collections::BinaryHeap;
use std::sync::LazyLock;

use fancy_regex::Regex;
use rustc_hash::FxHashMap;

/// A token's rank (its id) in the encoding.
pub type Rank = u32;

/// tiktoken-rs 0.12's `cl100k_base` pre-tokenizer pattern (`tiktoken_ext/openai_public.rs`).
const CL100K_BASE_PATTERN: &str = "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s";

/// tiktoken-rs 0.12's `O200K_BASE_PAT_STR`.
const O200K_BASE_PATTERN: &str = concat!(
    r#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#,
    "|",
    r#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#,
    "|",
    r#"\p{N}{1,3}"#,
    "|",
    r#" ?[^\s\p{L}\p{N}]+[\r\n/]*"#,
    "|",
    r#"\s*[\r\n]+"#,
    "|",
    r#"\s+(?!\S)"#,
    "|",
    r#"\s+"#
);

/// Vocabulary blobs written by build.rs: `b"BPE1"`, u32 LE slot count `n`, `n` u8 token
/// lengths (0 = no ordinary token at that rank), then the tokens' bytes in rank order.
static O200K_BASE_BLOB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.bin"));
static CL100K_BASE_BLOB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_base.bin"));

/// Pieces shorter than this use the simple merge; tiktoken's threshold, kept so the two
/// implementations take the same path for the same piece.
const SMALL_PIECE: usize = 100;

/// A count-only byte-pair encoder for one tiktoken encoding.
pub struct Bpe {
    name: &'static str,
    /// Token bytes (borrowed from the static blob) → rank. Ordinary tokens only.
    ranks: FxHashMap<&'static [u8], Rank>,
    /// The pre-tokenizer. One instance, shared by all threads: `fancy_regex::Regex` is
    /// `Sync`, and the `regex` engine underneath pools its scratch space per thread.
    regex: Regex,
}

impl std::fmt::Debug for Bpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bpe")
            .field("name", &self.name)
            .field("vocab_size", &self.ranks.len())
            .finish_non_exhaustive()
    }
}

impl Bpe {
    /// The process-wide `o200k_base` counter, built on first use (tens of milliseconds).
    pub fn o200k_base() -> &'static Bpe {
        static BPE: LazyLock<Bpe> =
            LazyLock::new(|| Bpe::from_blob("o200k_base", O200K_BASE_BLOB, O200K_BASE_PATTERN));
        &BPE
    }

    /// The process-wide `cl100k_base` counter, built on first use.
    pub fn cl100k_base() -> &'static Bpe {
        static BPE: LazyLock<Bpe> =
            LazyLock::new(|| Bpe::from_blob("cl100k_base", CL100K_BASE_BLOB, CL100K_BASE_PATTERN));
        &BPE
    }

    /// Builds a counter from a build.rs blob. Panics on a malformed blob or pattern, which
    /// are compiled in, so that is a build bug, not a runtime condition.
    fn from_blob(name: &'static str, blob: &'static [u8], pattern: &str) -> Bpe {
        assert!(
            blob.len() >= 8 && &blob[..4] == b"BPE1",
            "{name}: bad blob header"
        );
        let n = u32::from_le_bytes(blob[4..8].try_into().expect("4 bytes")) as usize;
        let lengths = &blob[8..8 + n];
        let mut bytes = &blob[8 + n..];
        let mut ranks = FxHashMap::with_capacity_and_hasher(n, Default::default());
        for (rank, &len) in lengths.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let (token, rest) = bytes.split_at(usize::from(len));
            bytes = rest;
            let rank = Rank::try_from(rank).expect("rank fits u32");
            let previous = ranks.insert(token, rank);
            assert!(previous.is_none(), "{name}: duplicate token at rank {rank}");
        }
        assert!(bytes.is_empty(), "{name}: trailing bytes in blob");
        let regex = Regex::new(pattern).expect("tiktoken's pre-tokenizer pattern compiles");
        Bpe { name, ranks, regex }
    }

    /// The tiktoken name (`o200k_base`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Number of ordinary (non-special) tokens.
    pub fn vocab_size(&self) -> usize {
        self.ranks.len()
    }

    /// The rank of the token with exactly these bytes, if there is one.
    pub fn rank(&self, bytes: &[u8]) -> Option<Rank> {
        self.ranks.get(bytes).copied()
    }

    /// Number of tokens `text` encodes to, special-token text included as ordinary text:
    /// the same as tiktoken-rs's `encode_ordinary(text).len()`.
    ///
    /// tiktoken-rs panics if the regex engine gives up (fancy-regex's backtrack limit); this
    /// never happens with these patterns on any input we have tried, but should it, the rest
    /// of the text is counted as one token per byte, an upper bound, and a warning is logged.
    pub fn count(&self, text: &str) -> usize {
        let mut count = 0;
        let mut last_end = 0;
        for found in self.regex.find_iter(text) {
            match found {
                Ok(m) => {
                    last_end = m.end();
                    count += self.count_piece(m.as_str().as_bytes());
                }
                Err(err) => {
                    tracing::warn!(encoding = self.name, error = %err, "pre-tokenizer gave up; counting the rest as one token per byte");
                    return count + (text.len() - last_end);
                }
            }
        }
        count
    }

    /// Tokens of one pre-tokenizer piece (tiktoken's `byte_pair_encode`, counted).
    #[inline]
    fn count_piece(&self, piece: &[u8]) -> usize {
        if piece.len() <= 1 {
            // Every single byte is a token in both encodings (and matches are never empty).
            return piece.len();
        }
        if self.ranks.contains_key(piece) {
            return 1;
        }
        if piece.len() < SMALL_PIECE {
            self.merge_count_small(piece)
        } else {
            self.merge_count_large(piece)
        }
    }

    #[inline]
    fn rank_or_max(&self, bytes: &[u8]) -> Rank {
        self.ranks.get(bytes).copied().unwrap_or(Rank::MAX)
    }

    /// tiktoken's `_byte_pair_merge` on a stack buffer, returning the number of parts.
    ///
    /// `parts[i] = (start, rank of merging part i with part i + 1)`; repeatedly merge the
    /// leftmost lowest-ranked pair. O(n²) but n < 100, where it beats a heap.
    fn merge_count_small(&self, piece: &[u8]) -> usize {
        debug_assert!(piece.len() >= 2 && piece.len() < SMALL_PIECE);
        let mut parts = [(0u32, Rank::MAX); SMALL_PIECE + 1];
        let n = piece.len();
        let mut min_rank = (Rank::MAX, usize::MAX);
        for i in 0..n - 1 {
            let rank = self.rank_or_max(&piece[i..i + 2]);
            if rank < min_rank.0 {
                min_rank = (rank, i);
            }
            parts[i] = (i as u32, rank);
        }
        parts[n - 1] = ((n - 1) as u32, Rank::MAX);
        parts[n] = (n as u32, Rank::MAX);
        let mut len = n + 1;

        // The rank of the part starting at parts[i] and ending at parts[i + 3] (parts[i + 1]
        // is about to be removed), as in tiktoken.
        let get_rank = |parts: &[(u32, Rank)], len: usize, i: usize| {
            if i + 3 < len {
                self.rank_or_max(&piece[parts[i].0 as usize..parts[i + 3].0 as usize])
            } else {
                Rank::MAX
            }
        };

        while min_rank.0 != Rank::MAX {
            let i = min_rank.1;
            if i > 0 {
                parts[i - 1].1 = get_rank(&parts, len, i - 1);
            }
            parts[i].1 = get_rank(&parts, len, i);
            parts.copy_within(i + 2..len, i + 1);
            len -= 1;

            min_rank = (Rank::MAX, usize::MAX);
            for (j, &(_, rank)) in parts[..len - 1].iter().enumerate() {
                if rank < min_rank.0 {
                    min_rank = (rank, j);
                }
            }
        }
        len - 1
    }

    /// tiktoken's heap-based `_byte_pair_merge_large`, returning the number of parts:
    /// O(n log n), for pieces of 100 bytes and more.
    fn merge_count_large(&self, piece: &[u8]) -> usize {
        struct State {
            prev: usize,
            end: usize,
            next_end: usize,
            next_rank: Rank,
        }

        /// Max-heap order reversed: lowest rank first, then lowest start.
        #[derive(PartialEq, Eq)]
        struct Merge {
            start: usize,
            rank: Rank,
        }
        impl Ord for Merge {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                other
                    .rank
                    .cmp(&self.rank)
                    .then_with(|| other.start.cmp(&self.start))
            }
        }
        impl PartialOrd for Merge {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        let n = piece.len();
        let mut state = Vec::with_capacity(n);
        state.push(State {
            prev: usize::MAX,
            end: 1,
            next_end: 2,
            next_rank: Rank::MAX,
        });
        let mut heap = BinaryHeap::with_capacity(n);
        for i in 0..n - 1 {
            if let Some(rank) = self.rank(&piece[i..i + 2]) {
                heap.push(Merge { start: i, rank });
                state[i].next_rank = rank;
            }
            // Offset by one: this is the state of the part starting at i + 1.
            state.push(State {
                prev: i,
                end: i + 2,
                next_end: i + 3,
                next_rank: Rank::MAX,
            });
        }

        // Records the merge of the part at `start` with the part ending at `next_end`,
        // invalidating whatever merge that part had queued before.
        let potential_merge =
            |state: &mut [State], heap: &mut BinaryHeap<Merge>, start: usize, next_end: usize| {
                state[start].next_end = next_end;
                state[start].next_rank = Rank::MAX;
                if next_end <= n {
                    if let Some(rank) = self.rank(&piece[start..next_end]) {
                        heap.push(Merge { start, rank });
                        state[start].next_rank = rank;
                    }
                }
            };

        let mut parts = n;
        while let Some(left) = heap.pop() {
            if left.rank == Rank::MAX {
                break;
            }
            if left.rank != state[left.start].next_rank {
                continue; // invalidated since it was queued
            }
            let left_start = left.start;
            let right_start = state[left_start].end;
            let right_end = state[left_start].next_end;
            debug_assert_eq!(right_end, state[right_start].end);
            let right_next_end = state[right_start].next_end;

            state[left_start].end = right_end;
            parts -= 1;
            potential_merge(&mut state, &mut heap, left_start, right_next_end);
            if right_end < state.len() {
                state[right_end].prev = left_start;
            }
            if left_start > 0 {
                let prev_start = state[left_start].prev;
                potential_merge(&mut state, &mut heap, prev_start, right_end);
            }
            state[right_start].next_rank = Rank::MAX;
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_hold_the_full_vocabularies() {
        assert_eq!(Bpe::o200k_base().vocab_size(), 199_998);
        assert_eq!(Bpe::cl100k_base().vocab_size(), 100_256);
        // Every byte is a token, so no piece is ever unencodable.
        for bpe in [Bpe::o200k_base(), Bpe::cl100k_base()] {
            for b in 0..=255u8 {
                assert!(bpe.rank(&[b]).is_some(), "{}: byte {b}", bpe.name());
            }
        }
        assert_eq!(Bpe::cl100k_base().rank(b"!"), Some(0));
    }

    #[test]
    fn small_and_large_merges_agree() {
        // The same piece merged both ways must give the same count (they differ only in
        // data structure; tiktoken picks by length).
        let bpe = Bpe::o200k_base();
        for piece in [
            "aGVsbG8gd29ybGQ",
            "antidisestablishmentarianism",
            "                                ",
            "0123456789",
            "😀👍🏽👨‍👩‍👧",
        ] {
            let piece = piece.as_bytes();
            assert_eq!(
                bpe.merge_count_small(piece),
                bpe.merge_count_large(piece),
                "{piece:?}"
            );
        }
    }

    #[test]
    fn counts() {
        let bpe = Bpe::cl100k_base();
        assert_eq!(bpe.count(""), 0);
        assert_eq!(bpe.count("hello world"), 2);
        assert!(bpe.count("<|endoftext|>") > 1);
    }
}
