//! The object layer: how sealgate stores an object in the store and reads it back. The S3
//! handlers (`crate::s3`) call this layer and never each other; this layer calls the
//! store client (`crate::upstream`), the data-key providers and the pure format code
//! (`crate::crypto`). Every persisted-format constant lives in `crypto::format`.
//!
//! - [`envelope`]: the data key as stored (wrapped, with what it was wrapped for); new,
//!   open, re-wrap.
//! - [`customer`]: SSE-C keys: their salted check, the DEK wrapped under them.
//! - [`meta`]: the object's sealgate metadata, its MAC, reading and writing it.
//! - [`read`]: ciphertext ranges from the store, decrypted and authenticated.
//! - [`write`]: the sealing transforms for single-part objects and parts.
//! - [`upload`]: upload-id tokens and the part list at completion.
//! - [`paging`]: following the store's listings page by page.
//!
//! Invariants: no plaintext of an encrypted object is ever handed to the store, and no
//! byte that failed authentication is ever handed up; data that fails authentication is
//! [`Error::Tampered`](crate::error::Error::Tampered).

pub mod checksum;
pub mod customer;
pub mod describe;
pub mod envelope;
pub mod known;
pub mod manifest;
pub mod meta;
pub mod paging;
pub mod read;
pub mod upload;
pub mod write;

use futures::stream::BoxStream;

use crate::keys::Backends;
use crate::metrics::SharedMetrics;
use crate::upstream::Upstream;

pub use customer::CustomerKey;
pub use envelope::{Alg, Envelope, Sse};
pub use meta::{ETag, ObjectMeta};
pub use upload::UploadToken;

/// A stream of body bytes (plaintext or ciphertext).
pub type ByteStream = BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

/// What the object layer works with: the store, the data-key providers, the metrics.
#[derive(Debug)]
pub struct Objects {
    pub store: Upstream,
    pub keys: Backends,
    pub metrics: SharedMetrics,
    /// Plaintext sizes and client ETags of stored versions seen (listings use it).
    pub known: known::KnownObjects,
    /// sealgate's bucket in the store (upload records, part lists, bucket rules).
    pub state_bucket: String,
    /// Recently read part lists of multipart objects.
    pub manifests: manifest::Manifests,
}

/// One object (version) as the store addresses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
}

impl ObjectRef {
    pub fn new(bucket: &str, key: &str) -> ObjectRef {
        ObjectRef {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: None,
        }
    }

    /// The `x-amz-copy-source` value that names this object (version) to the store.
    pub fn copy_source_header(&self) -> String {
        use crate::upstream::sign::uri_encode;
        let mut s = format!(
            "/{}/{}",
            uri_encode(&self.bucket, false),
            uri_encode(&self.key, true)
        );
        if let Some(v) = &self.version_id {
            s.push_str("?versionId=");
            s.push_str(&uri_encode(v, false));
        }
        s
    }

    /// The query that names this version in a store request.
    pub fn query(&self) -> Vec<(String, String)> {
        self.version_id
            .iter()
            .map(|v| ("versionId".to_string(), v.clone()))
            .collect()
    }
}
