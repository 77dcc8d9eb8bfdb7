//! The embedded KMS (modelled on AWS KMS). See `docs/kms.md`.
