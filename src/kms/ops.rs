//! THE table of KMS operations: one row per AWS KMS operation sealgate knows (plus the
//! two permissions ReEncrypt is checked as), and every per-operation fact the rest of
//! the KMS needs, so no other file keeps a list of operation names.
//!
//! Columns (see `Row`): the API name (also the IAM action `kms:<Name>` and, for API
//! operations, the audit `eventName`), whether it reads, uses key material or writes,
//! whether it runs on the blocking pool, whether it is an API operation (implemented
//! or not yet) or a permission only, what `DryRun: true` checks, whether a grant may
//! allow it (and with encryption-context constraints), what the key must be (the
//! key-usage gate) and in which key states it may run (the state table).
//!
//! Adding a KMS operation: a row here, the service method (`service/`), and its arm in
//! `api/dispatch.rs` (the match there is exhaustive, so the compiler asks for it).
//!
//! Invariant: `Op as usize` is the row's index in `ROWS` (per-key usage counters are
//! indexed by it); the grantable rows come first, in the order of AWS's
//! `GrantOperation` enum, because CreateGrant's validation message lists them so.

use super::KmsError;
use super::model::{KeyRecord, KeyState};

/// What an operation does, as the blocking pool and the audit log see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads only: the audit event is `readOnly` (AWS's Describe*, List*, Get* and
    /// GenerateRandom).
    Read,
    /// Uses a key's material or checks a permission; writes nothing.
    Crypto,
    /// Writes the database (one transaction, fsynced).
    Write,
}

/// Where the API layer runs the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// On the async runtime (memory only, fast).
    Inline,
    /// On the blocking pool: writes (fsync) and seconds of CPU (RSA key generation).
    Blocking,
}

/// Whether a row is an API operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// An operation of the KMS JSON API that sealgate implements.
    Yes,
    /// An AWS KMS operation sealgate knows but does not implement yet
    /// (UnsupportedOperationException).
    NotYet,
    /// Not an API operation: a permission an operation is checked as
    /// (ReEncrypt needs kms:ReEncryptFrom and kms:ReEncryptTo).
    Permission,
}

/// Whether the operation takes `DryRun` (AWS's 15 operations that model it): a dry run
/// checks everything the call would check and changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DryRun {
    /// No `DryRun` member (UnsupportedOperationException if one is sent).
    No,
    /// `DryRun`.
    Yes,
    /// `DryRun` and `DryRunModifiers` (`IGNORE_CIPHERTEXT`: check the permission on the
    /// named key only, without a ciphertext): Decrypt and ReEncrypt.
    WithModifiers,
}

/// Whether a grant may allow the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grantable {
    No,
    /// A grant may allow it, without constraints.
    Yes,
    /// A grant may allow it, also with encryption-context constraints.
    WithConstraints,
}

/// What the key must be for the operation (checked after the state table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Any key.
    Any,
    /// KeyUsage ENCRYPT_DECRYPT.
    EncryptDecrypt,
    /// A SYMMETRIC_DEFAULT key (data keys are wrapped under it).
    Symmetric,
    /// KeyUsage SIGN_VERIFY.
    SignVerify,
    /// KeyUsage GENERATE_VERIFY_MAC.
    Mac,
    /// KeyUsage KEY_AGREEMENT.
    KeyAgreement,
    /// An asymmetric key: RSA, ECC, Ed25519 or ML-DSA (UnsupportedOperationException
    /// otherwise).
    Asymmetric,
    /// A symmetric key: only those rotate (UnsupportedOperationException otherwise).
    Rotatable,
}

/// Outcome of the state table for one (state, operation) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    DisabledKey,
    InvalidState,
    Unsupported,
}

/// The verdict in each key state: [Enabled, Disabled, PendingDeletion, PendingImport]
/// (after AWS's "Key states of AWS KMS keys").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct States(pub [Verdict; 4]);

use Verdict::{Allowed as A, DisabledKey as D, InvalidState as I, Unsupported as U};

