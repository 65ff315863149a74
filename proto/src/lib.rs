//! Generated wire and record types of the ISMS network; everything else converts at this edge.

/// Generated code, nested as the protobuf packages are so cross-package paths resolve.
/// Generated code is not restyled: an envelope's directive is larger than its status report.
#[allow(clippy::large_enum_variant)]
pub mod isms {
    /// The link and operator protocol (`isms.v1`).
    pub mod v1 {
        tonic::include_proto!("isms.v1");
    }
    /// Records persisted in a node's store (`isms.record.v1`).
    pub mod record {
        pub mod v1 {
            tonic::include_proto!("isms.record.v1");
        }
    }
}

pub use isms::record::v1 as record;
pub use isms::v1;
