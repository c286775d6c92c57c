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

    /// Text to ids (no special tokens: their text is encoded as text).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        for m in self.pattern.find_iter(text) {
            // The pattern matches every position of any text; an error is its backtrack limit.
            let piece = match m {
                Ok(m) => m.as_str().as_bytes(),
                Err(_) => continue,
            };
            match self.ranks.get(piece) {
                Some(&r) => out.push(r),
                None => out.extend(self.merge(piece)),
            }
        }
        out
    }

    /// tiktoken's byte-pair merge: the adjacent pair of lowest rank merges first (the leftmost
    /// of equals), until no merged pair is in the table.
    fn merge(&self, piece: &[u8]) -> Vec<u32> {
        // Part boundaries; a part is piece[b[i]..b[i + 1]].
        let mut b: Vec<usize> = (0..=piece.len()).collect();
        let rank_of = |b: &[usize], i: usize| -> Option<u32> {
            (i + 2 < b.len())
                .then(|| self.ranks.get(&piece[b[i]..b[i + 2]]).copied())
                .flatten()
        };
        loop {
            let best = (0..b.len().saturating_sub(2))
                .filter_map(|i| rank_of(&b, i).map(|r| (r, i)))
                .min();
            match best {
                Some((_, i)) => {
                    b.remove(i + 1);
                }
                None => break,
            }
        }
        b.windows(2)
            .map(|w| {
                // Every single byte is a token of a byte-level table.
                self.ranks
                    .get(&piece[w[0]..w[1]])
                    .copied()
                    .unwrap_or(u32::MAX)
            })
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
        assert_eq!(t.encode("abc"), vec![0, 3]);
        assert_eq!(t.encode("ab"), vec![4]);
        // The pattern keeps a leading space with the word.
        assert_eq!(t.encode("ab abc"), vec![4, 6, 3]);
        assert_eq!(t.decode(&[4, 6, 3]), "ab abc");
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
        let ids = t.encode(" Hello, world! It's 2026.");
        assert_eq!(t.decode(&ids), " Hello, world! It's 2026.");
        assert!(ids.len() < 12, "{ids:?}");
    }
}