/// Every state: read-only, policy, alias- and grant-removal operations, and the
/// operations without a key (no state is checked for those).
const ANY: States = States([A, A, A, A]);
/// Cryptographic operations: an enabled key.
const ENABLED: States = States([A, D, I, I]);
/// Metadata, aliases, grants, import: anything but PendingDeletion.
const NOT_DELETING: States = States([A, A, I, A]);
/// Enable/disable: an enabled or disabled key.
const SETTLED: States = States([A, A, I, I]);
/// CancelKeyDeletion.
const DELETING: States = States([I, I, A, I]);
/// Grants and multi-Region changes: an enabled key (a disabled key is
/// DisabledException, as for cryptography).
const USABLE: States = ENABLED;
/// Rotation settings: an enabled key with material (PendingImport: origin EXTERNAL).
const ROTATING: States = States([A, D, I, U]);
/// Rotation status: any key with material.
const WITH_MATERIAL: States = States([A, A, A, U]);

/// One operation's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub op: Op,
    /// The API name (`X-Amz-Target: TrentService.<name>`).
    pub name: &'static str,
    /// The IAM action: `kms:<name>`.
    pub action: &'static str,
    /// The audit `eventName` of a call (the API operation a permission belongs to).
    pub event: &'static str,
    pub kind: Kind,
    pub run: Run,
    pub api: Api,
    pub dry_run: DryRun,
    pub grantable: Grantable,
    pub needs: Needs,
    pub states: States,
}

/// `_` in the event column: the operation's own name.
macro_rules! event_name {
    (_, $op:ident) => {
        stringify!($op)
    };
    ($event:ident, $op:ident) => {
        stringify!($event)
    };
}

macro_rules! ops {
    ($($op:ident $kind:ident $run:ident $api:ident $dry:ident $grant:ident $needs:ident $states:ident $event:tt;)+) => {
        /// Every KMS operation sealgate knows, and the permissions ReEncrypt is checked as.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Op {
            $($op),+
        }

        /// The table, in `Op` order.
        pub const ROWS: &[Row] = &[
            $(Row {
                op: Op::$op,
                name: stringify!($op),
                action: concat!("kms:", stringify!($op)),
                event: event_name!($event, $op),
                kind: Kind::$kind,
                run: Run::$run,
                api: Api::$api,
                dry_run: DryRun::$dry,
                grantable: Grantable::$grant,
                needs: Needs::$needs,
                states: $states,
            }),+
        ];

        impl Op {
            /// Every operation, in table order (`op as usize` indexes this).
            pub const ALL: &[Op] = &[$(Op::$op),+];
        }
    };
}

