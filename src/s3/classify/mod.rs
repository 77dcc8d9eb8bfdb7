//! Request classification: which S3 operation a request is, and what sealgate does with it.
//!
//! Invariants:
//! - Every operation sealgate recognises appears exactly once in [`TABLE`] with a [`Class`].
//! - A request is classified as a pass-through operation only when its method, path shape
//!   and sub-resource query keys identify that operation unambiguously. Anything else —
//!   an unknown sub-resource, an unknown query key, a method with no operation — is
//!   [`Class::Reject`]ed, so nothing that could carry object bytes slips through unencrypted.
//! - Classification is a pure function of method, path shape, query keys and the
//!   `x-amz-copy-source` header, so it is table-tested below.

use http::{HeaderMap, Method};

/// What sealgate does with an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Touches object bytes or sizes: handled by a sealgate handler (put.rs, get.rs, ...).
    Transform,
    /// Forwarded to the store unchanged (re-signed), on the explicit allow-list.
    Pass,
    /// Owned by sealgate (answered from sealgate's own state, never forwarded).
    Owned,
    /// Known, but refused with NotImplemented (e.g. it would expose or accept bytes
    /// sealgate cannot transform).
    Reject,
}

macro_rules! ops {
    ($($name:ident => $class:ident,)*) => {
        /// Every S3 operation sealgate knows of.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Op { $($name,)* }

        /// The one table: every operation and its class.
        pub const TABLE: &[(Op, Class)] = &[$((Op::$name, Class::$class),)*];

        impl Op {
            pub fn name(self) -> &'static str {
                match self { $(Op::$name => stringify!($name),)* }
            }
        }
    };
}

ops! {
    // Object bytes and sizes: transformed by sealgate.
    PutObject => Transform,
    GetObject => Transform,
    HeadObject => Transform,
    CopyObject => Transform,
    CreateMultipartUpload => Transform,
    UploadPart => Transform,
    UploadPartCopy => Transform,
    CompleteMultipartUpload => Transform,
    ListParts => Transform,
    ListObjects => Transform,
    ListObjectsV2 => Transform,
    ListObjectVersions => Transform,
    GetObjectAttributes => Transform,
    // Browser form uploads: answered by the listener (`s3/post`), encrypted as a PUT.
    PostObject => Transform,
    // Bucket default encryption is sealgate's own setting.
    PutBucketEncryption => Owned,
    GetBucketEncryption => Owned,
    DeleteBucketEncryption => Owned,
    // Allow-listed pass-through: no object bytes, no sizes.
    ListBuckets => Pass,
    CreateBucket => Pass,
    DeleteBucket => Pass,
    HeadBucket => Pass,
    GetBucketLocation => Pass,
    DeleteObject => Pass,
    DeleteObjects => Pass,
    AbortMultipartUpload => Transform,
    ListMultipartUploads => Transform,
    GetObjectTagging => Pass,
    PutObjectTagging => Pass,
    DeleteObjectTagging => Pass,
    GetObjectAcl => Pass,
    PutObjectAcl => Pass,
    GetObjectRetention => Pass,
    PutObjectRetention => Pass,
    GetObjectLegalHold => Pass,
    PutObjectLegalHold => Pass,
    GetBucketTagging => Pass,
    PutBucketTagging => Pass,
    DeleteBucketTagging => Pass,
    GetBucketAcl => Pass,
    PutBucketAcl => Pass,
    GetBucketVersioning => Pass,
    PutBucketVersioning => Pass,
    GetBucketCors => Pass,
    PutBucketCors => Pass,
    DeleteBucketCors => Pass,
    GetBucketLifecycleConfiguration => Pass,
    PutBucketLifecycleConfiguration => Pass,
    DeleteBucketLifecycle => Pass,
    GetBucketPolicy => Pass,
    PutBucketPolicy => Pass,
    DeleteBucketPolicy => Pass,
    GetBucketPolicyStatus => Pass,
    GetBucketWebsite => Pass,
    PutBucketWebsite => Pass,
    DeleteBucketWebsite => Pass,
    GetObjectLockConfiguration => Pass,
    PutObjectLockConfiguration => Pass,
    GetBucketOwnershipControls => Pass,
    PutBucketOwnershipControls => Pass,
    DeleteBucketOwnershipControls => Pass,
    GetPublicAccessBlock => Pass,
    PutPublicAccessBlock => Pass,
    DeletePublicAccessBlock => Pass,
    GetBucketRequestPayment => Pass,
    GetBucketLogging => Pass,
    GetBucketNotificationConfiguration => Pass,
    GetBucketAccelerateConfiguration => Pass,
    // Known but refused: they read or write object bytes in ways sealgate cannot
    // transform, or would send store-side configuration sealgate cannot vouch for.
    SelectObjectContent => Reject,
    RestoreObject => Reject,
    GetObjectTorrent => Reject,
    WriteGetObjectResponse => Reject,
    PutBucketReplication => Reject,
    GetBucketReplication => Reject,
    DeleteBucketReplication => Reject,
    PutBucketNotificationConfiguration => Reject,
    PutBucketLogging => Reject,
    PutBucketRequestPayment => Reject,
    PutBucketAccelerateConfiguration => Reject,
    PutBucketAnalyticsConfiguration => Reject,
    GetBucketAnalyticsConfiguration => Reject,
    DeleteBucketAnalyticsConfiguration => Reject,
    ListBucketAnalyticsConfigurations => Reject,
    PutBucketInventoryConfiguration => Reject,
    GetBucketInventoryConfiguration => Reject,
    DeleteBucketInventoryConfiguration => Reject,
    ListBucketInventoryConfigurations => Reject,
    PutBucketMetricsConfiguration => Reject,
    GetBucketMetricsConfiguration => Reject,
    DeleteBucketMetricsConfiguration => Reject,
    ListBucketMetricsConfigurations => Reject,
    PutBucketIntelligentTieringConfiguration => Reject,
    GetBucketIntelligentTieringConfiguration => Reject,
    DeleteBucketIntelligentTieringConfiguration => Reject,
    ListBucketIntelligentTieringConfigurations => Reject,
}

