//! Loading and validating the configuration: files, environment overrides, refusals that name the field.

use super::*;

const GOOD: &str = r#"
    listen = "127.0.0.1:9000"
    [upstream]
    endpoint = "http://127.0.0.1:3900"
    region = "garage"
    access_key_id = "GKexample"
    secret_access_key = "upstreamsecret"
    [[access_keys]]
    access_key_id = "AKIDALICE"
    secret_access_key = "alice-secret-key-1"
    principal = "alice"
    policies = ["s3-full"]
    [policies.s3-full]
    document = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'
"#;

#[test]
fn a_complete_file_validates() {
    let mut c = Config::from_toml(GOOD).unwrap();
    c.validate().unwrap();
    assert_eq!(c.listen.port(), 9000);
    assert_eq!(
        c.access_key_table().principal("AKIDALICE").unwrap().arn(),
        "arn:aws:iam::000000000000:user/alice"
    );
}

#[test]
fn a_missing_endpoint_names_the_field() {
    let mut c =
        Config::from_toml(&GOOD.replace("endpoint = \"http://127.0.0.1:3900\"", "")).unwrap();
    let e = c.validate().unwrap_err();
    assert_eq!(e.field, "upstream.endpoint");
}

#[test]
fn an_unknown_field_is_rejected_with_its_line() {
    let e = Config::from_toml("listen = \"127.0.0.1:1\"\nbogus = 1\n").unwrap_err();
    assert!(e.reason.contains("bogus"), "{e}");
    assert_eq!(e.field, "line 2");
}

#[test]
fn env_overrides_the_file_and_secrets_stay_redacted() {
    let mut c = Config::from_toml(GOOD).unwrap();
    c.apply_env(|k| match k {
        "SEALGATE_UPSTREAM_ENDPOINT" => Some("http://10.0.0.1:1234".into()),
        "SEALGATE_UPSTREAM_SECRET_ACCESS_KEY" => Some("from-env-secret".into()),
        _ => None,
    })
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.upstream.endpoint, "http://10.0.0.1:1234");
    assert_eq!(c.upstream.secret_access_key.expose(), "from-env-secret");
    let dbg = format!("{c:?}");
    assert!(
        !dbg.contains("from-env-secret") && !dbg.contains("alice-secret-key-1"),
        "{dbg}"
    );
}

#[test]
fn kms_regions_come_from_the_file_or_env_and_must_include_the_home_region() {
    let t = format!("{GOOD}\n[kms]\nregions = [\"us-east-1\", \"eu-west-1\"]\n");
    let mut c = Config::from_toml(&t).unwrap();
    c.validate().unwrap();
    assert_eq!(c.kms.served_regions(), ["us-east-1", "eu-west-1"]);

    let mut c = Config::from_toml(GOOD).unwrap();
    assert_eq!(c.kms.served_regions(), ["us-east-1"]);
    c.apply_env(|k| (k == "SEALGATE_KMS_REGIONS").then(|| "eu-west-1, ap-south-1".into()))
        .unwrap();
    let e = c.validate().unwrap_err();
    assert!(
        e.to_string().contains("must include the home region"),
        "{e}"
    );
    c.apply_env(|k| (k == "SEALGATE_KMS_REGIONS").then(|| "us-east-1,eu-west-1,ap-south-1".into()))
        .unwrap();
    c.validate().unwrap();
    assert_eq!(
        c.kms.served_regions(),
        ["us-east-1", "eu-west-1", "ap-south-1"]
    );
}

#[test]
fn worker_threads_come_from_the_file_or_env_and_zero_is_refused() {
    let mut c = Config::from_toml(&format!("worker_threads = 1\n{GOOD}")).unwrap();
    c.validate().unwrap();
    assert_eq!(c.worker_threads, Some(1));
    c.apply_env(|k| (k == "SEALGATE_WORKER_THREADS").then(|| "0".into()))
        .unwrap();
    assert_eq!(c.validate().unwrap_err().field, "worker_threads");
    let e = c
        .apply_env(|k| (k == "SEALGATE_WORKER_THREADS").then(|| "two".into()))
        .unwrap_err();
    assert_eq!(e.field, "SEALGATE_WORKER_THREADS");
    let mut c = Config::from_toml(GOOD).unwrap();
    c.validate().unwrap();
    assert_eq!(c.worker_threads, None, "default: one per core");
}

