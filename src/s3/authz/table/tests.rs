//! The permission table against AWS's documented requirements, request by request.

use super::*;
use crate::s3::classify::{Class, Shape, TABLE};

fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> (Request, HeaderMap) {
    let (r, h) = crate::test_support::s3_request(method, uri, headers, true);
    (r.unwrap(), h)
}

fn actions(method: &str, uri: &str, headers: &[(&str, &str)]) -> Vec<(String, String)> {
    let (r, h) = req(method, uri, headers);
    checks(&r, &h)
        .unwrap()
        .iter()
        .map(|c| {
            (
                c.action.to_string(),
                c.resource(r.bucket.as_deref(), r.key.as_deref()),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Every operation sealgate classifies has a row whose action is an AWS S3 action
/// name and whose resource fits the operation's path shape.
#[test]
fn every_operation_has_a_row_that_fits_its_shape() {
    let service_ops = [Op::ListBuckets, Op::WriteGetObjectResponse];
    for (op, class) in TABLE {
        let row = row(*op);
        let name_ok = |a: &str| {
            let (svc, name) = a.split_once(':').unwrap();
            matches!(svc, "s3" | "s3-object-lambda")
                && name.chars().next().unwrap().is_ascii_uppercase()
                && name.chars().all(|c| c.is_ascii_alphanumeric())
        };
        assert!(name_ok(row.action), "{op:?}: {}", row.action);
        for a in row
            .versioned
            .iter()
            .chain(row.also)
            .chain(row.also_versioned)
        {
            assert!(name_ok(a), "{op:?}: {a}");
        }
        let name = op.name();
        let object_op = name.contains("Object")
            && !name.contains("ObjectLock")
            && !matches!(
                op,
                Op::ListObjects | Op::ListObjectsV2 | Op::ListObjectVersions
            )
            || matches!(
                op,
                Op::UploadPart
                    | Op::UploadPartCopy
                    | Op::CreateMultipartUpload
                    | Op::CompleteMultipartUpload
                    | Op::AbortMultipartUpload
                    | Op::ListParts
            );
        let want = if service_ops.contains(op) {
            vec![On::Service]
        } else if *op == Op::DeleteObjects {
            vec![On::EachKey]
        } else if *op == Op::PostObject {
            vec![On::FormKey]
        } else if object_op {
            vec![On::Object]
        } else {
            vec![On::Bucket]
        };
        assert!(want.contains(&row.on), "{op:?} ({class:?}): {:?}", row.on);
        // `...Version` actions only where S3 has versions of the addressed object.
        if row.versioned.is_some() {
            assert!(matches!(row.on, On::Object | On::EachKey), "{op:?}");
        }
    }
    assert!(
        TABLE.len() >= 90,
        "the table has {} operations",
        TABLE.len()
    );
    let classes = TABLE.iter().filter(|(_, c)| *c != Class::Reject).count();
    assert!(classes > 50);
}

/// (method, URI, headers, expected (action, resource) checks in order).
type Case<'a> = (
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a [(&'a str, &'a str)],
);

#[test]
fn requests_need_aws_actions_on_aws_resources() {
    let cases: &[Case] = &[
        (
            "GET",
            "/",
            &[],
            &[("s3:ListAllMyBuckets", "arn:aws:s3:::*")],
        ),
        ("GET", "/b/k", &[], &[("s3:GetObject", "arn:aws:s3:::b/k")]),
        (
            "HEAD",
            "/b/dir/a%20b",
            &[],
            &[("s3:GetObject", "arn:aws:s3:::b/dir/a b")],
        ),
        (
            "GET",
            "/b/k?versionId=v1",
            &[],
            &[("s3:GetObjectVersion", "arn:aws:s3:::b/k")],
        ),
        ("PUT", "/b/k", &[], &[("s3:PutObject", "arn:aws:s3:::b/k")]),
        (
            "PUT",
            "/b/k",
            &[("x-amz-acl", "public-read"), ("x-amz-tagging", "a=b")],
            &[
                ("s3:PutObject", "arn:aws:s3:::b/k"),
                ("s3:PutObjectAcl", "arn:aws:s3:::b/k"),
                ("s3:PutObjectTagging", "arn:aws:s3:::b/k"),
            ],
        ),
        (
            "PUT",
            "/b/k",
            &[("x-amz-copy-source", "/src/a%2Fb?versionId=v9")],
            &[
                ("s3:PutObject", "arn:aws:s3:::b/k"),
                ("s3:GetObjectVersion", "arn:aws:s3:::src/a/b"),
            ],
        ),
        (
            "PUT",
            "/b/k",
            // The tagging header of a copy counts only when it replaces the tags.
            &[("x-amz-copy-source", "src/x"), ("x-amz-tagging", "a=b")],
            &[
                ("s3:PutObject", "arn:aws:s3:::b/k"),
                ("s3:GetObject", "arn:aws:s3:::src/x"),
            ],
        ),
        (
            "PUT",
            "/b/k?partNumber=1&uploadId=u",
            &[("x-amz-copy-source", "src/x")],
            &[
                ("s3:PutObject", "arn:aws:s3:::b/k"),
                ("s3:GetObject", "arn:aws:s3:::src/x"),
            ],
        ),
        (
            "POST",
            "/b/k?uploads",
            &[],
            &[("s3:PutObject", "arn:aws:s3:::b/k")],
        ),
        (
            "PUT",
            "/b/k?partNumber=2&uploadId=u",
            &[],
            &[("s3:PutObject", "arn:aws:s3:::b/k")],
        ),
        (
            "POST",
            "/b/k?uploadId=u",
            &[],
            &[("s3:PutObject", "arn:aws:s3:::b/k")],
        ),
        (
            "DELETE",
            "/b/k?uploadId=u",
            &[],
            &[("s3:AbortMultipartUpload", "arn:aws:s3:::b/k")],
        ),
        (
            "GET",
            "/b/k?uploadId=u",
            &[],
            &[("s3:ListMultipartUploadParts", "arn:aws:s3:::b/k")],
        ),
        (
            "GET",
            "/b?uploads",
            &[],
            &[("s3:ListBucketMultipartUploads", "arn:aws:s3:::b")],
        ),
        (
            "GET",
            "/b?list-type=2&prefix=a",
            &[],
            &[("s3:ListBucket", "arn:aws:s3:::b")],
        ),
        ("GET", "/b", &[], &[("s3:ListBucket", "arn:aws:s3:::b")]),
        (
            "GET",
            "/b?versions",
            &[],
            &[("s3:ListBucketVersions", "arn:aws:s3:::b")],
        ),
        ("HEAD", "/b", &[], &[("s3:ListBucket", "arn:aws:s3:::b")]),
        (
            "DELETE",
            "/b/k",
            &[],
            &[("s3:DeleteObject", "arn:aws:s3:::b/k")],
        ),
        (
            "DELETE",
            "/b/k?versionId=v1",
            &[("x-amz-bypass-governance-retention", "true")],
            &[
                ("s3:DeleteObjectVersion", "arn:aws:s3:::b/k"),
                ("s3:BypassGovernanceRetention", "arn:aws:s3:::b/k"),
            ],
        ),
        ("POST", "/b?delete", &[], &[]),
        (
            "PUT",
            "/b?encryption",
            &[],
            &[("s3:PutEncryptionConfiguration", "arn:aws:s3:::b")],
        ),
        (
            "DELETE",
            "/b?encryption",
            &[],
            &[("s3:PutEncryptionConfiguration", "arn:aws:s3:::b")],
        ),
        (
            "GET",
            "/b?encryption",
            &[],
            &[("s3:GetEncryptionConfiguration", "arn:aws:s3:::b")],
        ),
        ("PUT", "/b", &[], &[("s3:CreateBucket", "arn:aws:s3:::b")]),
        (
            "PUT",
            "/b",
            &[("x-amz-acl", "private")],
            &[("s3:CreateBucket", "arn:aws:s3:::b")],
        ),
        (
            "PUT",
            "/b",
            &[
                ("x-amz-bucket-object-lock-enabled", "true"),
                ("x-amz-object-ownership", "BucketOwnerEnforced"),
            ],
            &[
                ("s3:CreateBucket", "arn:aws:s3:::b"),
                ("s3:PutBucketObjectLockConfiguration", "arn:aws:s3:::b"),
                ("s3:PutBucketVersioning", "arn:aws:s3:::b"),
                ("s3:PutBucketOwnershipControls", "arn:aws:s3:::b"),
            ],
        ),
        (
            "DELETE",
            "/b",
            &[],
            &[("s3:DeleteBucket", "arn:aws:s3:::b")],
        ),
        (
            "DELETE",
            "/b?tagging",
            &[],
            &[("s3:PutBucketTagging", "arn:aws:s3:::b")],
        ),
        (
            "DELETE",
            "/b?cors",
            &[],
            &[("s3:PutBucketCORS", "arn:aws:s3:::b")],
        ),
        (
            "DELETE",
            "/b?lifecycle",
            &[],
            &[("s3:PutLifecycleConfiguration", "arn:aws:s3:::b")],
        ),
        (
            "DELETE",
            "/b?policy",
            &[],
            &[("s3:DeleteBucketPolicy", "arn:aws:s3:::b")],
        ),
        (
            "GET",
            "/b/k?tagging&versionId=v",
            &[],
            &[("s3:GetObjectVersionTagging", "arn:aws:s3:::b/k")],
        ),
        (
            "PUT",
            "/b/k?acl",
            &[],
            &[("s3:PutObjectAcl", "arn:aws:s3:::b/k")],
        ),
        (
            "GET",
            "/b/k?attributes",
            &[],
            &[
                ("s3:GetObject", "arn:aws:s3:::b/k"),
                ("s3:GetObjectAttributes", "arn:aws:s3:::b/k"),
            ],
        ),
        (
            "GET",
            "/b/k?attributes&versionId=v",
            &[],
            &[
                ("s3:GetObjectVersion", "arn:aws:s3:::b/k"),
                ("s3:GetObjectVersionAttributes", "arn:aws:s3:::b/k"),
            ],
        ),
    ];
    for (m, uri, h, want) in cases {
        assert_eq!(actions(m, uri, h), pairs(want), "{m} {uri} {h:?}");
    }
}

#[test]
fn delete_objects_entries_are_checked_per_key() {
    let mut h = HeaderMap::new();
    let c = delete_key_checks("a/b", None, &h);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].action, "s3:DeleteObject");
    assert_eq!(c[0].resource(Some("b"), None), "arn:aws:s3:::b/a/b");
    h.insert("x-amz-bypass-governance-retention", "true".parse().unwrap());
    let c = delete_key_checks("k", Some("v1"), &h);
    let names: Vec<_> = c.iter().map(|c| c.action).collect();
    assert_eq!(
        names,
        ["s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"]
    );
}

#[test]
fn post_object_fails_closed_until_its_handler_checks_the_form_key() {
    let (r, h) = req("POST", "/b", &[]);
    assert_eq!(r.op, Op::PostObject);
    assert_eq!(r.shape, Shape::Bucket);
    assert!(checks(&r, &h).is_err());
}
