//! Board order without renumbering: a task's `position` is a [`Rank`], a string key compared
//! byte by byte, and a key can always be made between any two others. Moving a task writes only
//! that task; two clients moving tasks into the same gap at once both succeed (their keys may be
//! equal, and equal keys are ordered by creation time, then id).
//!
//! The format is the one of the widely used `fractional-indexing` package (base 62, an integer
//! part whose first character says its length, then a fraction with no trailing `0`), so a client
//! can compute keys offline with that package: `generateKeyBetween(before, after)`. Older
//! integer positions are read as the key of that integer, keeping their order.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Longest key, in characters. Keys grow by about one character per six insertions into the
/// same gap; a key would have to be squeezed hundreds of times into one spot to reach this.
pub const MAX_RANK_CHARS: usize = 128;

const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// The key below which nothing can be made (`A` followed by 26 zeros).
const SMALLEST_INTEGER: &str = "A00000000000000000000000000";

/// Why a key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RankError {
    /// Not a key of this format.
    #[error(
        "must be a position key (base 62, as made by fractional-indexing) of at most 128 characters"
    )]
    Malformed,
    /// `before` is not below `after`.
    #[error("the keys around the new position are not in order")]
    OutOfOrder,
    /// The key that would go there is longer than [`MAX_RANK_CHARS`].
    #[error("no room left at this position; move a neighbour first")]
    Full,
}

/// A position on the board (see the module docs).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "a0")]
pub struct Rank(String);

impl Rank {
    /// The key of the first position on an empty board (`a0`).
    pub fn first() -> Rank {
        Rank("a0".into())
    }

