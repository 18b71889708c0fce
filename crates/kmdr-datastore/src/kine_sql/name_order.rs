//! When kine's MySQL name index is already in key byte order.
//!
//! kine creates its name column `VARCHAR(630) CHARACTER SET ascii`, so the
//! column collates as `ascii_general_ci`: letters compare by their upper
//! case, and trailing spaces are ignored. Its index on `(name, id)` is in
//! that order, not in the byte order the record stream needs (`/registry/B`
//! sorts before `/registry/_x` and `/registry/a` in bytes, after both in the
//! index). Sorting on the server means sorting every row with its value.
//!
//! But on the bytes `!`..`@` and `a`..`~` (no upper-case letter, none of
//! ``[\]^_` ``, no space or control byte), the collation's weight is one to
//! one and in byte order: `!`..`@` weigh as themselves, `a`..`z` as `A`..`Z`,
//! `{`..`~` as themselves. So among names made only of those bytes
//! ([`index_ordered`]) the index order *is* byte order, and the export reads
//! them straight off the index as a stream. The few others (Kubernetes names
//! are lower-case DNS labels; `compact_rev_key` is one) are found first with a
//! keys-only scan of the same index ([`ODD_NAMES_REGEXP`]), held apart in
//! byte order, and merged in. The binary collations order every name by its
//! bytes, which keeps the same split correct. Under any other collation the
//! export falls back to reading in id order and sorting in a spill file.

/// The collations of the name column under which [`index_ordered`] names come
/// off its index in byte order.
pub const STREAMED_COLLATIONS: &[&str] =
    &["ascii_general_ci", "ascii_general_nopad_ci", "ascii_bin", "ascii_nopad_bin"];

/// Matches (on `CAST(name AS BINARY)`) exactly the names that are not
/// [`index_ordered`].
pub const ODD_NAMES_REGEXP: &str = "[^!-@a-~]";

/// At most this many rows of names that are not [`index_ordered`] are held
/// apart for the merge (their names in memory, their values in a spill file);
/// a table with more is read in id order and sorted instead.
pub const MAX_ODD_ROWS: usize = 100_000;

/// True when `name` holds only bytes whose `ascii_general_ci` weight is in
/// byte order: `!`..`@` and `a`..`~`.
pub fn index_ordered(name: &[u8]) -> bool {
    name.iter().all(|&b| matches!(b, b'!'..=b'@' | b'a'..=b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ascii_general_ci`'s weight of a byte: upper case for letters.
    fn weight(name: &[u8]) -> Vec<u8> {
        name.to_ascii_uppercase()
    }

    #[test]
    fn on_index_ordered_names_the_collation_order_is_byte_order() {
        let ordered: Vec<u8> = (0u8..=0x7f).filter(|b| index_ordered(&[*b])).collect();
        assert_eq!(ordered.len(), 32 + 30, "! to @ and a to ~");
        // Every pair of names of up to two such bytes: same order both ways.
        let mut names: Vec<Vec<u8>> = vec![vec![]];
        for &a in &ordered {
            names.push(vec![a]);
            for &b in &ordered {
                names.push(vec![a, b]);
            }
        }
        for x in &names {
            for y in &names {
                assert_eq!(weight(x).cmp(&weight(y)), x.cmp(y), "{x:?} {y:?}");
            }
        }
    }

    #[test]
    fn the_others_are_upper_case_brackets_underscore_backquote_space_and_controls() {
        for b in [b'A', b'Z', b'[', b'\\', b']', b'^', b'_', b'`', b' ', b'\t', 0x7f] {
            assert!(!index_ordered(&[b'/', b]), "{b:#x}");
        }
        assert!(index_ordered(b"/registry/pods/kube-system/coredns-5d78c9869d-x.y:z~{|}"));
        assert!(!index_ordered(b"compact_rev_key"));
        // The pattern is the complement of the same two ranges.
        assert_eq!(ODD_NAMES_REGEXP, "[^!-@a-~]");
    }
}
