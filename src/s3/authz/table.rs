//! Which IAM actions an S3 operation needs, on which resources: one row per operation
//! of `classify::TABLE` ([`row`], an exhaustive match, so an operation added there does
//! not build until it has a row here), and the checks of one request ([`checks`]).
//!
//! Sources: AWS's "Required permissions for Amazon S3 API operations" and the Service
//! Authorization Reference for S3 (docs/operations.md, "Authorization between
//! principals", summarises the table for operators).
//!
//! Invariants: action names are AWS's, in AWS's casing; a request's checks are listed
//! primary action first (the order AccessDenied messages follow); with `versionId` the
//! `...Version` action replaces the plain one (AWS requires only the version action);
//! the version is never part of an ARN.

use http::HeaderMap;

use super::super::classify::Op;
use super::super::request::Request;
use crate::error::Error;

/// What an action is checked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// No resource (ListAllMyBuckets): checked against `arn:aws:s3:::*`, and the message
    /// names no resource.
    Service,
    /// `arn:aws:s3:::BUCKET`.
    Bucket,
    /// `arn:aws:s3:::BUCKET/KEY`.
    Object,
    /// Each `<Object>` of a DeleteObjects body, checked one by one.
    EachKey,
    /// The key of a browser form upload (its `key` field), known only once the form is
    /// read.
    FormKey,
}

/// Header-dependent extra actions (AWS: "you also need ... if you send ...").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    None,
    /// ACL, tagging and Object Lock headers of an object write.
    ObjectWrite,
    /// ACL, Object Lock and ownership headers of CreateBucket.
    CreateBucket,
    /// `x-amz-bypass-governance-retention: true`.
    Bypass,
}

/// One operation's permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub action: &'static str,
    /// The action instead of `action` when the request has `versionId`.
    pub versioned: Option<&'static str>,
    /// Further actions always needed on the same resource.
    pub also: &'static [&'static str],
    /// `also` when the request has `versionId`.
    pub also_versioned: &'static [&'static str],
    pub on: On,
    /// Whether reading the copy source (`x-amz-copy-source`) is checked too.
    pub copy_source: bool,
    pub extra: Extra,
}

const fn r(action: &'static str, on: On) -> Row {
    Row {
        action,
        versioned: None,
        also: &[],
        also_versioned: &[],
        on,
        copy_source: false,
        extra: Extra::None,
    }
}

const fn v(action: &'static str, versioned: &'static str) -> Row {
    Row {
        versioned: Some(versioned),
        ..r(action, On::Object)
    }
}

const fn bucket(action: &'static str) -> Row {
    r(action, On::Bucket)
}

const fn object(action: &'static str) -> Row {
    r(action, On::Object)
}

const fn with(row: Row, extra: Extra) -> Row {
    Row { extra, ..row }
}