ops! {
//  operation                            kind    run      api        dry run           grant           needs          states        event
    // Grantable, in the order of AWS's GrantOperation enum.
    Decrypt                              Crypto  Inline   Yes        WithModifiers     WithConstraints EncryptDecrypt ENABLED       _;
    Encrypt                              Crypto  Inline   Yes        Yes               WithConstraints EncryptDecrypt ENABLED       _;
    GenerateDataKey                      Crypto  Inline   Yes        Yes               WithConstraints Symmetric      ENABLED       _;
    GenerateDataKeyWithoutPlaintext      Crypto  Inline   Yes        Yes               WithConstraints Symmetric      ENABLED       _;
    ReEncryptFrom                        Crypto  Inline   Permission No                WithConstraints EncryptDecrypt ENABLED       ReEncrypt;
    ReEncryptTo                          Crypto  Inline   Permission No                WithConstraints EncryptDecrypt ENABLED       ReEncrypt;
    Sign                                 Crypto  Inline   Yes        Yes               Yes             SignVerify     ENABLED       _;
    Verify                               Crypto  Inline   Yes        Yes               Yes             SignVerify     ENABLED       _;
    GetPublicKey                         Read    Inline   Yes        No                Yes             Asymmetric     ENABLED       _;
    CreateGrant                          Write   Blocking Yes        Yes               WithConstraints Any            USABLE        _;
    RetireGrant                          Write   Blocking Yes        Yes               WithConstraints Any            ANY           _;
    DescribeKey                          Read    Inline   Yes        No                Yes             Any            ANY           _;
    GenerateDataKeyPair                  Crypto  Blocking Yes        Yes               WithConstraints Symmetric      ENABLED       _;
    GenerateDataKeyPairWithoutPlaintext  Crypto  Blocking Yes        Yes               WithConstraints Symmetric      ENABLED       _;
    GenerateMac                          Crypto  Inline   Yes        Yes               Yes             Mac            ENABLED       _;
    VerifyMac                            Crypto  Inline   Yes        Yes               Yes             Mac            ENABLED       _;
    DeriveSharedSecret                   Crypto  Inline   Yes        Yes               Yes             KeyAgreement   ENABLED       _;
    // Cryptography without a grant.
    ReEncrypt                            Crypto  Inline   Yes        WithModifiers     No              EncryptDecrypt ENABLED       _;
    GenerateRandom                       Read    Inline   Yes        No                No              Any            ANY           _;
    // Keys.
    CreateKey                            Write   Blocking Yes        No                No              Any            ANY           _;
    ListKeys                             Read    Inline   Yes        No                No              Any            ANY           _;
    UpdateKeyDescription                 Write   Blocking Yes        No                No              Any            NOT_DELETING  _;
    TagResource                          Write   Blocking Yes        No                No              Any            NOT_DELETING  _;
    UntagResource                        Write   Blocking Yes        No                No              Any            NOT_DELETING  _;
    ListResourceTags                     Read    Inline   Yes        No                No              Any            ANY           _;
    EnableKey                            Write   Blocking Yes        No                No              Any            SETTLED       _;
    DisableKey                           Write   Blocking Yes        No                No              Any            SETTLED       _;
    ScheduleKeyDeletion                  Write   Blocking Yes        No                No              Any            NOT_DELETING  _;
    CancelKeyDeletion                    Write   Blocking Yes        No                No              Any            DELETING      _;
    // Rotation.
    EnableKeyRotation                    Write   Blocking Yes        No                No              Rotatable      ROTATING      _;
    DisableKeyRotation                   Write   Blocking Yes        No                No              Rotatable      ROTATING      _;
    RotateKeyOnDemand                    Write   Blocking Yes        No                No              Rotatable      ENABLED       _;
    GetKeyRotationStatus                 Read    Inline   Yes        No                No              Any            WITH_MATERIAL _;
    ListKeyRotations                     Read    Inline   Yes        No                No              Rotatable      ANY           _;
    // Aliases.
    CreateAlias                          Write   Blocking Yes        No                No              Any            NOT_DELETING  _;
    UpdateAlias                          Write   Blocking Yes        No                No              Any            NOT_DELETING  _;
    DeleteAlias                          Write   Blocking Yes        No                No              Any            ANY           _;
    ListAliases                          Read    Inline   Yes        No                No              Any            ANY           _;
    // Key policies.
    GetKeyPolicy                         Read    Inline   Yes        No                No              Any            ANY           _;
    PutKeyPolicy                         Write   Blocking Yes        No                No              Any            ANY           _;
    ListKeyPolicies                      Read    Inline   Yes        No                No              Any            ANY           _;
    // Grants (the grantable ones are above).
    ListGrants                           Read    Inline   Yes        No                No              Any            ANY           _;
    ListRetirableGrants                  Read    Inline   Yes        No                No              Any            ANY           _;
    RevokeGrant                          Write   Blocking Yes        Yes               No              Any            ANY           _;
    // Imported key material (GetParametersForImport writes nothing but generates an
    // RSA wrapping key).
    GetParametersForImport               Read    Blocking Yes        No                No              Any            NOT_DELETING  _;
    ImportKeyMaterial                    Write   Blocking Yes        No                No              Any            NOT_DELETING  _;
    DeleteImportedKeyMaterial            Write   Blocking Yes        No                No              Any            ANY           _;
    // Multi-Region keys.
    ReplicateKey                         Write   Blocking Yes        No                No              Any            USABLE        _;
    UpdatePrimaryRegion                  Write   Blocking Yes        No                No              Any            USABLE        _;
    // Custom key stores.
    CreateCustomKeyStore                 Write   Blocking Yes        No                No              Any            ANY           _;
    DescribeCustomKeyStores              Read    Inline   Yes        No                No              Any            ANY           _;
    ConnectCustomKeyStore                Write   Blocking Yes        No                No              Any            ANY           _;
    DisconnectCustomKeyStore             Write   Blocking Yes        No                No              Any            ANY           _;
    DeleteCustomKeyStore                 Write   Blocking Yes        No                No              Any            ANY           _;
    UpdateCustomKeyStore                 Write   Blocking Yes        No                No              Any            ANY           _;
    // Newer than the audit (2026): known, refused explicitly.
    GetKeyLastUsage                      Read    Inline   NotYet     No                No              Any            ANY           _;
}

