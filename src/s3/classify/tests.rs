//! The classification table, tested request by request: every S3 operation, the
//! unknown ones refused, and what each carries.

use super::*;
use std::collections::HashSet;

fn c(method: &str, shape: Shape, q: &[&str], copy: bool) -> Result<Op, Unclassified> {
    let mut h = HeaderMap::new();
    if copy {
        h.insert("x-amz-copy-source", "b/k".parse().unwrap());
    }
    classify(&method.parse().unwrap(), shape, q.iter().copied(), &h)
}

#[test]
fn every_operation_is_in_the_table_exactly_once() {
    let mut seen = HashSet::new();
    for (op, _) in TABLE {
        assert!(seen.insert(*op), "{op:?} listed twice");
    }
}

/// One request per operation: each must classify to that operation. An operation
/// added to the table without a request here fails the count check below.
#[test]
fn every_operation_has_a_request_that_classifies_to_it() {
    use Shape::*;
    let cases: &[(&str, Shape, &[&str], bool, Op)] = &[
        ("PUT", Object, &[], false, Op::PutObject),
        ("PUT", Object, &["x-id"], false, Op::PutObject),
        (
            "GET",
            Object,
            &["versionId", "response-content-type"],
            false,
            Op::GetObject,
        ),
        ("HEAD", Object, &["partNumber"], false, Op::HeadObject),
        ("PUT", Object, &[], true, Op::CopyObject),
        (
            "POST",
            Object,
            &["uploads"],
            false,
            Op::CreateMultipartUpload,
        ),
        (
            "PUT",
            Object,
            &["partNumber", "uploadId"],
            false,
            Op::UploadPart,
        ),
        (
            "PUT",
            Object,
            &["partNumber", "uploadId"],
            true,
            Op::UploadPartCopy,
        ),
        (
            "POST",
            Object,
            &["uploadId"],
            false,
            Op::CompleteMultipartUpload,
        ),
        (
            "GET",
            Object,
            &["uploadId", "max-parts"],
            false,
            Op::ListParts,
        ),
        (
            "GET",
            Bucket,
            &["prefix", "delimiter"],
            false,
            Op::ListObjects,
        ),
        (
            "GET",
            Bucket,
            &["list-type", "continuation-token"],
            false,
            Op::ListObjectsV2,
        ),
        ("GET", Bucket, &["versions"], false, Op::ListObjectVersions),
        (
            "GET",
            Object,
            &["attributes"],
            false,
            Op::GetObjectAttributes,
        ),
        (
            "PUT",
            Bucket,
            &["encryption"],
            false,
            Op::PutBucketEncryption,
        ),
        (
            "GET",
            Bucket,
            &["encryption"],
            false,
            Op::GetBucketEncryption,
        ),
        (
            "DELETE",
            Bucket,
            &["encryption"],
            false,
            Op::DeleteBucketEncryption,
        ),
        ("GET", Service, &[], false, Op::ListBuckets),
        ("PUT", Bucket, &[], false, Op::CreateBucket),
        ("DELETE", Bucket, &[], false, Op::DeleteBucket),
        ("HEAD", Bucket, &[], false, Op::HeadBucket),
        ("GET", Bucket, &["location"], false, Op::GetBucketLocation),
        ("DELETE", Object, &["versionId"], false, Op::DeleteObject),
        ("POST", Bucket, &["delete"], false, Op::DeleteObjects),
        (
            "DELETE",
            Object,
            &["uploadId"],
            false,
            Op::AbortMultipartUpload,
        ),
        ("GET", Bucket, &["uploads"], false, Op::ListMultipartUploads),
        ("GET", Object, &["tagging"], false, Op::GetObjectTagging),
        ("PUT", Object, &["tagging"], false, Op::PutObjectTagging),
        (
            "DELETE",
            Object,
            &["tagging"],
            false,
            Op::DeleteObjectTagging,
        ),
        ("GET", Object, &["acl"], false, Op::GetObjectAcl),
        ("PUT", Object, &["acl"], false, Op::PutObjectAcl),
        ("GET", Object, &["retention"], false, Op::GetObjectRetention),
        ("PUT", Object, &["retention"], false, Op::PutObjectRetention),
        (
            "GET",
            Object,
            &["legal-hold"],
            false,
            Op::GetObjectLegalHold,
        ),
        (
            "PUT",
            Object,
            &["legal-hold"],
            false,
            Op::PutObjectLegalHold,
        ),
        ("GET", Bucket, &["tagging"], false, Op::GetBucketTagging),
        ("PUT", Bucket, &["tagging"], false, Op::PutBucketTagging),
        (
            "DELETE",
            Bucket,
            &["tagging"],
            false,
            Op::DeleteBucketTagging,
        ),
        ("GET", Bucket, &["acl"], false, Op::GetBucketAcl),
        ("PUT", Bucket, &["acl"], false, Op::PutBucketAcl),
        (
            "GET",
            Bucket,
            &["versioning"],
            false,
            Op::GetBucketVersioning,
        ),
        (
            "PUT",
            Bucket,
            &["versioning"],
            false,
            Op::PutBucketVersioning,
        ),
        ("GET", Bucket, &["cors"], false, Op::GetBucketCors),
        ("PUT", Bucket, &["cors"], false, Op::PutBucketCors),
        ("DELETE", Bucket, &["cors"], false, Op::DeleteBucketCors),
        (
            "GET",
            Bucket,
            &["lifecycle"],
            false,
            Op::GetBucketLifecycleConfiguration,
        ),
        (
            "PUT",
            Bucket,
            &["lifecycle"],
            false,
            Op::PutBucketLifecycleConfiguration,
        ),
        (
            "DELETE",
            Bucket,
            &["lifecycle"],
            false,
            Op::DeleteBucketLifecycle,
        ),
        ("GET", Bucket, &["policy"], false, Op::GetBucketPolicy),
        ("PUT", Bucket, &["policy"], false, Op::PutBucketPolicy),
        ("DELETE", Bucket, &["policy"], false, Op::DeleteBucketPolicy),
        (
            "GET",
            Bucket,
            &["policyStatus"],
            false,
            Op::GetBucketPolicyStatus,
        ),
        ("GET", Bucket, &["website"], false, Op::GetBucketWebsite),
        ("PUT", Bucket, &["website"], false, Op::PutBucketWebsite),
        (
            "DELETE",
            Bucket,
            &["website"],
            false,
            Op::DeleteBucketWebsite,
        ),
        (
            "GET",
            Bucket,
            &["object-lock"],
            false,
            Op::GetObjectLockConfiguration,
        ),
        (
            "PUT",
            Bucket,
            &["object-lock"],
            false,
            Op::PutObjectLockConfiguration,
        ),
        (
            "GET",
            Bucket,
            &["ownershipControls"],
            false,
            Op::GetBucketOwnershipControls,
        ),
        (
            "PUT",
            Bucket,
            &["ownershipControls"],
            false,
            Op::PutBucketOwnershipControls,
        ),
        (
            "DELETE",
            Bucket,
            &["ownershipControls"],
            false,
            Op::DeleteBucketOwnershipControls,
        ),
        (
            "GET",
            Bucket,
            &["publicAccessBlock"],
            false,
            Op::GetPublicAccessBlock,
        ),
        (
            "PUT",
            Bucket,
            &["publicAccessBlock"],
            false,
            Op::PutPublicAccessBlock,
        ),
        (
            "DELETE",
            Bucket,
            &["publicAccessBlock"],
            false,
            Op::DeletePublicAccessBlock,
        ),
        (
            "GET",
            Bucket,
            &["requestPayment"],
            false,
            Op::GetBucketRequestPayment,
        ),
        ("GET", Bucket, &["logging"], false, Op::GetBucketLogging),
        (
            "GET",
            Bucket,
            &["notification"],
            false,
            Op::GetBucketNotificationConfiguration,
        ),
        (
            "GET",
            Bucket,
            &["accelerate"],
            false,
            Op::GetBucketAccelerateConfiguration,
        ),
        (
            "POST",
            Object,
            &["select", "select-type"],
            false,
            Op::SelectObjectContent,
        ),
        ("POST", Object, &["restore"], false, Op::RestoreObject),
        ("GET", Object, &["torrent"], false, Op::GetObjectTorrent),
        ("POST", Bucket, &[], false, Op::PostObject),
        (
            "PUT",
            Bucket,
            &["replication"],
            false,
            Op::PutBucketReplication,
        ),
        (
            "GET",
            Bucket,
            &["replication"],
            false,
            Op::GetBucketReplication,
        ),
        (
            "DELETE",
            Bucket,
            &["replication"],
            false,
            Op::DeleteBucketReplication,
        ),
        (
            "PUT",
            Bucket,
            &["notification"],
            false,
            Op::PutBucketNotificationConfiguration,
        ),
        ("PUT", Bucket, &["logging"], false, Op::PutBucketLogging),
        (
            "PUT",
            Bucket,
            &["requestPayment"],
            false,
            Op::PutBucketRequestPayment,
        ),
        (
            "PUT",
            Bucket,
            &["accelerate"],
            false,
            Op::PutBucketAccelerateConfiguration,
        ),
        (
            "PUT",
            Bucket,
            &["analytics", "id"],
            false,
            Op::PutBucketAnalyticsConfiguration,
        ),
        (
            "GET",
            Bucket,
            &["analytics", "id"],
            false,
            Op::GetBucketAnalyticsConfiguration,
        ),
        (
            "DELETE",
            Bucket,
            &["analytics", "id"],
            false,
            Op::DeleteBucketAnalyticsConfiguration,
        ),
        (
            "GET",
            Bucket,
            &["analytics"],
            false,
            Op::GetBucketAnalyticsConfiguration,
        ),
        (
            "PUT",
            Bucket,
            &["inventory", "id"],
            false,
            Op::PutBucketInventoryConfiguration,
        ),
        (
            "GET",
            Bucket,
            &["inventory", "id"],
            false,
            Op::GetBucketInventoryConfiguration,
        ),
        (
            "DELETE",
            Bucket,
            &["inventory", "id"],
            false,
            Op::DeleteBucketInventoryConfiguration,
        ),
        (
            "PUT",
            Bucket,
            &["metrics", "id"],
            false,
            Op::PutBucketMetricsConfiguration,
        ),
        (
            "GET",
            Bucket,
            &["metrics", "id"],
            false,
            Op::GetBucketMetricsConfiguration,
        ),
        (
            "DELETE",
            Bucket,
            &["metrics", "id"],
            false,
            Op::DeleteBucketMetricsConfiguration,
        ),
        (
            "PUT",
            Bucket,
            &["intelligent-tiering", "id"],
            false,
            Op::PutBucketIntelligentTieringConfiguration,
        ),
        (
            "GET",
            Bucket,
            &["intelligent-tiering", "id"],
            false,
            Op::GetBucketIntelligentTieringConfiguration,
        ),
        (
            "DELETE",
            Bucket,
            &["intelligent-tiering", "id"],
            false,
            Op::DeleteBucketIntelligentTieringConfiguration,
        ),
    ];
    let mut covered = HashSet::new();
    for (m, shape, q, copy, want) in cases {
        assert_eq!(
            c(m, *shape, q, *copy),
            Ok(*want),
            "{m} {shape:?} {q:?} copy={copy}"
        );
        covered.insert(*want);
    }
    // The List*Configurations operations share their request shape with Get*Configuration
    // without `id`; S3 tells them apart by the absence of `id`, and both are rejected.
    let list_configs = [
        Op::ListBucketAnalyticsConfigurations,
        Op::ListBucketInventoryConfigurations,
        Op::ListBucketMetricsConfigurations,
        Op::ListBucketIntelligentTieringConfigurations,
        Op::WriteGetObjectResponse,
    ];
    for (op, class) in TABLE {
        if list_configs.contains(op) {
            assert_eq!(*class, Class::Reject);
            continue;
        }
        assert!(
            covered.contains(op),
            "{op:?} has no classification test case"
        );
    }
}

#[test]
fn unknown_query_keys_and_methods_are_unclassified() {
    assert_eq!(
        c("PUT", Shape::Object, &["foo"], false),
        Err(Unclassified::UnknownQueryKey("foo".into()))
    );
    assert_eq!(
        c("PATCH", Shape::Object, &[], false),
        Err(Unclassified::NoOperation)
    );
    assert_eq!(
        c("PUT", Shape::Service, &[], false),
        Err(Unclassified::NoOperation)
    );
    assert_eq!(
        c("PUT", Shape::Object, &["uploadId"], false),
        Err(Unclassified::NoOperation)
    );
    assert_eq!(
        c("GET", Shape::Object, &["acl", "tagging"], false),
        Err(Unclassified::NoOperation)
    );
    assert_eq!(
        c("POST", Shape::Object, &[], false),
        Err(Unclassified::NoOperation)
    );
}

#[test]
fn put_object_is_never_classified_as_pass_through() {
    // Whatever harmless parameters come along, an object PUT with no sub-resource is PutObject.
    for q in [&[][..], &["x-id"], &["versionId"], &["partNumber"]] {
        let op = c("PUT", Shape::Object, q, false).unwrap();
        assert_eq!(op.class(), Class::Transform, "{q:?}");
    }
}