    /// Checks a key given by a client or read from storage.
    ///
    /// # Errors
    /// [`RankError::Malformed`].
    pub fn parse(key: &str) -> Result<Rank, RankError> {
        validate(key.as_bytes())?;
        Ok(Rank(key.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of an integer position: `from_i64(a) < from_i64(b)` exactly when `a < b`, and each
    /// is the key `fractional-indexing` reaches by counting from `a0` (= 0).
    pub fn from_i64(n: i64) -> Rank {
        // Non-negative n: the integers with k digits after head `a + k - 1` follow those with
        // k - 1; negative ones mirror them below `a0`, from `Zz` (= -1) down.
        let (mut m, negative) = if n >= 0 {
            (u128::from(n.unsigned_abs()), false)
        } else {
            (u128::from(n.unsigned_abs()) - 1, true)
        };
        let mut len = 1u32;
        while m >= 62u128.pow(len) {
            m -= 62u128.pow(len);
            len += 1;
        }
        if negative {
            m = 62u128.pow(len) - 1 - m;
        }
        let step = u8::try_from(len - 1).unwrap_or(0);
        let head = if negative { b'Z' - step } else { b'a' + step };
        let mut key = vec![b'0'; len as usize + 1];
        key[0] = head;
        for slot in key[1..].iter_mut().rev() {
            *slot = DIGITS[(m % 62) as usize];
            m /= 62;
        }
        Rank(String::from_utf8(key).unwrap_or_default())
    }

    /// A key strictly between `before` and `after` (either may be open: the start or the end of
    /// the board).
    ///
    /// # Errors
    /// [`RankError::OutOfOrder`] when `before >= after`; [`RankError::Full`] when the key would
    /// be longer than [`MAX_RANK_CHARS`].
    pub fn between(before: Option<&Rank>, after: Option<&Rank>) -> Result<Rank, RankError> {
        let key = key_between(
            before.map(|r| r.0.as_bytes()),
            after.map(|r| r.0.as_bytes()),
        )?;
        if key.len() > MAX_RANK_CHARS {
            return Err(RankError::Full);
        }
        Ok(Rank(
            String::from_utf8(key).map_err(|_| RankError::Malformed)?,
        ))
    }
}

impl fmt::Debug for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Rank {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct RankVisitor;
        impl Visitor<'_> for RankVisitor {
            type Value = Rank;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a position key or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Rank, E> {
                Rank::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Rank, E> {
                Ok(Rank::from_i64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Rank, E> {
                Ok(Rank::from_i64(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        de.deserialize_any(RankVisitor)
    }
}

fn digit(c: u8) -> Option<usize> {
    DIGITS.iter().position(|d| *d == c)
}

/// The length of the integer part a head character announces.
fn integer_len(head: u8) -> Option<usize> {
    match head {
        b'a'..=b'z' => Some(usize::from(head - b'a') + 2),
        b'A'..=b'Z' => Some(usize::from(b'Z' - head) + 2),
        _ => None,
    }
}

fn integer_part(key: &[u8]) -> Result<&[u8], RankError> {
    let len = key
        .first()
        .and_then(|h| integer_len(*h))
        .ok_or(RankError::Malformed)?;
    key.get(..len).ok_or(RankError::Malformed)
}

fn validate(key: &[u8]) -> Result<(), RankError> {
    if key.is_empty() || key.len() > MAX_RANK_CHARS || key == SMALLEST_INTEGER.as_bytes() {
        return Err(RankError::Malformed);
    }
    let int = integer_part(key)?;
    if key[1..].iter().any(|c| digit(*c).is_none()) {
        return Err(RankError::Malformed);
    }
    if key.len() > int.len() && key.last() == Some(&b'0') {
        return Err(RankError::Malformed);
    }
    Ok(())
}

/// A fraction strictly between `a` and `b` (digits after the point; `b: None` is 1). `a < b`
/// and neither ends with `0`.
fn midpoint(a: &[u8], b: Option<&[u8]>) -> Vec<u8> {
    if let Some(b) = b {
        let n = b
            .iter()
            .enumerate()
            .take_while(|(i, c)| a.get(*i).copied().unwrap_or(b'0') == **c)
            .count();
        if n > 0 {
            let mut out = b[..n].to_vec();
            out.extend(midpoint(a.get(n..).unwrap_or_default(), Some(&b[n..])));
            return out;
        }
    }
    let da = a.first().and_then(|c| digit(*c)).unwrap_or(0);
    let db = b
        .and_then(|b| b.first())
        .and_then(|c| digit(*c))
        .unwrap_or(DIGITS.len());
    if db - da > 1 {
        vec![DIGITS[(da + db).div_ceil(2)]]
    } else if let Some(b) = b.filter(|b| b.len() > 1) {
        b[..1].to_vec()
    } else {
        let mut out = vec![DIGITS[da]];
        out.extend(midpoint(a.get(1..).unwrap_or_default(), None));
        out
    }
}

fn increment(int: &[u8]) -> Option<Vec<u8>> {
    let head = int[0];
    let mut digs = int[1..].to_vec();
    let mut carry = true;
    for d in digs.iter_mut().rev() {
        let next = digit(*d).unwrap_or(0) + 1;
        if next == DIGITS.len() {
            *d = DIGITS[0];
        } else {
            *d = DIGITS[next];
            carry = false;
            break;
        }
    }
    if !carry {
        return Some([&[head][..], &digs].concat());
    }
    match head {
        b'Z' => Some(vec![b'a', DIGITS[0]]),
        b'z' => None,
        _ => {
            let h = head + 1;
            if h > b'a' {
                digs.push(DIGITS[0]);
            } else {
                digs.pop();
            }
            Some([&[h][..], &digs].concat())
        }
    }
}

fn decrement(int: &[u8]) -> Option<Vec<u8>> {
    let head = int[0];
    let mut digs = int[1..].to_vec();
    let mut borrow = true;
    for d in digs.iter_mut().rev() {
        match digit(*d).unwrap_or(0) {
            0 => *d = DIGITS[DIGITS.len() - 1],
            n => {
                *d = DIGITS[n - 1];
                borrow = false;
                break;
            }
        }
    }
    if !borrow {
        return Some([&[head][..], &digs].concat());
    }
    match head {
        b'a' => Some(vec![b'Z', DIGITS[DIGITS.len() - 1]]),
        b'A' => None,
        _ => {
            let h = head - 1;
            if h < b'Z' {
                digs.push(DIGITS[DIGITS.len() - 1]);
            } else {
                digs.pop();
            }
            Some([&[h][..], &digs].concat())
        }
    }
}

fn key_between(a: Option<&[u8]>, b: Option<&[u8]>) -> Result<Vec<u8>, RankError> {
    if let (Some(a), Some(b)) = (a, b)
        && a >= b
    {
        return Err(RankError::OutOfOrder);
    }
    match (a, b) {
        (None, None) => Ok(b"a0".to_vec()),
        (None, Some(b)) => {
            let ib = integer_part(b)?;
            let fb = &b[ib.len()..];
            if ib == SMALLEST_INTEGER.as_bytes() {
                return Ok([ib, &midpoint(b"", Some(fb))].concat());
            }
            if ib.len() < b.len() {
                return Ok(ib.to_vec());
            }
            decrement(ib).ok_or(RankError::Full)
        }
        (Some(a), None) => {
            let ia = integer_part(a)?;
            let fa = &a[ia.len()..];
            Ok(match increment(ia) {
                Some(i) => i,
                None => [ia, &midpoint(fa, None)].concat(),
            })
        }
        (Some(a), Some(b)) => {
            let ia = integer_part(a)?;
            let fa = &a[ia.len()..];
            let ib = integer_part(b)?;
            let fb = &b[ib.len()..];
            if ia == ib {
                return Ok([ia, &midpoint(fa, Some(fb))].concat());
            }
            let i = increment(ia).ok_or(RankError::Full)?;
            if i.as_slice() < b {
                Ok(i)
            } else {
                Ok([ia, &midpoint(fa, None)].concat())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Rank {
        Rank::parse(s).unwrap()
    }

    fn between(a: Option<&str>, b: Option<&str>) -> String {
        Rank::between(a.map(k).as_ref(), b.map(k).as_ref())
            .unwrap()
            .0
    }

    /// The examples of the `fractional-indexing` package's own tests: a client using it and the
    /// hub make the same keys.
    #[test]
    fn matches_the_fractional_indexing_package() {
        let cases: &[(Option<&str>, Option<&str>, &str)] = &[
            (None, None, "a0"),
            (None, Some("a0"), "Zz"),
            (None, Some("Zz"), "Zy"),
            (Some("a0"), None, "a1"),
            (Some("a1"), None, "a2"),
            (Some("a0"), Some("a1"), "a0V"),
            (Some("a1"), Some("a2"), "a1V"),
            (Some("a0V"), Some("a1"), "a0l"),
            (Some("Zz"), Some("a0"), "ZzV"),
            (Some("Zz"), Some("a1"), "a0"),
            (None, Some("Y00"), "Xzzz"),
            (Some("bzz"), None, "c000"),
            (Some("a0"), Some("a0V"), "a0G"),
            (Some("a0"), Some("a0G"), "a08"),
            (Some("b125"), Some("b129"), "b127"),
            (Some("a0"), Some("a1V"), "a1"),
            (Some("Zz"), Some("a01"), "a0"),
            (None, Some("a0V"), "a0"),
            (None, Some("b999"), "b99"),
            (
                None,
                Some("A000000000000000000000000001"),
                "A000000000000000000000000000V",
            ),
            (
                Some("zzzzzzzzzzzzzzzzzzzzzzzzzzy"),
                None,
                "zzzzzzzzzzzzzzzzzzzzzzzzzzz",
            ),
            (
                Some("zzzzzzzzzzzzzzzzzzzzzzzzzzz"),
                None,
                "zzzzzzzzzzzzzzzzzzzzzzzzzzzV",
            ),
            (Some("a00"), None, "a1"),
            (Some("a00"), Some("a1"), "a0"),
        ];
        for (a, b, want) in cases {
            // "a00" has a trailing zero: the package refuses it as input, so do we.
            if *a == Some("a00") {
                assert_eq!(Rank::parse("a00"), Err(RankError::Malformed));
                continue;
            }
            assert_eq!(between(*a, *b), *want, "between {a:?} and {b:?}");
        }
        assert_eq!(
            Rank::between(Some(&k("a1")), Some(&k("a0"))),
            Err(RankError::OutOfOrder)
        );
        assert_eq!(
            Rank::between(Some(&k("a0")), Some(&k("a0"))),
            Err(RankError::OutOfOrder)
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "0",
            "a",
            "a0 ",
            "a0-",
            "b1",
            "A00000000000000000000000000",
            "é",
        ] {
            assert_eq!(Rank::parse(bad), Err(RankError::Malformed), "{bad:?}");
        }
        assert!(Rank::parse(&format!("a0{}", "V".repeat(MAX_RANK_CHARS))).is_err());
    }

    #[test]
    fn integers_keep_their_order_and_count_like_the_package() {
        assert_eq!(Rank::from_i64(0), k("a0"));
        assert_eq!(Rank::from_i64(1), k("a1"));
        assert_eq!(Rank::from_i64(61), k("az"));
        assert_eq!(Rank::from_i64(62), k("b00"));
        assert_eq!(Rank::from_i64(-1), k("Zz"));
        assert_eq!(Rank::from_i64(-62), k("Z0"));
        assert_eq!(Rank::from_i64(-63), k("Yzz"));
        // Counting up from a0 with the package's "after" step is from_i64.
        let mut key = Rank::first();
        for n in 0..5000 {
            assert_eq!(key, Rank::from_i64(n), "{n}");
            key = Rank::between(Some(&key), None).unwrap();
        }
        let mut key = Rank::first();
        for n in 0..5000 {
            assert_eq!(key, Rank::from_i64(-n), "{}", -n);
            key = Rank::between(None, Some(&key)).unwrap();
        }
        let samples = [
            i64::MIN,
            i64::MIN + 1,
            -3_844_000,
            -62,
            -61,
            -1,
            0,
            1,
            61,
            62,
            3_906,
            3_907,
            i64::MAX - 1,
            i64::MAX,
        ];
        for w in samples.windows(2) {
            let (a, b) = (Rank::from_i64(w[0]), Rank::from_i64(w[1]));
            assert!(a < b, "{} -> {a:?} is not below {} -> {b:?}", w[0], w[1]);
            assert!(Rank::parse(a.as_str()).is_ok(), "{a:?}");
        }
    }

    #[test]
    fn integers_and_keys_both_deserialize() {
        let r: Rank = serde_json::from_str("3").unwrap();
        assert_eq!(r, k("a3"));
        let r: Rank = serde_json::from_str("-1").unwrap();
        assert_eq!(r, k("Zz"));
        let r: Rank = serde_json::from_str(r#""a0V""#).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), r#""a0V""#);
        assert!(serde_json::from_str::<Rank>(r#""a0 ""#).is_err());
        assert!(serde_json::from_str::<Rank>("1.5").is_err());
    }

    /// Squeezing keys into one gap again and again stays ordered until the key is full, which
    /// is said, never wrong.
    #[test]
    fn repeated_insertion_into_one_gap_stays_ordered() {
        let (lo, mut hi) = (k("a0"), k("a1"));
        let mut made = 0;
        loop {
            match Rank::between(Some(&lo), Some(&hi)) {
                Ok(mid) => {
                    assert!(lo < mid && mid < hi, "{lo:?} < {mid:?} < {hi:?}");
                    assert!(Rank::parse(mid.as_str()).is_ok());
                    hi = mid;
                    made += 1;
                }
                Err(e) => {
                    assert_eq!(e, RankError::Full);
                    break;
                }
            }
        }
        assert!(made > 500, "only {made} insertions fit");
    }
}