/// The permissions of `op`.
pub const fn row(op: Op) -> Row {
    use Op::*;
    match op {
        PutObject | CreateMultipartUpload => with(object("s3:PutObject"), Extra::ObjectWrite),
        UploadPart | CompleteMultipartUpload => object("s3:PutObject"),
        CopyObject => Row {
            copy_source: true,
            ..with(object("s3:PutObject"), Extra::ObjectWrite)
        },
        UploadPartCopy => Row {
            copy_source: true,
            ..object("s3:PutObject")
        },
        PostObject => r("s3:PutObject", On::FormKey),
        GetObject | HeadObject | SelectObjectContent => v("s3:GetObject", "s3:GetObjectVersion"),
        GetObjectAttributes => Row {
            also: &["s3:GetObjectAttributes"],
            also_versioned: &["s3:GetObjectVersionAttributes"],
            ..v("s3:GetObject", "s3:GetObjectVersion")
        },
        ListParts => object("s3:ListMultipartUploadParts"),
        AbortMultipartUpload => object("s3:AbortMultipartUpload"),
        DeleteObject => with(
            v("s3:DeleteObject", "s3:DeleteObjectVersion"),
            Extra::Bypass,
        ),
        DeleteObjects => with(
            Row {
                versioned: Some("s3:DeleteObjectVersion"),
                ..r("s3:DeleteObject", On::EachKey)
            },
            Extra::Bypass,
        ),
        GetObjectTagging => v("s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
        PutObjectTagging => v("s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
        DeleteObjectTagging => v("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
        GetObjectAcl => v("s3:GetObjectAcl", "s3:GetObjectVersionAcl"),
        PutObjectAcl => v("s3:PutObjectAcl", "s3:PutObjectVersionAcl"),
        GetObjectRetention => object("s3:GetObjectRetention"),
        PutObjectRetention => with(object("s3:PutObjectRetention"), Extra::Bypass),
        GetObjectLegalHold => object("s3:GetObjectLegalHold"),
        PutObjectLegalHold => object("s3:PutObjectLegalHold"),
        RestoreObject => object("s3:RestoreObject"),
        GetObjectTorrent => v("s3:GetObjectTorrent", "s3:GetObjectVersionTorrent"),
        WriteGetObjectResponse => r("s3-object-lambda:WriteGetObjectResponse", On::Service),

        ListBuckets => r("s3:ListAllMyBuckets", On::Service),
        CreateBucket => with(bucket("s3:CreateBucket"), Extra::CreateBucket),
        DeleteBucket => bucket("s3:DeleteBucket"),
        HeadBucket | ListObjects | ListObjectsV2 => bucket("s3:ListBucket"),
        ListObjectVersions => bucket("s3:ListBucketVersions"),
        ListMultipartUploads => bucket("s3:ListBucketMultipartUploads"),
        GetBucketLocation => bucket("s3:GetBucketLocation"),
        GetBucketEncryption => bucket("s3:GetEncryptionConfiguration"),
        PutBucketEncryption | DeleteBucketEncryption => bucket("s3:PutEncryptionConfiguration"),
        GetBucketTagging => bucket("s3:GetBucketTagging"),
        PutBucketTagging | DeleteBucketTagging => bucket("s3:PutBucketTagging"),
        GetBucketAcl => bucket("s3:GetBucketAcl"),
        PutBucketAcl => bucket("s3:PutBucketAcl"),
        GetBucketVersioning => bucket("s3:GetBucketVersioning"),
        PutBucketVersioning => bucket("s3:PutBucketVersioning"),
        GetBucketCors => bucket("s3:GetBucketCORS"),
        PutBucketCors | DeleteBucketCors => bucket("s3:PutBucketCORS"),
        GetBucketLifecycleConfiguration => bucket("s3:GetLifecycleConfiguration"),
        PutBucketLifecycleConfiguration | DeleteBucketLifecycle => {
            bucket("s3:PutLifecycleConfiguration")
        }
        GetBucketPolicy => bucket("s3:GetBucketPolicy"),
        PutBucketPolicy => bucket("s3:PutBucketPolicy"),
        DeleteBucketPolicy => bucket("s3:DeleteBucketPolicy"),
        GetBucketPolicyStatus => bucket("s3:GetBucketPolicyStatus"),
        GetBucketWebsite => bucket("s3:GetBucketWebsite"),
        PutBucketWebsite => bucket("s3:PutBucketWebsite"),
        DeleteBucketWebsite => bucket("s3:DeleteBucketWebsite"),
        GetObjectLockConfiguration => bucket("s3:GetBucketObjectLockConfiguration"),
        PutObjectLockConfiguration => bucket("s3:PutBucketObjectLockConfiguration"),
        GetBucketOwnershipControls => bucket("s3:GetBucketOwnershipControls"),
        PutBucketOwnershipControls | DeleteBucketOwnershipControls => {
            bucket("s3:PutBucketOwnershipControls")
        }
        GetPublicAccessBlock => bucket("s3:GetBucketPublicAccessBlock"),
        PutPublicAccessBlock | DeletePublicAccessBlock => bucket("s3:PutBucketPublicAccessBlock"),
        GetBucketRequestPayment => bucket("s3:GetBucketRequestPayment"),
        PutBucketRequestPayment => bucket("s3:PutBucketRequestPayment"),
        GetBucketLogging => bucket("s3:GetBucketLogging"),
        PutBucketLogging => bucket("s3:PutBucketLogging"),
        GetBucketNotificationConfiguration => bucket("s3:GetBucketNotification"),
        PutBucketNotificationConfiguration => bucket("s3:PutBucketNotification"),
        GetBucketAccelerateConfiguration => bucket("s3:GetAccelerateConfiguration"),
        PutBucketAccelerateConfiguration => bucket("s3:PutAccelerateConfiguration"),
        GetBucketReplication => bucket("s3:GetReplicationConfiguration"),
        PutBucketReplication | DeleteBucketReplication => bucket("s3:PutReplicationConfiguration"),
        GetBucketAnalyticsConfiguration | ListBucketAnalyticsConfigurations => {
            bucket("s3:GetAnalyticsConfiguration")
        }
        PutBucketAnalyticsConfiguration | DeleteBucketAnalyticsConfiguration => {
            bucket("s3:PutAnalyticsConfiguration")
        }
        GetBucketInventoryConfiguration | ListBucketInventoryConfigurations => {
            bucket("s3:GetInventoryConfiguration")
        }
        PutBucketInventoryConfiguration | DeleteBucketInventoryConfiguration => {
            bucket("s3:PutInventoryConfiguration")
        }
        GetBucketMetricsConfiguration | ListBucketMetricsConfigurations => {
            bucket("s3:GetMetricsConfiguration")
        }
        PutBucketMetricsConfiguration | DeleteBucketMetricsConfiguration => {
            bucket("s3:PutMetricsConfiguration")
        }
        GetBucketIntelligentTieringConfiguration | ListBucketIntelligentTieringConfigurations => {
            bucket("s3:GetIntelligentTieringConfiguration")
        }
        PutBucketIntelligentTieringConfiguration | DeleteBucketIntelligentTieringConfiguration => {
            bucket("s3:PutIntelligentTieringConfiguration")
        }
    }
}

/// What one check is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Service,
    Bucket,
    /// The object the request names.
    Object,
    /// The source of CopyObject/UploadPartCopy.
    CopySource {
        bucket: String,
        key: String,
        version_id: Option<String>,
    },
    /// One key of a DeleteObjects body.
    DeleteKey {
        key: String,
        version_id: Option<String>,
    },
}

/// One (action, resource) a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub action: &'static str,
    pub target: Target,
    /// A listing check: sees `s3:prefix`, `s3:delimiter`, `s3:max-keys` (not the write
    /// headers).
    pub lists: bool,
}

impl Check {
    fn new(action: &'static str, target: Target) -> Check {
        let lists = matches!(action, "s3:ListBucket" | "s3:ListBucketVersions");
        Check {
            action,
            target,
            lists,
        }
    }

    #[cfg(test)]
    pub fn test_object(action: &'static str) -> Check {
        Check::new(action, Target::Object)
    }

    #[cfg(test)]
    pub fn test_list(action: &'static str) -> Check {
        Check::new(action, Target::Bucket)
    }

    /// The ARN this check is on (`arn:aws:s3:::*` for no resource).
    pub fn resource(&self, bucket: Option<&str>, key: Option<&str>) -> String {
        let b = bucket.unwrap_or_default();
        match &self.target {
            Target::Service => "arn:aws:s3:::*".to_string(),
            Target::Bucket => format!("arn:aws:s3:::{b}"),
            Target::Object => format!("arn:aws:s3:::{b}/{}", key.unwrap_or_default()),
            Target::CopySource { bucket, key, .. } => format!("arn:aws:s3:::{bucket}/{key}"),
            Target::DeleteKey { key, .. } => format!("arn:aws:s3:::{b}/{key}"),
        }
    }
}

fn has(h: &HeaderMap, name: &str) -> bool {
    h.contains_key(name)
}

fn is_true(h: &HeaderMap, name: &str) -> bool {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn any_grant(h: &HeaderMap) -> bool {
    h.keys().any(|k| k.as_str().starts_with("x-amz-grant-"))
}

/// Header-dependent actions on the request's own resource.
fn extra_actions(extra: Extra, op: Op, h: &HeaderMap) -> Vec<&'static str> {
    let mut out = Vec::new();
    match extra {
        Extra::None => {}
        Extra::ObjectWrite => {
            if has(h, "x-amz-acl") || any_grant(h) {
                out.push("s3:PutObjectAcl");
            }
            let replaces_tags = op != Op::CopyObject
                || h.get("x-amz-tagging-directive")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("REPLACE"));
            if has(h, "x-amz-tagging") && replaces_tags {
                out.push("s3:PutObjectTagging");
            }
            if has(h, "x-amz-object-lock-mode") || has(h, "x-amz-object-lock-retain-until-date") {
                out.push("s3:PutObjectRetention");
            }
            if has(h, "x-amz-object-lock-legal-hold") {
                out.push("s3:PutObjectLegalHold");
            }
        }
        Extra::CreateBucket => {
            let acl = h
                .get("x-amz-acl")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| !v.trim().eq_ignore_ascii_case("private"));
            if acl || any_grant(h) {
                out.push("s3:PutBucketAcl");
            }
            if is_true(h, "x-amz-bucket-object-lock-enabled") {
                out.push("s3:PutBucketObjectLockConfiguration");
                out.push("s3:PutBucketVersioning");
            }
            if has(h, "x-amz-object-ownership") {
                out.push("s3:PutBucketOwnershipControls");
            }
        }
        Extra::Bypass => {
            if is_true(h, "x-amz-bypass-governance-retention") {
                out.push("s3:BypassGovernanceRetention");
            }
        }
    }
    out
}