impl Op {
    pub fn class(self) -> Class {
        TABLE
            .iter()
            .find(|(op, _)| *op == self)
            .map(|(_, c)| *c)
            .unwrap_or(Class::Reject)
    }
}

/// The shape of the request path after bucket/key extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Service,
    Bucket,
    Object,
}

/// Why a request could not be classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unclassified {
    /// A query key that is neither a known sub-resource nor a known parameter.
    UnknownQueryKey(String),
    /// The method/shape/sub-resource combination names no operation sealgate knows.
    NoOperation,
}

/// Query keys that are ordinary parameters (never select an operation).
const PARAMS: &[&str] = &[
    "x-id",
    "versionId",
    "prefix",
    "delimiter",
    "marker",
    "max-keys",
    "encoding-type",
    "fetch-owner",
    "start-after",
    "continuation-token",
    "key-marker",
    "version-id-marker",
    "upload-id-marker",
    "max-uploads",
    "max-parts",
    "part-number-marker",
    "partNumber",
    "response-content-type",
    "response-content-language",
    "response-expires",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "max-buckets",
    "bucket-region",
    "x-amz-expected-bucket-owner",
    "id",
    "optional-object-attributes",
    // Ceph RGW's unordered listing (AWS ignores it; see request.rs).
    "allow-unordered",
    // SigV4 presigned URL parameters (verified by s3s, stripped before forwarding).
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "X-Amz-Content-Sha256",
    // SigV2 presigned URL parameters (aws-cli v1 `s3 presign`), also verified by s3s.
    "AWSAccessKeyId",
    "Signature",
    "Expires",
];

/// Query keys that select an operation.
const SUBRESOURCES: &[&str] = &[
    "acl",
    "tagging",
    "uploads",
    "uploadId",
    "attributes",
    "retention",
    "legal-hold",
    "torrent",
    "select",
    "select-type",
    "restore",
    "delete",
    "encryption",
    "cors",
    "lifecycle",
    "location",
    "logging",
    "notification",
    "policy",
    "policyStatus",
    "replication",
    "requestPayment",
    "versioning",
    "versions",
    "website",
    "object-lock",
    "ownershipControls",
    "publicAccessBlock",
    "accelerate",
    "analytics",
    "intelligent-tiering",
    "inventory",
    "metrics",
    "list-type",
    "session",
];

