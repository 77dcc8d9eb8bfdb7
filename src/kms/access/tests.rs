//! The evaluation table: key policy statements × principal × action × request facts
//! (× grants) → which statement or grant decides.

use std::collections::BTreeMap;

use super::*;
use crate::auth::Principal;
use crate::kms::grants::GrantConstraints;
use crate::kms::policy::{GrantFacts, default_policy_text};

const KEY: &str = "arn:aws:kms:us-east-1:000000000000:key/11111111-2222-3333-4444-555555555555";
const OTHER_KEY: &str =
    "arn:aws:kms:us-east-1:000000000000:key/99999999-2222-3333-4444-555555555555";

fn who(w: &str) -> Principal {
    let (account, name, is_root) = match w {
        "root" => ("000000000000", "admin", true),
        "alice" => ("000000000000", "alice", false),
        "bob" => ("000000000000", "bob", false),
        "mallory" => ("999999999999", "mallory", false),
        "broot" => ("999999999999", "admin", true),
        _ => panic!("unknown principal {w}"),
    };
    Principal {
        name: name.into(),
        account: account.into(),
        is_root,
    }
}

/// `"bob:Decrypt,Encrypt|sub:app=x"` → one grant to bob.
fn grants(spec: &str) -> Vec<super::Grant> {
    if spec.is_empty() {
        return Vec::new();
    }
    let (head, constraint) = spec.split_once('|').unwrap_or((spec, ""));
    let (grantee, ops) = head.split_once(':').unwrap();
    let ctx = |s: &str| -> BTreeMap<String, String> {
        let (k, v) = s.split_once('=').unwrap();
        [(k.to_string(), v.to_string())].into()
    };
    let constraints = match constraint.split_once(':') {
        Some(("sub", c)) => Some(GrantConstraints {
            encryption_context_subset: Some(ctx(c)),
            ..Default::default()
        }),
        Some(("eq", c)) => Some(GrantConstraints {
            encryption_context_equals: Some(ctx(c)),
            ..Default::default()
        }),
        _ => None,
    };
    vec![super::Grant {
        grant_id: "g-1".into(),
        key_id: uuid::Uuid::nil(),
        name: None,
        grantee_principal: who(grantee).arn(),
        retiring_principal: None,
        issuing_account: "arn:aws:iam::000000000000:root".into(),
        operations: ops.split(',').map(str::to_string).collect(),
        constraints,
        created_ms: 0,
        region: None,
    }]
}

