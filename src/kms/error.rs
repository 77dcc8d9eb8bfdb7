//! The KMS error type: one enum, each variant mapped once to an AWS KMS `__type` and
//! HTTP status.
//!
//! Invariant: messages never contain key material, plaintext or ciphertext; they name
//! key ids, parameters and states only, so they are safe to log and return.

use http::StatusCode;

/// Every failure of the embedded KMS, named after the AWS KMS exception it becomes.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Disabled(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Serialization(String),
    #[error("{0}")]
    UnknownOperation(String),
    #[error("{0}")]
    InvalidCiphertext(String),
    #[error("{0}")]
    IncorrectKey(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidAliasName(String),
    #[error("{0}")]
    InvalidArn(String),
    #[error("{0}")]
    InvalidMarker(String),
    #[error("{0}")]
    InvalidKeyUsage(String),
    #[error("{0}")]
    UnsupportedOperation(String),
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    LimitExceeded(String),
    /// Users may not create or change `alias/aws/...` aliases.
    #[error("{0}")]
    NotAuthorized(String),
    #[error("{0}")]
    Tag(String),
    /// A key policy that does not parse, or that would lock the caller out.
    #[error("{0}")]
    MalformedPolicy(String),
    #[error("{0}")]
    InvalidGrantToken(String),
    #[error("{0}")]
    InvalidGrantId(String),
    /// Verify: the signature does not verify (`KMSInvalidSignatureException`).
    #[error("{0}")]
    SignatureMismatch(String),
    /// VerifyMac: the MAC does not verify (`KMSInvalidMacException`).
    #[error("{0}")]
    MacMismatch(String),
    /// A per-principal request rate was exceeded (SDKs retry with backoff).
    #[error("{0}")]
    Throttling(String),
    /// `DryRun: true` and the request would have succeeded.
    #[error("{0}")]
    DryRunOperation(String),
    /// ImportKeyMaterial: the import token's 24 hours have passed.
    #[error("{0}")]
    ExpiredImportToken(String),
    /// ImportKeyMaterial: the token is malformed, tampered with or for another key.
    #[error("{0}")]
    InvalidImportToken(String),
    /// ImportKeyMaterial: the material differs from what the key had before.
    #[error("{0}")]
    IncorrectKeyMaterial(String),
    /// SigV4: no `Authorization` header at all.
    #[error("{0}")]
    MissingAuthenticationToken(String),
    /// SigV4: the `Authorization` header lacks a part.
    #[error("{0}")]
    IncompleteSignature(String),
    /// SigV4: the signature does not match, or the request is too old/new.
    #[error("{0}")]
    InvalidSignature(String),
    /// SigV4: the access key id is not configured.
    #[error("{0}")]
    UnrecognizedClient(String),
    /// Opening the KMS: the root key does not match the one the database was created with.
    #[error(
        "the KMS root key does not match the key-check value stored in {0}; refusing to open (nothing was changed)"
    )]
    WrongRootKey(String),
    /// Opening the KMS: configuration or root-key problems a person must fix.
    #[error("KMS configuration error: {0}")]
    Config(String),
    /// Storage or other internal failure (details are logged, not returned).
    #[error("{0}")]
    Internal(String),
    /// A dependency (the shared KMS database) did not answer in time: the KMS cannot
    /// vouch that its state is current (`DependencyTimeoutException`, retryable).
    #[error("{0}")]
    DependencyTimeout(String),
    /// Custom key stores (`kms::key_stores`): no store with that id or name.
    #[error("{0}")]
    CustomKeyStoreNotFound(String),
    /// The store's ConnectionState does not allow the operation.
    #[error("{0}")]
    CustomKeyStoreInvalidState(String),
    #[error("{0}")]
    CustomKeyStoreNameInUse(String),
    /// DeleteCustomKeyStore while KMS keys remain in the store.
    #[error("{0}")]
    CustomKeyStoreHasCmks(String),
    /// The cluster id names no `[kms.hsm_clusters]` entry.
    #[error("{0}")]
    CloudHsmClusterNotFound(String),
    /// Another custom key store uses the cluster.
    #[error("{0}")]
    CloudHsmClusterInUse(String),
    /// UpdateCustomKeyStore: the new cluster is not the same token.
    #[error("{0}")]
    CloudHsmClusterNotRelated(String),
    /// The trust anchor is not the one pinned for the cluster.
    #[error("{0}")]
    IncorrectTrustAnchor(String),
}