/// Classifies a request. `query_keys` are the decoded keys of the query string.
pub fn classify<'a>(
    method: &Method,
    shape: Shape,
    query_keys: impl IntoIterator<Item = &'a str>,
    headers: &HeaderMap,
) -> Result<Op, Unclassified> {
    let mut sub: Vec<&str> = Vec::new();
    let mut has_part_number = false;
    for k in query_keys {
        if SUBRESOURCES.contains(&k) {
            if !sub.contains(&k) {
                sub.push(k);
            }
        } else if PARAMS.contains(&k) {
            has_part_number |= k == "partNumber";
        } else {
            return Err(Unclassified::UnknownQueryKey(k.to_string()));
        }
    }
    sub.sort_unstable();
    let copy = headers.contains_key("x-amz-copy-source");
    use Op::*;
    let m = method.as_str();
    let op = match (shape, m, sub.as_slice()) {
        (Shape::Service, "GET", []) => ListBuckets,

        (Shape::Bucket, "GET", []) => ListObjects,
        (Shape::Bucket, "GET", ["list-type"]) => ListObjectsV2,
        (Shape::Bucket, "GET", ["versions"]) => ListObjectVersions,
        (Shape::Bucket, "GET", ["uploads"]) => ListMultipartUploads,
        (Shape::Bucket, "GET", [s]) => match *s {
            "acl" => GetBucketAcl,
            "cors" => GetBucketCors,
            "encryption" => GetBucketEncryption,
            "lifecycle" => GetBucketLifecycleConfiguration,
            "location" => GetBucketLocation,
            "logging" => GetBucketLogging,
            "notification" => GetBucketNotificationConfiguration,
            "policy" => GetBucketPolicy,
            "policyStatus" => GetBucketPolicyStatus,
            "replication" => GetBucketReplication,
            "requestPayment" => GetBucketRequestPayment,
            "tagging" => GetBucketTagging,
            "versioning" => GetBucketVersioning,
            "website" => GetBucketWebsite,
            "object-lock" => GetObjectLockConfiguration,
            "ownershipControls" => GetBucketOwnershipControls,
            "publicAccessBlock" => GetPublicAccessBlock,
            "accelerate" => GetBucketAccelerateConfiguration,
            "analytics" => GetBucketAnalyticsConfiguration,
            "intelligent-tiering" => GetBucketIntelligentTieringConfiguration,
            "inventory" => GetBucketInventoryConfiguration,
            "metrics" => GetBucketMetricsConfiguration,
            _ => return Err(Unclassified::NoOperation),
        },
        (Shape::Bucket, "HEAD", []) => HeadBucket,
        (Shape::Bucket, "PUT", []) => CreateBucket,
        (Shape::Bucket, "PUT", [s]) => match *s {
            "acl" => PutBucketAcl,
            "cors" => PutBucketCors,
            "encryption" => PutBucketEncryption,
            "lifecycle" => PutBucketLifecycleConfiguration,
            "logging" => PutBucketLogging,
            "notification" => PutBucketNotificationConfiguration,
            "policy" => PutBucketPolicy,
            "replication" => PutBucketReplication,
            "requestPayment" => PutBucketRequestPayment,
            "tagging" => PutBucketTagging,
            "versioning" => PutBucketVersioning,
            "website" => PutBucketWebsite,
            "object-lock" => PutObjectLockConfiguration,
            "ownershipControls" => PutBucketOwnershipControls,
            "publicAccessBlock" => PutPublicAccessBlock,
            "accelerate" => PutBucketAccelerateConfiguration,
            "analytics" => PutBucketAnalyticsConfiguration,
            "intelligent-tiering" => PutBucketIntelligentTieringConfiguration,
            "inventory" => PutBucketInventoryConfiguration,
            "metrics" => PutBucketMetricsConfiguration,
            _ => return Err(Unclassified::NoOperation),
        },
        (Shape::Bucket, "DELETE", []) => DeleteBucket,
        (Shape::Bucket, "DELETE", [s]) => match *s {
            "cors" => DeleteBucketCors,
            "encryption" => DeleteBucketEncryption,
            "lifecycle" => DeleteBucketLifecycle,
            "policy" => DeleteBucketPolicy,
            "replication" => DeleteBucketReplication,
            "tagging" => DeleteBucketTagging,
            "website" => DeleteBucketWebsite,
            "ownershipControls" => DeleteBucketOwnershipControls,
            "publicAccessBlock" => DeletePublicAccessBlock,
            "analytics" => DeleteBucketAnalyticsConfiguration,
            "intelligent-tiering" => DeleteBucketIntelligentTieringConfiguration,
            "inventory" => DeleteBucketInventoryConfiguration,
            "metrics" => DeleteBucketMetricsConfiguration,
            _ => return Err(Unclassified::NoOperation),
        },
        (Shape::Bucket, "POST", ["delete"]) => DeleteObjects,
        (Shape::Bucket, "POST", []) => PostObject,

        (Shape::Object, "GET", []) => GetObject,
        (Shape::Object, "GET", [s]) => match *s {
            "acl" => GetObjectAcl,
            "tagging" => GetObjectTagging,
            "uploadId" => ListParts,
            "attributes" => GetObjectAttributes,
            "retention" => GetObjectRetention,
            "legal-hold" => GetObjectLegalHold,
            "torrent" => GetObjectTorrent,
            _ => return Err(Unclassified::NoOperation),
        },
        (Shape::Object, "HEAD", []) => HeadObject,
        (Shape::Object, "PUT", []) if copy => CopyObject,
        (Shape::Object, "PUT", []) => PutObject,
        (Shape::Object, "PUT", ["uploadId"]) if has_part_number && copy => UploadPartCopy,
        (Shape::Object, "PUT", ["uploadId"]) if has_part_number => UploadPart,
        (Shape::Object, "PUT", [s]) => match *s {
            "acl" => PutObjectAcl,
            "tagging" => PutObjectTagging,
            "retention" => PutObjectRetention,
            "legal-hold" => PutObjectLegalHold,
            _ => return Err(Unclassified::NoOperation),
        },
        (Shape::Object, "DELETE", []) => DeleteObject,
        (Shape::Object, "DELETE", ["uploadId"]) => AbortMultipartUpload,
        (Shape::Object, "DELETE", ["tagging"]) => DeleteObjectTagging,
        (Shape::Object, "POST", ["uploads"]) => CreateMultipartUpload,
        (Shape::Object, "POST", ["uploadId"]) => CompleteMultipartUpload,
        (Shape::Object, "POST", ["restore"]) => RestoreObject,
        (Shape::Object, "POST", ["select", "select-type"]) => SelectObjectContent,
        _ => return Err(Unclassified::NoOperation),
    };
    Ok(op)
}

#[cfg(test)]
mod tests;