/// The checks of one DeleteObjects entry, in order.
pub fn delete_key_checks(key: &str, version_id: Option<&str>, h: &HeaderMap) -> Vec<Check> {
    let row = row(Op::DeleteObjects);
    let target = Target::DeleteKey {
        key: key.to_string(),
        version_id: version_id.map(str::to_string),
    };
    let action = match (version_id, row.versioned) {
        (Some(_), Some(a)) => a,
        _ => row.action,
    };
    std::iter::once(action)
        .chain(extra_actions(row.extra, Op::DeleteObjects, h))
        .map(|a| Check::new(a, target.clone()))
        .collect()
}

/// Every check `req` needs, primary action first. DeleteObjects has none here (its keys
/// are checked one by one, `delete_key_checks`).
pub fn checks(req: &Request, h: &HeaderMap) -> Result<Vec<Check>, Error> {
    let row = row(req.op);
    let versioned = req.version_id.is_some();
    let target = match row.on {
        On::Service => Target::Service,
        On::Bucket => Target::Bucket,
        On::Object => Target::Object,
        On::EachKey => return Ok(Vec::new()),
        On::FormKey => {
            // Fail closed: whoever implements POST uploads checks the form's key.
            return Err(Error::Internal(format!(
                "{} is authorized per form key; its handler must check it",
                req.op.name()
            )));
        }
    };
    let mut out = Vec::new();
    if row.copy_source
        && let Some(src) = &req.copy_source
    {
        let read = if src.version_id.is_some() {
            "s3:GetObjectVersion"
        } else {
            "s3:GetObject"
        };
        out.push(Check::new(
            read,
            Target::CopySource {
                bucket: src.bucket.clone(),
                key: src.key.clone(),
                version_id: src.version_id.clone(),
            },
        ));
    }
    let (action, also) = match (versioned, row.versioned) {
        (true, Some(a)) => (a, row.also_versioned),
        _ => (row.action, row.also),
    };
    // The destination first (the action the operation is named for), then the source.
    out.insert(0, Check::new(action, target.clone()));
    for a in also
        .iter()
        .copied()
        .chain(extra_actions(row.extra, req.op, h))
    {
        out.push(Check::new(a, target.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
