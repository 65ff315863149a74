//! How the store lays out what it keeps besides the callers' entries: the bounds that keep
//! sled from writing blobs, the reserved key range (`0xFF…`), and the header of a value
//! kept in pieces. See the crate's opening comment.

use crate::{Result, StoreError};

/// sled writes a page as a blob file only when its serialized size exceeds a quarter of a
/// log segment (512 KiB by default, so about 128 KiB). A leaf holds at most 17 entries (it
/// splits past 16) and an index node at most 257 keys, so entries under these bounds can
/// never make one: 17 × 7 KiB and 257 × 264 B both stay well under 128 KiB.
pub(crate) const BLOB_SAFE_ENTRY: usize = 7 << 10;
pub(crate) const BLOB_SAFE_KEY: usize = 256;
/// Where a store remembers, in a tree of its own, that it was once given such an entry (a
/// leaf written inline may still become a blob when sled rewrites it later, in any run), and
/// that it has checked every entry since it was created; a store that has not counts as
/// given one.
pub(crate) const META_TREE: &str = "isms-store";
pub(crate) const LARGE_KEY: &[u8] = b"large-entries";
pub(crate) const TRACKED_KEY: &[u8] = b"entry-sizes-tracked";

/// The first byte of the store's own keys, and of values it wrote in place of the caller's.
pub(crate) const RESERVED: u8 = 0xFF;
/// Key `FF 00 <key>`: that key's value is in pieces. Value tag `FF 00`: the caller's value follows.
pub(crate) const SPILLED_TAG: u8 = 0;
pub(crate) const ESCAPED_TAG: u8 = 0;
/// Key `FF 01 <id> <index>`: a piece. Value tag `FF 01`: a header ([`Header`]) follows.
pub(crate) const PIECE_TAG: u8 = 1;
pub(crate) const HEADER_TAG: u8 = 1;
/// Key `FF 02`: how far the store's values are converted to this format.
pub(crate) const FORMAT_KEY: &[u8] = &[RESERVED, 2];
/// Values that start with `0xFF` are escaped.
pub(crate) const FORMAT_ESCAPED: u8 = 1;
/// ... and no value makes its entry larger than [`BLOB_SAFE_ENTRY`].
pub(crate) const FORMAT_PIECES: u8 = 2;
/// The size of a piece: with its 14-byte key, well within [`BLOB_SAFE_ENTRY`].
pub(crate) const PIECE: usize = 6 << 10;
/// A value goes to pieces when its entry would be larger than this (the 2 leaves room for
/// an escape tag).
pub(crate) const INLINE_ENTRY: usize = BLOB_SAFE_ENTRY - 2;

/// Where a value stored in pieces is: `len` bytes in `count` pieces under `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) len: u64,
    pub(crate) id: u64,
    pub(crate) count: u32,
}

impl Header {
    pub(crate) const SIZE: usize = 2 + 8 + 8 + 4;

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::SIZE);
        v.extend_from_slice(&[RESERVED, HEADER_TAG]);
        v.extend_from_slice(&self.len.to_be_bytes());
        v.extend_from_slice(&self.id.to_be_bytes());
        v.extend_from_slice(&self.count.to_be_bytes());
        v
    }

    /// Reads a header after its tag.
    pub(crate) fn decode(b: &[u8]) -> Option<Header> {
        if b.len() != Self::SIZE - 2 {
            return None;
        }
        Some(Header {
            len: u64::from_be_bytes(b[..8].try_into().ok()?),
            id: u64::from_be_bytes(b[8..16].try_into().ok()?),
            count: u32::from_be_bytes(b[16..].try_into().ok()?),
        })
    }
}

/// How a value is held under its key.
pub(crate) enum Stored<'a> {
    Inline(&'a [u8]),
    Pieces(Header),
}

pub(crate) fn stored<'a>(key: &[u8], raw: &'a [u8]) -> Result<Stored<'a>> {
    match raw {
        [RESERVED, ESCAPED_TAG, rest @ ..] => Ok(Stored::Inline(rest)),
        [RESERVED, HEADER_TAG, rest @ ..] => {
            Header::decode(rest).map(Stored::Pieces).ok_or_else(|| {
                StoreError::corrupt(key, "the header of a value in pieces is malformed")
            })
        }
        [RESERVED, ..] => Err(StoreError::corrupt(key, "unknown value tag")),
        _ => Ok(Stored::Inline(raw)),
    }
}

/// A caller's value that starts with `0xFF`, as stored.
pub(crate) fn escaped(value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 + value.len());
    v.extend_from_slice(&[RESERVED, ESCAPED_TAG]);
    v.extend_from_slice(value);
    v
}

pub(crate) fn spilled_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + key.len());
    k.extend_from_slice(&[RESERVED, SPILLED_TAG]);
    k.extend_from_slice(key);
    k
}

pub(crate) fn piece_key(id: u64, index: u32) -> [u8; 14] {
    let mut k = [0u8; 14];
    k[0] = RESERVED;
    k[1] = PIECE_TAG;
    k[2..10].copy_from_slice(&id.to_be_bytes());
    k[10..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The end of the callers' range.
pub(crate) const CALLERS_END: &[u8] = &[RESERVED];