impl KmsError {
    /// The AWS KMS exception name (`__type` in JSON error bodies).
    pub fn aws_type(&self) -> &'static str {
        use KmsError::*;
        match self {
            NotFound(_) => "NotFoundException",
            Disabled(_) => "DisabledException",
            InvalidState(_) => "KMSInvalidStateException",
            Validation(_) => "ValidationException",
            Serialization(_) => "SerializationException",
            UnknownOperation(_) => "UnknownOperationException",
            InvalidCiphertext(_) => "InvalidCiphertextException",
            IncorrectKey(_) => "IncorrectKeyException",
            AlreadyExists(_) => "AlreadyExistsException",
            InvalidAliasName(_) => "InvalidAliasNameException",
            InvalidArn(_) => "InvalidArnException",
            InvalidMarker(_) => "InvalidMarkerException",
            InvalidKeyUsage(_) => "InvalidKeyUsageException",
            UnsupportedOperation(_) => "UnsupportedOperationException",
            AccessDenied(_) => "AccessDeniedException",
            LimitExceeded(_) => "LimitExceededException",
            NotAuthorized(_) => "NotAuthorizedException",
            Tag(_) => "TagException",
            MalformedPolicy(_) => "MalformedPolicyDocumentException",
            InvalidGrantToken(_) => "InvalidGrantTokenException",
            InvalidGrantId(_) => "InvalidGrantIdException",
            SignatureMismatch(_) => "KMSInvalidSignatureException",
            MacMismatch(_) => "KMSInvalidMacException",
            DryRunOperation(_) => "DryRunOperationException",
            Throttling(_) => "ThrottlingException",
            ExpiredImportToken(_) => "ExpiredImportTokenException",
            InvalidImportToken(_) => "InvalidImportTokenException",
            IncorrectKeyMaterial(_) => "IncorrectKeyMaterialException",
            MissingAuthenticationToken(_) => "MissingAuthenticationTokenException",
            IncompleteSignature(_) => "IncompleteSignatureException",
            InvalidSignature(_) => "InvalidSignatureException",
            UnrecognizedClient(_) => "UnrecognizedClientException",
            WrongRootKey(_) | Config(_) | Internal(_) => "KMSInternalException",
            DependencyTimeout(_) => "DependencyTimeoutException",
            CustomKeyStoreNotFound(_) => "CustomKeyStoreNotFoundException",
            CustomKeyStoreInvalidState(_) => "CustomKeyStoreInvalidStateException",
            CustomKeyStoreNameInUse(_) => "CustomKeyStoreNameInUseException",
            CustomKeyStoreHasCmks(_) => "CustomKeyStoreHasCMKsException",
            CloudHsmClusterNotFound(_) => "CloudHsmClusterNotFoundException",
            CloudHsmClusterInUse(_) => "CloudHsmClusterInUseException",
            CloudHsmClusterNotRelated(_) => "CloudHsmClusterNotRelatedException",
            IncorrectTrustAnchor(_) => "IncorrectTrustAnchorException",
        }
    }

    /// The HTTP status AWS KMS uses for this exception (400 for client errors, 403 for a
    /// missing signature, 500 for internal failures).
    pub fn status(&self) -> StatusCode {
        use KmsError::*;
        match self {
            MissingAuthenticationToken(_) => StatusCode::FORBIDDEN,
            WrongRootKey(_) | Config(_) | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            DependencyTimeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A storage-layer failure: logged with detail, returned as a generic internal error.
    pub(crate) fn storage(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "KMS storage failure");
        KmsError::Internal("The KMS storage layer failed; see the server log.".into())
    }

    /// AWS-style single validation error message.
    pub(crate) fn constraint(value: impl std::fmt::Display, field: &str, constraint: &str) -> Self {
        super::constraints::violated(value, field, constraint)
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for KmsError {
            fn from(e: $t) -> Self { KmsError::storage(e) }
        }
    )*};
}
storage_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);