/// Number of rows (sizes the per-key usage counters).
pub const OP_COUNT: usize = ROWS.len();

impl Op {
    /// This operation's row.
    pub fn row(self) -> &'static Row {
        &ROWS[self as usize]
    }

    /// The API name (`Decrypt`).
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// The IAM action (`kms:Decrypt`), for the policy hook.
    pub fn action(self) -> &'static str {
        self.row().action
    }

    /// The audit `eventName` of a call.
    pub fn event(self) -> &'static str {
        self.row().event
    }

    /// The operation an `X-Amz-Target: TrentService.<name>` names (implemented or not
    /// yet); None for unknown names and for permissions.
    pub fn from_api_name(name: &str) -> Option<Op> {
        ROWS.iter()
            .find(|r| r.name == name && r.api != Api::Permission)
            .map(|r| r.op)
    }

    /// The operation of an IAM action, any case, with or without `kms:`.
    pub fn from_action(action: &str) -> Option<Op> {
        let bare = action.split_once(':').map_or(action, |(_, rest)| rest);
        ROWS.iter()
            .find(|r| r.name.eq_ignore_ascii_case(bare))
            .map(|r| r.op)
    }

    pub fn implemented(self) -> bool {
        self.row().api == Api::Yes
    }

    /// The audit event's `readOnly`.
    pub fn read_only(self) -> bool {
        self.row().kind == Kind::Read
    }

    /// Runs on the blocking pool (a database write or a long computation).
    pub fn blocking(self) -> bool {
        self.row().run == Run::Blocking
    }

    /// The state table's verdict for a key in `state`.
    pub fn verdict(self, state: KeyState) -> Verdict {
        let i = match state {
            KeyState::Enabled => 0,
            KeyState::Disabled => 1,
            KeyState::PendingDeletion => 2,
            KeyState::PendingImport => 3,
        };
        self.row().states.0[i]
    }
}

/// The names a grant's Operations may contain, in AWS's order.
pub fn grant_operations() -> impl Iterator<Item = &'static str> {
    ROWS.iter()
        .filter(|r| r.grantable != Grantable::No)
        .map(|r| r.name)
}

