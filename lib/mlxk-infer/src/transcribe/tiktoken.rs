//! Whisper's own text tokenizer, as openai-whisper and mlx-whisper run it through tiktoken:
//! byte-level BPE over a rank table (`assets/whisper/*.tiktoken`, built in), text split first
//! by GPT-2's pattern. mlx-whisper's model folders carry no tokenizer, so this is how they run
//! here; a folder with a `tokenizer.json` uses that instead (the same vocabulary).
use base64::Engine;
use std::collections::HashMap;
use std::sync::OnceLock;

/// GPT-2's pre-tokenizer pattern, as whisper's `get_encoding` gives it to tiktoken.
const PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

const GPT2: &str = include_str!("../../assets/whisper/gpt2.tiktoken");
const MULTILINGUAL: &str = include_str!("../../assets/whisper/multilingual.tiktoken");

/// A BPE rank table: token bytes ↔ id (the id is the merge rank).
pub struct Tiktoken {
    ranks: HashMap<Vec<u8>, u32>,
    tokens: Vec<Vec<u8>>,
    pattern: fancy_regex::Regex,
}

impl Tiktoken {
    /// Reads `base64 rank` lines; the ranks must be 0, 1, 2, … in order.
    pub fn parse(text: &str) -> Result<Tiktoken, String> {
        let mut ranks = HashMap::new();
        let mut tokens = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
            let (b64, rank) = line
                .split_once(' ')
                .ok_or_else(|| format!("line {}: not `TOKEN RANK`", i + 1))?;
            // Python's lenient b64decode reads a lone `=` as no bytes: multilingual.tiktoken's
            // last rank is such an empty token.
            let bytes = if b64.trim_end_matches('=').is_empty() {
                Vec::new()
            } else {
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("line {}: {e}", i + 1))?
            };
            let rank: u32 = rank
                .trim()
                .parse()
                .map_err(|_| format!("line {}: the rank is not a number", i + 1))?;
            if rank as usize != tokens.len() {
                return Err(format!("line {}: rank {rank} out of order", i + 1));
            }
            ranks.insert(bytes.clone(), rank);
            tokens.push(bytes);
        }
        let pattern = fancy_regex::Regex::new(PATTERN).map_err(|e| e.to_string())?;
        Ok(Tiktoken {
            ranks,
            tokens,
            pattern,
        })
    }

    /// The built-in vocabulary: `gpt2` for English-only models, `multilingual` else.
    pub fn builtin(multilingual: bool) -> &'static Tiktoken {
        static GPT2_T: OnceLock<Tiktoken> = OnceLock::new();
        static MULTI_T: OnceLock<Tiktoken> = OnceLock::new();
        let (cell, text) = if multilingual {
            (&MULTI_T, MULTILINGUAL)
        } else {
            (&GPT2_T, GPT2)
        };
        cell.get_or_init(|| Tiktoken::parse(text).expect("the built-in vocabulary parses"))
    }

    /// Tokens in the table (the first special token's id).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Text to ids (no special tokens: their text is encoded as text). The error is the
    /// pattern's backtracking limit, which ends the split: nothing is dropped silently.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        let mut out = Vec::new();
        for m in self.pattern.find_iter(text) {
            let piece = m
                .map_err(|e| format!("cannot split the text into words: {e}"))?
                .as_str()
                .as_bytes();
            match self.ranks.get(piece) {
                Some(&r) => out.push(r),
                None => out.extend(self.merge(piece)),
            }
        }
        Ok(out)
    }

    /// tiktoken's byte-pair merge: the adjacent pair of lowest rank merges first (the leftmost
    /// of equals), until no merged pair is in the table. As tiktoken, each part keeps the rank
    /// of the pair it starts, and a merge looks up only its two new neighbours.
    fn merge(&self, piece: &[u8]) -> Vec<u32> {
        let rank = |start: usize, end: usize| -> u32 {
            self.ranks
                .get(&piece[start..end])
                .copied()
                .unwrap_or(u32::MAX)
        };
        // (start of the part, rank of it merged with the next part).
        let mut parts: Vec<(usize, u32)> = (0..piece.len())
            .map(|i| {
                (
                    i,
                    if i + 2 <= piece.len() {
                        rank(i, i + 2)
                    } else {
                        u32::MAX
                    },
                )
            })
            .collect();
        parts.push((piece.len(), u32::MAX));
        // The rank of parts[i] merged with parts[i + 1], once parts[i + 1] is the merged one.
        let pair_rank = |parts: &[(usize, u32)], i: usize| -> u32 {
            if i + 3 < parts.len() {
                rank(parts[i].0, parts[i + 3].0)
            } else {
                u32::MAX
            }
        };
        while parts.len() > 1 {
            let (mut best, mut at) = (u32::MAX, 0);
            for (i, p) in parts[..parts.len() - 1].iter().enumerate() {
                if p.1 < best {
                    (best, at) = (p.1, i);
                }
            }
            if best == u32::MAX {
                break;
            }
            if at > 0 {
                parts[at - 1].1 = pair_rank(&parts, at - 1);
            }
            parts[at].1 = pair_rank(&parts, at);
            parts.remove(at + 1);
        }
        parts
            .windows(2)
            // Every single byte is a token of a byte-level table.
            .map(|w| rank(w[0].0, w[1].0))
            .collect()
    }

    /// The bytes of `ids` (those in the table; others are left out).
    pub fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        ids.iter()
            .filter_map(|&i| self.tokens.get(i as usize))
            .flatten()
            .copied()
            .collect()
    }

    /// The text of `ids`, invalid UTF-8 replaced as tiktoken's `errors="replace"` does.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(tokens: &[&[u8]]) -> Tiktoken {
        let b64 = base64::engine::general_purpose::STANDARD;
        let text: String = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{} {i}\n", b64.encode(t)))
            .collect();
        Tiktoken::parse(&text).unwrap()
    }

    #[test]
    fn pairs_merge_by_rank_lowest_first() {
        // Bytes a b c, then "bc" before "ab": "abc" is a + bc, not ab + c.
        let t = table(&[b"a", b"b", b"c", b"bc", b"ab", b" ", b" a"]);
        assert_eq!(t.encode("abc").unwrap(), vec![0, 3]);
        assert_eq!(t.encode("ab").unwrap(), vec![4]);
        // The pattern keeps a leading space with the word.
        assert_eq!(t.encode("ab abc").unwrap(), vec![4, 6, 3]);
        assert_eq!(t.decode(&[4, 6, 3]), "ab abc");
        // Equal pairs merge leftmost first: "aaa" is aa + a.
        let t = table(&[b"a", b"aa"]);
        assert_eq!(t.encode("aaa").unwrap(), vec![1, 0]);
        assert_eq!(t.encode("aaaa").unwrap(), vec![1, 1]);
    }

    #[test]
    fn a_bad_table_is_refused() {
        assert!(Tiktoken::parse("YQ== 1\n").is_err());
        assert!(Tiktoken::parse("not base64! 0\n").is_err());
        assert!(Tiktoken::parse("YQ==\n").is_err());
    }

    #[test]
    fn the_builtin_tables_have_whispers_sizes() {
        assert_eq!(Tiktoken::builtin(false).len(), 50256);
        assert_eq!(Tiktoken::builtin(true).len(), 50257);
        let t = Tiktoken::builtin(false);
        let ids = t.encode(" Hello, world! It's 2026.").unwrap();
        assert_eq!(t.decode(&ids), " Hello, world! It's 2026.");
        assert!(ids.len() < 12, "{ids:?}");
    }
}
