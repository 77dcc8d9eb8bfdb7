//! The independent implementations the KMS tests cross-check against: the `openssl`
//! CLI (SEALGATE_TEST_OPENSSL, default `openssl`) and Python's `cryptography` package
//! (SEALGATE_TEST_PYTHON, default the repository's `.venv/bin/python`, which
//! scripts/setup.sh provisions). If a tool cannot be run the tests fail rather than skip.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The openssl CLI in a scratch directory.
pub struct Openssl {
    pub bin: String,
    pub dir: tempfile::TempDir,
}

impl Openssl {
    pub fn new() -> Openssl {
        Openssl {
            bin: std::env::var("SEALGATE_TEST_OPENSSL").unwrap_or_else(|_| "openssl".into()),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs openssl; returns (success, stdout+stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(&self.bin)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run openssl '{}' ({e}); install it (scripts/setup.sh) or set SEALGATE_TEST_OPENSSL",
                    self.bin
                )
            });
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, text) = self.run(args);
        assert!(ok, "openssl {args:?} failed: {text}");
        text
    }

    /// A PEM public key file from DER SubjectPublicKeyInfo (also proves the DER parses).
    pub fn public_pem(&self, name: &str, der: &[u8]) -> PathBuf {
        self.pem(name, der, &["-pubin"])
    }

    /// A PEM private key file from DER PKCS#8 (also proves the DER parses).
    pub fn private_pem(&self, name: &str, der: &[u8]) -> PathBuf {
        self.pem(name, der, &[])
    }

    fn pem(&self, name: &str, der: &[u8], kind: &[&str]) -> PathBuf {
        let der_path = self.file(&format!("{name}.der"), der);
        let pem = self.path(&format!("{name}.pem"));
        let mut args = vec!["pkey"];
        args.extend(kind);
        args.extend(["-inform", "DER", "-in", s(&der_path), "-out", s(&pem)]);
        self.ok(&args);
        pem
    }

    /// `openssl pkeyutl -verify -rawin` (EdDSA: the message itself, no digest).
    pub fn verifies_raw(&self, pem: &Path, msg: &[u8], sig: &[u8]) -> bool {
        let m = self.file("raw-msg.bin", msg);
        let sg = self.file("raw-sig.bin", sig);
        let (ok, text) = self.run(&[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            s(pem),
            "-rawin",
            "-in",
            s(&m),
            "-sigfile",
            s(&sg),
        ]);
        ok && text.contains("Signature Verified Successfully")
    }

    /// `openssl dgst -verify` of `sig` over `msg` (extra `-sigopt`s for PSS).
    pub fn verifies(&self, pem: &Path, hash: &str, msg: &[u8], sig: &[u8], opts: &[&str]) -> bool {
        let m = self.file("msg.bin", msg);
        let sg = self.file("sig.bin", sig);
        let mut args = vec!["dgst", hash, "-verify", s(pem), "-signature", s(&sg)];
        for o in opts {
            args.extend(["-sigopt", o]);
        }
        args.push(s(&m));
        let (ok, text) = self.run(&args);
        ok && text.contains("Verified OK")
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Python 3 with `cryptography` (ML-DSA needs 47 or newer).
pub struct Python {
    pub bin: String,
}

impl Python {
    pub fn new() -> Python {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
        let bin = std::env::var("SEALGATE_TEST_PYTHON").unwrap_or_else(|_| {
            if venv.exists() {
                venv.display().to_string()
            } else {
                "python3".into()
            }
        });
        Python { bin }
    }

    /// Runs `script` with `args`; returns its stdout (trimmed). Panics with stderr on
    /// failure.
    #[track_caller]
    pub fn run(&self, script: &str, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run python '{}' ({e}); run scripts/setup.sh or set SEALGATE_TEST_PYTHON",
                    self.bin
                )
            });
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}