/// Checks the state table and turns a refusal into the exact AWS exception.
/// Checks the state table and turns a refusal into the exact AWS exception, with the
/// messages of AWS's key-state page (`<key ARN> is pending deletion.`).
pub fn check_state(rec: &KeyRecord, arn: &str, op: Op) -> Result<(), KmsError> {
    match op.verdict(rec.state) {
        Verdict::Allowed => Ok(()),
        Verdict::DisabledKey => Err(KmsError::Disabled(format!("{arn} is disabled."))),
        Verdict::InvalidState => Err(KmsError::InvalidState(match (op, rec.state) {
            (Op::CancelKeyDeletion, _) => format!("{arn} is not pending deletion."),
            (_, KeyState::PendingDeletion) => format!("{arn} is pending deletion."),
            (_, KeyState::PendingImport) => format!("{arn} is pending import."),
            (_, KeyState::Disabled) => format!("{arn} is disabled."),
            (_, KeyState::Enabled) => format!("{arn} is enabled."),
        })),
        Verdict::Unsupported => Err(KmsError::UnsupportedOperation(format!(
            "{arn} origin is EXTERNAL which is not valid for this operation."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_indexes_its_row() {
        for (i, r) in ROWS.iter().enumerate() {
            assert_eq!(r.op as usize, i, "{}", r.name);
            assert_eq!(Op::ALL[i], r.op);
            assert_eq!(r.action, format!("kms:{}", r.name));
        }
    }

    #[test]
    fn api_names_parse_and_permissions_do_not() {
        for r in ROWS {
            let parsed = Op::from_api_name(r.name);
            match r.api {
                Api::Permission => assert_eq!(parsed, None, "{}", r.name),
                _ => assert_eq!(parsed, Some(r.op)),
            }
            assert_eq!(Op::from_action(&r.action.to_lowercase()), Some(r.op));
        }
        assert_eq!(Op::from_api_name("Fly"), None);
        assert_eq!(
            Op::from_api_name("decrypt"),
            None,
            "API names are case-sensitive"
        );
    }

    #[test]
    fn read_only_operations_are_awss_describe_list_get_and_generate_random() {
        for r in ROWS.iter().filter(|r| r.api != Api::Permission) {
            let by_name = ["Describe", "List", "Get"]
                .iter()
                .any(|p| r.name.starts_with(p))
                || r.name == "GenerateRandom";
            assert_eq!(r.op.read_only(), by_name, "{}", r.name);
        }
    }

    #[test]
    fn dry_run_is_on_awss_fifteen_operations() {
        let with: Vec<&str> = ROWS
            .iter()
            .filter(|r| r.dry_run != DryRun::No)
            .map(|r| r.name)
            .collect();
        let mut want = vec![
            "CreateGrant",
            "Decrypt",
            "DeriveSharedSecret",
            "Encrypt",
            "GenerateDataKey",
            "GenerateDataKeyPair",
            "GenerateDataKeyPairWithoutPlaintext",
            "GenerateDataKeyWithoutPlaintext",
            "GenerateMac",
            "ReEncrypt",
            "RetireGrant",
            "RevokeGrant",
            "Sign",
            "Verify",
            "VerifyMac",
        ];
        let mut got = with.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        let modifiers: Vec<&str> = ROWS
            .iter()
            .filter(|r| r.dry_run == DryRun::WithModifiers)
            .map(|r| r.name)
            .collect();
        assert_eq!(modifiers, ["Decrypt", "ReEncrypt"]);
    }

    #[test]
    fn writes_run_on_the_blocking_pool() {
        for r in ROWS {
            if r.kind == Kind::Write {
                assert_eq!(r.run, Run::Blocking, "{}", r.name);
            }
        }
    }

    #[test]
    fn grant_operations_are_awss_enum_in_its_order() {
        let got: Vec<&str> = grant_operations().collect();
        assert_eq!(
            got.join(", "),
            "Decrypt, Encrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext, \
             ReEncryptFrom, ReEncryptTo, Sign, Verify, GetPublicKey, CreateGrant, \
             RetireGrant, DescribeKey, GenerateDataKeyPair, \
             GenerateDataKeyPairWithoutPlaintext, GenerateMac, VerifyMac, DeriveSharedSecret"
        );
        let constrained: Vec<&str> = ROWS
            .iter()
            .filter(|r| r.grantable == Grantable::WithConstraints)
            .map(|r| r.name)
            .collect();
        assert_eq!(
            constrained,
            [
                "Decrypt",
                "Encrypt",
                "GenerateDataKey",
                "GenerateDataKeyWithoutPlaintext",
                "ReEncryptFrom",
                "ReEncryptTo",
                "CreateGrant",
                "RetireGrant",
                "GenerateDataKeyPair",
                "GenerateDataKeyPairWithoutPlaintext",
            ]
        );
    }

    const STATES: [KeyState; 4] = [
        KeyState::Enabled,
        KeyState::Disabled,
        KeyState::PendingDeletion,
        KeyState::PendingImport,
    ];

    /// The state table, row by row: (op, [Enabled, Disabled, PendingDeletion,
    /// PendingImport]), written out as AWS documents it.
    #[test]
    fn state_table_matches_aws() {
        use Verdict::*;
        let table: &[(Op, [Verdict; 4])] = &[
            (Op::DescribeKey, [Allowed, Allowed, Allowed, Allowed]),
            (Op::ListResourceTags, [Allowed, Allowed, Allowed, Allowed]),
            (Op::DeleteAlias, [Allowed, Allowed, Allowed, Allowed]),
            (Op::GetKeyPolicy, [Allowed, Allowed, Allowed, Allowed]),
            (Op::PutKeyPolicy, [Allowed, Allowed, Allowed, Allowed]),
            (Op::ListKeyPolicies, [Allowed, Allowed, Allowed, Allowed]),
            (Op::ListGrants, [Allowed, Allowed, Allowed, Allowed]),
            (Op::RetireGrant, [Allowed, Allowed, Allowed, Allowed]),
            (Op::RevokeGrant, [Allowed, Allowed, Allowed, Allowed]),
            (
                Op::DeleteImportedKeyMaterial,
                [Allowed, Allowed, Allowed, Allowed],
            ),
            (
                Op::GetParametersForImport,
                [Allowed, Allowed, InvalidState, Allowed],
            ),
            (
                Op::ImportKeyMaterial,
                [Allowed, Allowed, InvalidState, Allowed],
            ),
            (
                Op::ReplicateKey,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (
                Op::UpdatePrimaryRegion,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (
                Op::CreateGrant,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (
                Op::GetKeyRotationStatus,
                [Allowed, Allowed, Allowed, Unsupported],
            ),
            (Op::ListKeyRotations, [Allowed, Allowed, Allowed, Allowed]),
            (
                Op::Encrypt,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (
                Op::Decrypt,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (
                Op::ReEncryptFrom,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (
                Op::ReEncryptTo,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (
                Op::GenerateDataKey,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (
                Op::GenerateDataKeyWithoutPlaintext,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (
                Op::EnableKey,
                [Allowed, Allowed, InvalidState, InvalidState],
            ),
            (
                Op::DisableKey,
                [Allowed, Allowed, InvalidState, InvalidState],
            ),
            (
                Op::ScheduleKeyDeletion,
                [Allowed, Allowed, InvalidState, Allowed],
            ),
            (
                Op::CancelKeyDeletion,
                [InvalidState, InvalidState, Allowed, InvalidState],
            ),
            (
                Op::UpdateKeyDescription,
                [Allowed, Allowed, InvalidState, Allowed],
            ),
            (Op::TagResource, [Allowed, Allowed, InvalidState, Allowed]),
            (Op::UntagResource, [Allowed, Allowed, InvalidState, Allowed]),
            (Op::CreateAlias, [Allowed, Allowed, InvalidState, Allowed]),
            (Op::UpdateAlias, [Allowed, Allowed, InvalidState, Allowed]),
            (
                Op::EnableKeyRotation,
                [Allowed, DisabledKey, InvalidState, Unsupported],
            ),
            (
                Op::DisableKeyRotation,
                [Allowed, DisabledKey, InvalidState, Unsupported],
            ),
            (
                Op::RotateKeyOnDemand,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (Op::Sign, [Allowed, DisabledKey, InvalidState, InvalidState]),
            (
                Op::Verify,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (
                Op::GetPublicKey,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (
                Op::GenerateMac,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (
                Op::VerifyMac,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (
                Op::GenerateDataKeyPair,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
            (
                Op::GenerateDataKeyPairWithoutPlaintext,
                [Allowed, DisabledKey, InvalidState, InvalidState],
            ),
        ];
        for (op, row) in table {
            for (state, want) in STATES.iter().zip(row) {
                assert_eq!(op.verdict(*state), *want, "{op:?} in {state:?}");
            }
        }
    }
}
