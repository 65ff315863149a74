//! What a peer sends about blacklists, checked before anything is written: a child's
//! resync ask and a parent's answer parts. Must not read or write the store.

use super::*;
use isms_proto::v1::RuleKind;

/// Most parts of one resync answer: 500 M rules.
const MAX_PARTS: u32 = 65_536;

/// A resync ask from a child, checked before anything is written.
pub(crate) fn check_resync(ask: &BlacklistResync) -> Result<(), NodeError> {
    ask.issuer.parse::<NodeId>().map_err(|_| {
        NodeError::Protocol(format!(
            "blacklist resync for issuer {:?}, no node ID",
            ask.issuer
        ))
    })?;
    Ok(())
}

/// A part of a resync answer from the parent, checked before anything is written: its
/// place among its parts, its checksum's length, and every entry's kind and sources.
pub(crate) fn check_chunk(chunk: &BlacklistChunk) -> Result<(), NodeError> {
    let bad = |why: String| {
        Err(NodeError::Protocol(format!(
            "blacklist part {} of answer {:?}: {why}",
            chunk.index, chunk.answer
        )))
    };
    if chunk.issuer.parse::<NodeId>().is_err() {
        return bad(format!("issuer {:?} is no node ID", chunk.issuer));
    }
    if uuid::Uuid::parse_str(&chunk.answer).is_err() {
        return bad("the answer's ID is no UUID".into());
    }
    if chunk.count == 0 || chunk.count > MAX_PARTS || chunk.index >= chunk.count {
        return bad(format!("part {} of {} parts", chunk.index, chunk.count));
    }
    if chunk.sha256.len() != 32 {
        return bad(format!("a checksum of {} bytes", chunk.sha256.len()));
    }
    for entry in &chunk.entries {
        if !matches!(
            RuleKind::try_from(entry.kind),
            Ok(RuleKind::BlockDomain | RuleKind::BlockUrl | RuleKind::BlockIp | RuleKind::Keyword)
        ) {
            return bad(format!("an entry of kind {}", entry.kind));
        }
        if entry.sources.is_empty()
            || entry
                .sources
                .iter()
                .any(|&i| i as usize >= chunk.sources.len())
        {
            return bad("an entry names a source the part does not hold".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk() -> BlacklistChunk {
        BlacklistChunk {
            issuer: "ministry".into(),
            answer: uuid::Uuid::now_v7().to_string(),
            version: 3,
            sha256: vec![7; 32],
            index: 0,
            count: 1,
            entries: vec![BlacklistEntry {
                kind: RuleKind::BlockDomain as i32,
                value: b"bad.example".to_vec(),
                sources: vec![0],
            }],
            sources: vec![BlacklistSource {
                directive_id: uuid::Uuid::now_v7().to_string(),
                version: 3,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_resync_answer_part_of_a_bad_form_is_refused_naming_what_is_wrong() {
        assert!(check_chunk(&chunk()).is_ok());
        let cases: Vec<(BlacklistChunk, &str)> = vec![
            (
                BlacklistChunk {
                    issuer: "nobody".into(),
                    ..chunk()
                },
                "no node ID",
            ),
            (
                BlacklistChunk {
                    answer: "x".into(),
                    ..chunk()
                },
                "no UUID",
            ),
            (
                BlacklistChunk {
                    count: 0,
                    ..chunk()
                },
                "part 0 of 0",
            ),
            (
                BlacklistChunk {
                    index: 1,
                    ..chunk()
                },
                "part 1 of 1",
            ),
            (
                BlacklistChunk {
                    count: MAX_PARTS + 1,
                    ..chunk()
                },
                "parts",
            ),
            (
                BlacklistChunk {
                    sha256: vec![1; 5],
                    ..chunk()
                },
                "checksum of 5 bytes",
            ),
            (
                BlacklistChunk {
                    sources: Vec::new(),
                    ..chunk()
                },
                "names a source",
            ),
            (
                BlacklistChunk {
                    entries: vec![BlacklistEntry {
                        kind: 0,
                        value: b"x".to_vec(),
                        sources: vec![0],
                    }],
                    ..chunk()
                },
                "of kind 0",
            ),
        ];
        for (c, why) in cases {
            let err = check_chunk(&c).expect_err(why).to_string();
            assert!(err.contains(why), "{err} lacks {why}");
        }
        assert!(
            check_resync(&BlacklistResync {
                issuer: "ministry".into(),
                ..Default::default()
            })
            .is_ok()
        );
        assert!(check_resync(&BlacklistResync::default()).is_err());
    }
}