#[test]
fn no_setting_turns_off_upstream_certificate_verification() {
    for k in [
        "danger_accept_invalid_certs",
        "insecure",
        "tls_verify",
        "verify_tls",
        "skip_tls_verify",
    ] {
        let t = GOOD.replace(
            "region = \"garage\"",
            &format!("region = \"garage\"\n{k} = true"),
        );
        assert!(Config::from_toml(&t).is_err(), "{k} is not a setting");
    }
}

#[test]
fn a_client_secret_shorter_than_16_characters_is_refused_naming_its_key() {
    let t = GOOD.replace("alice-secret-key-1", "fifteen-chars-x");
    let e = Config::from_toml(&t).unwrap().validate().unwrap_err();
    assert_eq!(e.field, "access_keys[0].secret_access_key");
    assert!(
        e.reason.contains("AKIDALICE") && e.reason.contains("16"),
        "{e}"
    );
    let t = GOOD.replace("alice-secret-key-1", "sixteen-chars-xy");
    Config::from_toml(&t).unwrap().validate().unwrap();
    // From a file too.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("s");
    std::fs::write(&f, "short-secret\n").unwrap();
    let t = GOOD.replace(
        "secret_access_key = \"alice-secret-key-1\"",
        &format!("secret_access_key_file = \"{}\"", f.display()),
    );
    let e = Config::from_toml(&t).unwrap().validate().unwrap_err();
    assert!(e.reason.contains("AKIDALICE"), "{e}");
}

#[test]
fn the_metrics_token_comes_from_the_file_or_env_and_stays_redacted() {
    let mut c = Config::from_toml(GOOD).unwrap();
    c.validate().unwrap();
    assert!(c.metrics_token.is_none(), "off by default");
    let mut c = Config::from_toml(&format!(
        "metrics_token = \"prometheus-scrape-token\"\n{GOOD}"
    ))
    .unwrap();
    c.validate().unwrap();
    assert_eq!(
        c.metrics_token.as_ref().unwrap().expose(),
        "prometheus-scrape-token"
    );
    assert!(!format!("{c:?}").contains("prometheus-scrape-token"));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("token");
    std::fs::write(&f, "token-from-a-file-0001\n").unwrap();
    let mut c =
        Config::from_toml(&format!("metrics_token_file = \"{}\"\n{GOOD}", f.display())).unwrap();
    c.validate().unwrap();
    assert_eq!(
        c.metrics_token.as_ref().unwrap().expose(),
        "token-from-a-file-0001"
    );
    let mut c = Config::from_toml(GOOD).unwrap();
    c.apply_env(|k| (k == "SEALGATE_METRICS_TOKEN").then(|| "short".into()))
        .unwrap();
    assert_eq!(c.validate().unwrap_err().field, "metrics_token");
}

#[test]
fn a_duplicate_access_key_is_rejected() {
    let dup = format!(
        "{GOOD}\n[[access_keys]]\naccess_key_id = \"AKIDALICE\"\nsecret_access_key = \"bob-other-secret-key\"\nprincipal = \"bob\"\npolicies = [\"s3-full\"]\n"
    );
    let mut c = Config::from_toml(&dup).unwrap();
    assert_eq!(
        c.validate().unwrap_err().field,
        "access_keys[1].access_key_id"
    );
}

/// GOOD with alice's `policies = [...]` line replaced by `attach` (TOML lines of her key).
fn alice_with(attach: &str) -> String {
    GOOD.replace("    policies = [\"s3-full\"]\n", &format!("{attach}\n"))
}

#[test]
fn a_non_root_key_without_a_policy_is_refused_naming_the_key() {
    let mut c = Config::from_toml(&alice_with("")).unwrap();
    let e = crate::check_config(&mut c).unwrap_err();
    assert_eq!(e.field, "access_keys[0]");
    assert!(
        e.reason.contains("AKIDALICE")
            && e.reason.contains("alice")
            && e.reason.contains("no identity policy"),
        "{e}"
    );
    // A root key needs none.
    let mut c = Config::from_toml(&alice_with("root = true")).unwrap();
    c.validate().unwrap();
}