#[derive(Debug, PartialEq)]
enum Want {
    Allow(&'static str),
    Deny(&'static str),
    Grant,
    Implicit,
}
use Want::*;

struct Case {
    name: &'static str,
    /// JSON array of statements; "DEFAULT" = the default key policy.
    statements: &'static str,
    who: &'static str,
    action: &'static str,
    ctx: &'static [(&'static str, &'static str)],
    /// "", "s3", "ip:<addr>", "s3+ip:<addr>", "bypass", "grantops:Decrypt,Encrypt",
    /// "key:<arn>" (another resource).
    facts: &'static str,
    grants: &'static str,
    want: Want,
}

const ALLOW_ROOT: &str = r#"{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kms:*","Resource":"*"}"#;

fn cases() -> Vec<Case> {
    let c = |name, statements, who, action, want| Case {
        name,
        statements,
        who,
        action,
        ctx: &[],
        facts: "",
        grants: "",
        want,
    };
    vec![
        // --- the default policy: the account (all its principals), nobody else
        c(
            "default: root may decrypt",
            "DEFAULT",
            "root",
            "kms:Decrypt",
            Allow("Enable IAM User Permissions"),
        ),
        c(
            "default: account user may generate data keys",
            "DEFAULT",
            "alice",
            "kms:GenerateDataKey",
            Allow("Enable IAM User Permissions"),
        ),
        c(
            "default: other account user is denied",
            "DEFAULT",
            "mallory",
            "kms:Decrypt",
            Implicit,
        ),
        c(
            "default: other account root is denied",
            "DEFAULT",
            "broot",
            "kms:DescribeKey",
            Implicit,
        ),
        // --- action wildcards and case
        c(
            "Generate* matches GenerateDataKey",
            r#"[{"Sid":"G","Effect":"Allow","Principal":"*","Action":"kms:Generate*","Resource":"*"}]"#,
            "bob",
            "kms:GenerateDataKey",
            Allow("G"),
        ),
        c(
            "Generate* does not match Decrypt",
            r#"[{"Sid":"G","Effect":"Allow","Principal":"*","Action":"kms:Generate*","Resource":"*"}]"#,
            "bob",
            "kms:Decrypt",
            Implicit,
        ),
        c(
            "actions are case-insensitive",
            r#"[{"Sid":"D","Effect":"Allow","Principal":"*","Action":"KMS:DECRYPT","Resource":"*"}]"#,
            "bob",
            "kms:Decrypt",
            Allow("D"),
        ),
        c(
            "bare * action matches everything",
            r#"[{"Sid":"S","Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]"#,
            "bob",
            "kms:ScheduleKeyDeletion",
            Allow("S"),
        ),
        c(
            "ReEncrypt* matches ReEncryptFrom",
            r#"[{"Sid":"R","Effect":"Allow","Principal":"*","Action":["kms:Decrypt","kms:ReEncrypt*"],"Resource":"*"}]"#,
            "bob",
            "kms:ReEncryptFrom",
            Allow("R"),
        ),
        c(
            "? matches one character",
            r#"[{"Sid":"Q","Effect":"Allow","Principal":"*","Action":"kms:?ncrypt","Resource":"*"}]"#,
            "bob",
            "kms:Encrypt",
            Allow("Q"),
        ),
        c(
            "NotAction allows the other actions",
            r#"[{"Sid":"N","Effect":"Allow","Principal":"*","NotAction":"kms:Decrypt","Resource":"*"}]"#,
            "bob",
            "kms:Encrypt",
            Allow("N"),
        ),
        c(
            "NotAction excludes its action",
            r#"[{"Sid":"N","Effect":"Allow","Principal":"*","NotAction":"kms:Decrypt","Resource":"*"}]"#,
            "bob",
            "kms:Decrypt",
            Implicit,
        ),
        // --- principals
        c(
            "Principal * admits another account",
            r#"[{"Sid":"P","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]"#,
            "mallory",
            "kms:Decrypt",
            Allow("P"),
        ),
        c(
            "Principal AWS * admits an account user",
            r#"[{"Sid":"P","Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*"}]"#,
            "bob",
            "kms:Decrypt",
            Allow("P"),
        ),
        c(
            "a named user is admitted",
            r#"[{"Sid":"A","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/alice"},"Action":"kms:*","Resource":"*"}]"#,
            "alice",
            "kms:Decrypt",
            Allow("A"),
        ),
        c(
            "a named user does not admit another user",
            r#"[{"Sid":"A","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/alice"},"Action":"kms:*","Resource":"*"}]"#,
            "bob",
            "kms:Decrypt",
            Implicit,
        ),
        c(
            "a named user does not admit the root",
            r#"[{"Sid":"A","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/alice"},"Action":"kms:*","Resource":"*"}]"#,
            "root",
            "kms:Decrypt",
            Implicit,
        ),
        c(
            "a bare account id stands for the account",
            r#"[{"Sid":"B","Effect":"Allow","Principal":{"AWS":"000000000000"},"Action":"kms:*","Resource":"*"}]"#,
            "bob",
            "kms:Encrypt",
            Allow("B"),
        ),
        c(
            "a named other-account root admits that account (cross-account)",
            r#"[{"Sid":"X","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::000000000000:user/alice","arn:aws:iam::999999999999:root"]},"Action":"kms:Decrypt","Resource":"*"}]"#,
            "mallory",
            "kms:Decrypt",
            Allow("X"),
        ),
        c(
            "a role ARN never matches a sealgate user",
            r#"[{"Sid":"R","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:role/alice"},"Action":"kms:*","Resource":"*"}]"#,
            "alice",
            "kms:Decrypt",
            Implicit,
        ),
        // --- explicit deny wins
        c(
            "explicit deny beats the account allow",
            r#"[ALLOW_ROOT,{"Sid":"NoBob","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/bob"},"Action":"kms:Decrypt","Resource":"*"}]"#,
            "bob",
            "kms:Decrypt",
            Deny("NoBob"),
        ),
        c(
            "deny for one action leaves others allowed",
            r#"[ALLOW_ROOT,{"Sid":"NoBob","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/bob"},"Action":"kms:Decrypt","Resource":"*"}]"#,
            "bob",
            "kms:Encrypt",
            Allow("Root"),
        ),
        c(
            "deny for bob leaves alice allowed",
            r#"[ALLOW_ROOT,{"Sid":"NoBob","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/bob"},"Action":"kms:Decrypt","Resource":"*"}]"#,
            "alice",
            "kms:Decrypt",
            Allow("Root"),
        ),
        c(
            "deny listed first still wins over a later allow",
            r#"[{"Sid":"NoAll","Effect":"Deny","Principal":"*","Action":"kms:Generate*","Resource":"*"},ALLOW_ROOT]"#,
            "root",
            "kms:GenerateDataKey",
            Deny("NoAll"),
        ),
        // --- conditions: encryption context
        Case {
            ctx: &[("app", "billing")],
            ..c(
                "StringEquals on a context value matches",
                r#"[{"Sid":"Ctx","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:app":"billing"}}}]"#,
                "bob",
                "kms:Decrypt",
                Allow("Ctx"),
            )
        },
        Case {
            ctx: &[("app", "hr")],
            ..c(
                "StringEquals on a context value mismatches",
                r#"[{"Sid":"Ctx","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:app":"billing"}}}]"#,
                "bob",
                "kms:Decrypt",
                Implicit,
            )
        },
        c(
            "StringEquals on an absent context key fails",
            r#"[{"Sid":"Ctx","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:app":"billing"}}}]"#,
            "bob",
            "kms:Decrypt",
            Implicit,
        ),
        Case {
            ctx: &[("aws:s3:arn", "arn:aws:s3:::bucket-a/reports/q1.csv")],
            ..c(
                "StringLike on the S3 ARN in the context matches",
                r#"[{"Sid":"S3","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringLike":{"kms:EncryptionContext:aws:s3:arn":"arn:aws:s3:::bucket-a/*"}}}]"#,
                "bob",
                "kms:Decrypt",
                Allow("S3"),
            )
        },
        Case {
            ctx: &[("aws:s3:arn", "arn:aws:s3:::bucket-b/x")],
            ..c(
                "StringLike on the S3 ARN rejects another bucket",
                r#"[{"Sid":"S3","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringLike":{"kms:EncryptionContext:aws:s3:arn":"arn:aws:s3:::bucket-a/*"}}}]"#,
                "bob",
                "kms:Decrypt",
                Implicit,
            )
        },
        Case {
            ctx: &[("app", "x")],
            ..c(
                "ForAllValues: every context key is permitted",
                r#"[{"Sid":"K","Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["app","team"]}}}]"#,
                "bob",
                "kms:Encrypt",
                Allow("K"),
            )
        },
        Case {
            ctx: &[("app", "x"), ("other", "y")],
            ..c(
                "ForAllValues: an extra context key fails",
                r#"[{"Sid":"K","Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["app","team"]}}}]"#,
                "bob",
                "kms:Encrypt",
                Implicit,
            )
        },
        Case {
            ctx: &[("app", "x")],
            ..c(
                "ForAnyValue: no wanted key present fails",
                r#"[{"Sid":"K","Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":"team"}}}]"#,
                "bob",
                "kms:Encrypt",
                Implicit,
            )
        },
        Case {
            ctx: &[("team", "a"), ("x", "1")],
            ..c(
                "ForAnyValue: one wanted key present matches",
                r#"[{"Sid":"K","Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":"team"}}}]"#,
                "bob",
                "kms:Encrypt",
                Allow("K"),
            )
        },
        Case {
            ctx: &[("env", "dev")],
            ..c(
                "StringNotEquals holds for another value",
                r#"[{"Sid":"NP","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringNotEquals":{"kms:EncryptionContext:env":"prod"}}}]"#,
                "bob",
                "kms:Decrypt",
                Allow("NP"),
            )
        },
        Case {
            ctx: &[("env", "prod")],
            ..c(
                "StringNotEquals fails for the value",
                r#"[{"Sid":"NP","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringNotEquals":{"kms:EncryptionContext:env":"prod"}}}]"#,
                "bob",
                "kms:Decrypt",
                Implicit,
            )
        },
        c(
            "Null false requires some context: none given",
            r#"[{"Sid":"Need","Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{"Null":{"kms:EncryptionContextKeys":"false"}}}]"#,
            "bob",
            "kms:Encrypt",
            Implicit,
        ),
        Case {
            ctx: &[("a", "1")],
            ..c(
                "Null false requires some context: given",
                r#"[{"Sid":"Need","Effect":"Allow","Principal":"*","Action":"kms:Encrypt","Resource":"*","Condition":{"Null":{"kms:EncryptionContextKeys":"false"}}}]"#,
                "bob",
                "kms:Encrypt",
                Allow("Need"),
            )
        },
        Case {
            ctx: &[("app", "b")],
            ..c(
                "several values are alternatives",
                r#"[{"Sid":"Or","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:app":["a","b"]}}}]"#,
                "bob",
                "kms:Decrypt",
                Allow("Or"),
            )
        },
        Case {
            ctx: &[("app", "a")],
            ..c(
                "several keys must all hold",
                r#"[{"Sid":"And","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:app":"a","kms:EncryptionContext:team":"x"}}}]"#,
                "bob",
                "kms:Decrypt",
                Implicit,
            )
        },
        // --- caller account, via service, source IP, bool
        c(
            "condition key names are case-insensitive (CallerAccount)",
            r#"[{"Sid":"Acct","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"KMS:CallerAccount":"000000000000"}}}]"#,
            "alice",
            "kms:Decrypt",
            Allow("Acct"),
        ),
        c(
            "CallerAccount keeps other accounts out of Principal *",
            r#"[{"Sid":"Acct","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"000000000000"}}}]"#,
            "mallory",
            "kms:Decrypt",
            Implicit,
        ),
        Case {
            facts: "s3",
            ..c(
                "ViaService matches calls through S3",
                r#"[{"Sid":"Via","Effect":"Allow","Principal":"*","Action":"kms:GenerateDataKey*","Resource":"*","Condition":{"StringEquals":{"kms:ViaService":"s3.us-east-1.amazonaws.com"}}}]"#,
                "bob",
                "kms:GenerateDataKey",
                Allow("Via"),
            )
        },
        c(
            "ViaService does not match direct calls",
            r#"[{"Sid":"Via","Effect":"Allow","Principal":"*","Action":"kms:GenerateDataKey*","Resource":"*","Condition":{"StringEquals":{"kms:ViaService":"s3.us-east-1.amazonaws.com"}}}]"#,
            "bob",
            "kms:GenerateDataKey",
            Implicit,
        ),
        c(
            "...IfExists holds when the key is absent",
            r#"[{"Sid":"Via","Effect":"Allow","Principal":"*","Action":"kms:GenerateDataKey*","Resource":"*","Condition":{"StringEqualsIfExists":{"kms:ViaService":"s3.us-east-1.amazonaws.com"}}}]"#,
            "bob",
            "kms:GenerateDataKey",
            Allow("Via"),
        ),
        Case {
            facts: "ip:10.1.2.3",
            ..c(
                "deny outside a network: inside is allowed",
                r#"[ALLOW_ROOT,{"Sid":"Net","Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]"#,
                "alice",
                "kms:Decrypt",
                Allow("Root"),
            )
        },
        Case {
            facts: "ip:192.168.1.1",
            ..c(
                "deny outside a network: outside is denied",
                r#"[ALLOW_ROOT,{"Sid":"Net","Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]"#,
                "alice",
                "kms:Decrypt",
                Deny("Net"),
            )
        },
        c(
            "deny outside a network: no source IP is denied",
            r#"[ALLOW_ROOT,{"Sid":"Net","Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]"#,
            "alice",
            "kms:Decrypt",
            Deny("Net"),
        ),
        Case {
            facts: "ip:2001:db8::5",
            ..c(
                "IpAddress matches an IPv6 network",
                r#"[{"Sid":"V6","Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32"]}}}]"#,
                "bob",
                "kms:Decrypt",
                Allow("V6"),
            )
        },
        Case {
            facts: "bypass",
            ..c(
                "Bool on BypassPolicyLockoutSafetyCheck",
                r#"[ALLOW_ROOT,{"Sid":"NoBypass","Effect":"Deny","Principal":"*","Action":"kms:PutKeyPolicy","Resource":"*","Condition":{"Bool":{"kms:BypassPolicyLockoutSafetyCheck":"true"}}}]"#,
                "root",
                "kms:PutKeyPolicy",
                Deny("NoBypass"),
            )
        },
        c(
            "Bool on an absent key does not hold",
            r#"[ALLOW_ROOT,{"Sid":"NoBypass","Effect":"Deny","Principal":"*","Action":"kms:PutKeyPolicy","Resource":"*","Condition":{"Bool":{"kms:BypassPolicyLockoutSafetyCheck":"true"}}}]"#,
            "root",
            "kms:PutKeyPolicy",
            Allow("Root"),
        ),
        // --- resources
        c(
            "Resource glob over key ARNs",
            r#"[{"Sid":"Keys","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"arn:aws:kms:us-east-1:000000000000:key/*"}]"#,
            "bob",
            "kms:Decrypt",
            Allow("Keys"),
        ),
        Case {
            facts: "key:other",
            ..c(
                "Resource naming one key does not cover another",
                r#"[{"Sid":"One","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"arn:aws:kms:us-east-1:000000000000:key/11111111-2222-3333-4444-555555555555"}]"#,
                "bob",
                "kms:Decrypt",
                Implicit,
            )
        },
        // --- grant operations condition (CreateGrant)
        Case {
            facts: "grantops:Decrypt",
            ..c(
                "GrantOperations within the allowed set",
                r#"[{"Sid":"GO","Effect":"Allow","Principal":"*","Action":"kms:CreateGrant","Resource":"*","Condition":{"ForAllValues:StringEquals":{"kms:GrantOperations":["Decrypt","Encrypt"]}}}]"#,
                "bob",
                "kms:CreateGrant",
                Allow("GO"),
            )
        },
        Case {
            facts: "grantops:Decrypt,CreateGrant",
            ..c(
                "GrantOperations outside the allowed set",
                r#"[{"Sid":"GO","Effect":"Allow","Principal":"*","Action":"kms:CreateGrant","Resource":"*","Condition":{"ForAllValues:StringEquals":{"kms:GrantOperations":["Decrypt","Encrypt"]}}}]"#,
                "bob",
                "kms:CreateGrant",
                Implicit,
            )
        },
        // --- grants
        Case {
            grants: "bob:Decrypt",
            ..c(
                "a grant allows its grantee",
                r#"[{"Sid":"A","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/alice"},"Action":"kms:*","Resource":"*"}]"#,
                "bob",
                "kms:Decrypt",
                Grant,
            )
        },
        Case {
            grants: "bob:Decrypt",
            ..c(
                "a grant does not allow other operations",
                r#"[{"Sid":"A","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/alice"},"Action":"kms:*","Resource":"*"}]"#,
                "bob",
                "kms:Encrypt",
                Implicit,
            )
        },
        Case {
            grants: "bob:Decrypt",
            ..c(
                "a grant to bob does not allow mallory",
                "DEFAULT",
                "mallory",
                "kms:Decrypt",
                Implicit,
            )
        },
        Case {
            grants: "mallory:Decrypt,GenerateDataKey",
            ..c(
                "a grant admits another account's user",
                "DEFAULT",
                "mallory",
                "kms:GenerateDataKey",
                Grant,
            )
        },
        Case {
            grants: "bob:Decrypt|sub:app=x",
            ctx: &[("app", "x"), ("y", "1")],
            ..c(
                "EncryptionContextSubset satisfied",
                r#"[{"Sid":"A","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/alice"},"Action":"kms:*","Resource":"*"}]"#,
                "bob",
                "kms:Decrypt",
                Grant,
            )
        },
        Case {
            grants: "bob:Decrypt|sub:app=x",
            ctx: &[("app", "z")],
            ..c(
                "EncryptionContextSubset violated",
                r#"[{"Sid":"A","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/alice"},"Action":"kms:*","Resource":"*"}]"#,
                "bob",
                "kms:Decrypt",
                Implicit,
            )
        },
        Case {
            grants: "bob:Decrypt|eq:app=x",
            ctx: &[("app", "x"), ("y", "1")],
            ..c(
                "EncryptionContextEquals needs the exact context",
                r#"[{"Sid":"A","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/alice"},"Action":"kms:*","Resource":"*"}]"#,
                "bob",
                "kms:Decrypt",
                Implicit,
            )
        },
        Case {
            grants: "bob:Decrypt",
            ..c(
                "an explicit deny beats a grant",
                r#"[ALLOW_ROOT,{"Sid":"NoBob","Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:user/bob"},"Action":"kms:*","Resource":"*"}]"#,
                "bob",
                "kms:Decrypt",
                Deny("NoBob"),
            )
        },
    ]
}

#[test]
fn policy_and_grant_evaluation_table() {
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let doc = if case.statements == "DEFAULT" {
            default_policy_text("000000000000")
        } else {
            format!(
                r#"{{"Version":"2012-10-17","Statement":{}}}"#,
                case.statements.replace("ALLOW_ROOT", ALLOW_ROOT)
            )
        };
        let policy = Policy::parse(&doc).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let principal = who(case.who);
        let ctx: crate::kms::EncryptionContext = case
            .ctx
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let grant_ops: Vec<String> = case
            .facts
            .strip_prefix("grantops:")
            .map(|o| o.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        let resource = if case.facts == "key:other" {
            OTHER_KEY
        } else {
            KEY
        };
        let mut facts = RequestFacts::new(&principal, case.action, resource);
        facts.encryption_context = Some(&ctx);
        for part in case.facts.split('+') {
            match part.split_once(':') {
                _ if part == "s3" => facts.via_service = Some("s3.us-east-1.amazonaws.com"),
                _ if part == "bypass" => facts.bypass_lockout = Some(true),
                Some(("ip", ip)) => facts.source_ip = Some(ip.parse().unwrap()),
                Some(("grantops", _)) => {
                    facts.grant = Some(GrantFacts {
                        operations: &grant_ops,
                        grantee: "arn:aws:iam::000000000000:user/alice",
                        retiring: None,
                    })
                }
                _ => {}
            }
        }
        let gs = grants(case.grants);
        let d = decide(&policy, &gs, &facts);
        let got = match d {
            Decided::Policy(Decision::Allow(i)) => Allow(sid(&policy, i)),
            Decided::Policy(Decision::Deny(i)) => Deny(sid(&policy, i)),
            Decided::Grant(_) => Grant,
            Decided::Policy(Decision::NoMatch) => Implicit,
        };
        if got != case.want {
            failures.push(format!("{}: got {got:?}, want {:?}", case.name, case.want));
        }
        // Every refusal is an AccessDeniedException naming principal, action, key.
        if !d.allowed() {
            let msg = d.denial(&facts, &policy).to_string();
            assert!(
                msg.contains(&principal.arn())
                    && msg.contains(case.action)
                    && msg.contains(resource),
                "{}: {msg}",
                case.name
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Sids in the table are 'static: leak the few strings a test run needs.
fn sid(p: &Policy, i: usize) -> &'static str {
    Box::leak(p.sid(i).unwrap_or("").to_string().into_boxed_str())
}

#[test]
fn explanation_names_statement_or_grant() {
    let x = Explanation {
        allowed: false,
        principal_arn: "arn:aws:iam::000000000000:user/bob".into(),
        action: "kms:Decrypt".into(),
        key_arn: KEY.into(),
        reason: Reason::PolicyDeny {
            statement: 1,
            sid: Some("NoBob".into()),
        },
        state_error: None,
    };
    let s = x.to_string();
    assert!(
        s.starts_with("DENIED") && s.contains("Statement[1] (Sid \"NoBob\")"),
        "{s}"
    );
    let g = Explanation {
        allowed: true,
        reason: Reason::Grant {
            grant_id: "abc".into(),
            name: Some("n".into()),
        },
        ..x
    };
    assert!(g.to_string().contains("allowed by grant abc (Name \"n\")"));
}