#[test]
fn policies_are_checked_when_the_configuration_is_loaded() {
    let cases = [
        (
            alice_with("policies = [\"s3-ful\"]"),
            "access_keys[0].policies[0]",
            "no policy named `s3-ful`",
        ),
        (
            alice_with("policy = '{\"Statement\": ['"),
            "access_keys[0].policy",
            "not valid JSON",
        ),
        (
            alice_with(
                "policy = '{\"Statement\":{\"Effect\":\"Allow\",\"Action\":\"s3:*\",\"Resource\":\"*\",\"Condition\":{\"StringEquals\":{\"s3:nope\":\"x\"}}}}'",
            ),
            "access_keys[0].policy",
            "does not supply the condition key s3:nope",
        ),
        (
            GOOD.replace("\"s3:*\"", "\"s3:*\","),
            "policies.s3-full",
            "not valid JSON",
        ),
        (
            format!("{GOOD}\n[policies.unused]\ndocument = '{{\"Statement\":[]}}'\n"),
            "policies.unused",
            "Statement: expected",
        ),
        (
            format!("{GOOD}\n[policies.empty]\n"),
            "policies.empty",
            "either as `document` or as `file`",
        ),
        (
            alice_with("policy = '{}'\npolicy_file = \"/nonexistent\""),
            "access_keys[0].policy_file",
            "not both",
        ),
        (
            alice_with("policies = [\"s3-full\"]\nstore_access_key_id = \"GKalice\""),
            "access_keys[0].store_access_key_id",
            "needs both",
        ),
    ];
    for (toml, field, reason) in cases {
        let mut c = Config::from_toml(&toml).unwrap();
        let e = crate::check_config(&mut c).unwrap_err();
        assert_eq!(e.field, field, "{toml}\n{e}");
        assert!(e.reason.contains(reason), "{toml}\n{e}");
    }
}

#[test]
fn policies_and_store_secrets_come_from_files_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("alice.json");
    std::fs::write(
        &doc,
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
    )
    .unwrap();
    let t = alice_with(&format!(
        "policy_file = \"{}\"\nstore_access_key_id = \"GKalice\"\nstore_secret_access_key_env = \"ALICE_STORE_SECRET\"",
        doc.display()
    ));
    let mut c = Config::from_toml(&t).unwrap();
    let e = c.clone().apply_env(|_| None).unwrap_err();
    assert_eq!(e.field, "access_keys[0].store_secret_access_key_env");
    c.apply_env(|k| (k == "ALICE_STORE_SECRET").then(|| "alice-store-secret".into()))
        .unwrap();
    c.validate().unwrap();
    assert!(
        c.access_keys[0]
            .policy
            .as_deref()
            .unwrap()
            .contains("arn:aws:s3:::b/*")
    );
    assert!(!format!("{c:?}").contains("alice-store-secret"));
    // A named policy from a file.
    let t = format!(
        "{}\n[policies.from-file]\nfile = \"{}\"\n",
        alice_with("policies = [\"from-file\"]"),
        doc.display()
    );
    Config::from_toml(&t).unwrap().validate().unwrap();
}

/// The README's configuration example is a configuration sealgate reads, and its
/// access key's policies are valid.
#[test]
fn the_readme_example_parses_and_its_policies_are_valid() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```toml\nlisten")
        .expect("README has the config block")
        + 8;
    let len = readme[start..].find("```").unwrap();
    let c = Config::from_toml(&readme[start..start + len]).unwrap();
    assert_eq!(c.access_keys[0].policies, ["s3-full"]);
    crate::s3::authz::Authz::from_config(&c).unwrap();
}

/// The `[kms_unseal]` and `[kms.hsm_clusters]` examples of docs/kms.md ("Key stores") are
/// configuration sealgate reads and accepts.
#[test]
fn the_key_store_examples_in_the_kms_docs_parse_and_validate() {
    let doc = include_str!("../../docs/kms.md");
    let section = &doc[doc
        .find("## Key stores")
        .expect("docs/kms.md has Key stores")..];
    let blocks: Vec<&str> = section
        .split("```toml\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .take(2)
        .collect();
    assert!(blocks[0].contains("[kms_unseal]") && blocks[1].contains("[kms.hsm_clusters."));
    let t = format!("{GOOD}\n{}\n{}", blocks[0], blocks[1]);
    let mut c = Config::from_toml(&t).unwrap();
    crate::check_config(&mut c).unwrap();
    let u = c.kms_unseal.as_ref().unwrap();
    assert_eq!(u.method(), crate::unseal::Method::Pkcs11);
    assert_eq!(c.kms.hsm_clusters.len(), 1);
    // A root key file besides [kms_unseal] is ambiguous.
    let mut both = Config::from_toml(&t).unwrap();
    both.kms.root_key_file = Some("/etc/sealgate/root.key".into());
    assert_eq!(
        crate::check_config(&mut both).unwrap_err().field,
        "kms.root_key_file"
    );
    // A cluster id AWS clients would refuse is refused here.
    let bad = t.replace("cluster-sealgatehsma", "my-hsm");
    let mut c = Config::from_toml(&bad).unwrap();
    let e = crate::check_config(&mut c).unwrap_err();
    assert!(e.reason.contains("cluster id"), "{e}");
}
