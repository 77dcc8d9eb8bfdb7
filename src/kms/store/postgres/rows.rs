//! The KMS's rows in `kms_rows`: reading them into what the KMS loads, and writing the
//! KMS's mutations as row changes.

use std::collections::HashMap;

use postgres::{Client, GenericClient};

use super::conn::unavailable;
use crate::kms::KmsError;
use crate::kms::grants::Grant;
use crate::kms::model::KeyRecord;
use crate::kms::store::{Loaded, Mutation, Rows, grant_key, region_key};

/// Raw rows as read: (table, key, value).
pub(super) type RawRows = Vec<(String, Vec<u8>, Vec<u8>)>;

/// One row change, owned (it crosses to the database thread).
pub(super) enum RowOp {
    Put(&'static str, Vec<u8>, Vec<u8>),
    Delete(&'static str, Vec<u8>),
    /// Every row of the table whose key starts with the 16 bytes of a key id.
    DeleteKeyRows(&'static str, [u8; 16]),
    /// The grants of a key id in one region (None = home), which only their JSON tells.
    DeleteGrants([u8; 16], Option<String>),
    /// A `kms_meta` record.
    PutMeta(String, Vec<u8>),
}

/// The root key's check value the database holds.
pub(super) fn read_kcv(c: &mut impl GenericClient) -> Result<Option<Vec<u8>>, KmsError> {
    Ok(
        c.query_opt("SELECT value FROM kms_meta WHERE name = 'kcv'", &[])
            .map_err(unavailable)?
            .map(|r| r.get(0)),
    )
}

pub(super) fn read_rows(c: &mut impl GenericClient) -> Result<RawRows, KmsError> {
    Ok(
        c.query("SELECT tbl, k, v FROM kms_rows ORDER BY tbl, k", &[])
            .map_err(unavailable)?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
    )
}

fn malformed(tbl: &str, k: &[u8]) -> KmsError {
    KmsError::Config(format!(
        "the kms.postgres row {tbl}/{} has a malformed key; refusing to open",
        hex::encode(k)
    ))
}

fn key_id(tbl: &str, k: &[u8]) -> Result<u128, KmsError> {
    let b: [u8; 16] = k.try_into().map_err(|_| malformed(tbl, k))?;
    Ok(u128::from_be_bytes(b))
}

/// (region, rest) of a `region_key`.
fn split_region<'k>(tbl: &str, k: &'k [u8]) -> Result<(String, &'k [u8]), KmsError> {
    let at = k
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| malformed(tbl, k))?;
    let region = std::str::from_utf8(&k[..at]).map_err(|_| malformed(tbl, k))?;
    Ok((region.to_string(), &k[at + 1..]))
}

fn text(tbl: &str, k: &[u8]) -> Result<String, KmsError> {
    String::from_utf8(k.to_vec()).map_err(|_| malformed(tbl, k))
}

/// The rows as the KMS loads them, every row authenticated.
pub(super) fn decode(rows: &Rows, raw: RawRows) -> Result<Loaded, KmsError> {
    let mut material: HashMap<u128, Vec<(u32, Vec<u8>)>> = HashMap::new();
    let mut loaded = Loaded {
        keys: Vec::new(),
        aliases: Vec::new(),
        grants: Vec::new(),
        settings: Vec::new(),
    };
    let mut records = Vec::new();
    for (tbl, k, v) in raw {
        let json = |t: &str| rows.open(t, &k, &v).map(|(j, _)| j.to_vec());
        match tbl.as_str() {
            "material" => {
                if k.len() != 20 {
                    return Err(malformed(&tbl, &k));
                }
                let id = key_id(&tbl, &k[..16])?;
                let version = u32::from_be_bytes(k[16..].try_into().expect("4 bytes"));
                material.entry(id).or_default().push((version, v));
            }
            "keys" => {
                key_id(&tbl, &k)?;
                let mut rec: KeyRecord = serde_json::from_slice(&json("keys")?)?;
                rec.region = None;
                records.push(rec);
            }
            "region_keys" => {
                let (region, id) = split_region(&tbl, &k)?;
                key_id(&tbl, id)?;
                let mut rec: KeyRecord = serde_json::from_slice(&json("region_keys")?)?;
                rec.region = Some(region);
                records.push(rec);
            }
            "aliases" => {
                let name = text(&tbl, &k)?;
                let rec = serde_json::from_slice(&json("aliases")?)?;
                loaded.aliases.push((None, name, rec));
            }
            "region_aliases" => {
                let (region, name) = split_region(&tbl, &k)?;
                let name = text(&tbl, name)?;
                let rec = serde_json::from_slice(&json("region_aliases")?)?;
                loaded.aliases.push((Some(region), name, rec));
            }
            "grants" => {
                let g: Grant = serde_json::from_slice(&json("grants")?)?;
                loaded.grants.push(g);
            }
            "settings" => {
                let name = text(&tbl, &k)?;
                loaded.settings.push((name, json("settings")?));
            }
            _ => return Err(malformed(&tbl, &k)),
        }
    }
    for rec in records {
        let mut mats = material.get(&rec.id.as_u128()).cloned().unwrap_or_default();
        mats.sort_by_key(|(v, _)| *v);
        loaded.keys.push((rec, mats));
    }
    Ok(loaded)
}

/// The row changes of `muts`, sealed as `store/mod.rs` describes.
pub(super) fn row_ops(rows: &Rows, muts: &[Mutation<'_>]) -> Result<Vec<RowOp>, KmsError> {
    let mut ops = Vec::with_capacity(muts.len());
    for m in muts {
        let op = match m {
            Mutation::PutKey(rec) => {
                let json = serde_json::to_vec(rec)?;
                let id = rec.id.as_u128().to_be_bytes();
                match &rec.region {
                    None => RowOp::Put("keys", id.to_vec(), rows.seal("keys", &id, &json)),
                    Some(r) => {
                        let k = region_key(r, &id);
                        let v = rows.seal("region_keys", &k, &json);
                        RowOp::Put("region_keys", k, v)
                    }
                }
            }
            Mutation::PutMaterial {
                id,
                version,
                sealed,
            } => {
                let mut k = id.as_u128().to_be_bytes().to_vec();
                k.extend_from_slice(&version.to_be_bytes());
                RowOp::Put("material", k, sealed.to_vec())
            }
            Mutation::DropKey {
                region,
                id,
                material,
            } => {
                let idb = id.as_u128().to_be_bytes();
                ops.push(match region {
                    None => RowOp::Delete("keys", idb.to_vec()),
                    Some(r) => RowOp::Delete("region_keys", region_key(r, &idb)),
                });
                if *material {
                    ops.push(RowOp::DeleteKeyRows("material", idb));
                }
                RowOp::DeleteGrants(idb, region.map(str::to_string))
            }
            Mutation::DeleteMaterial(id) => {
                RowOp::DeleteKeyRows("material", id.as_u128().to_be_bytes())
            }
            Mutation::PutAlias(name, rec) => {
                let json = serde_json::to_vec(rec)?;
                let v = rows.seal("aliases", name.as_bytes(), &json);
                RowOp::Put("aliases", name.as_bytes().to_vec(), v)
            }
            Mutation::DeleteAlias(name) => RowOp::Delete("aliases", name.as_bytes().to_vec()),
            Mutation::PutRegionAlias(region, name, rec) => {
                let k = region_key(region, name.as_bytes());
                let v = rows.seal("region_aliases", &k, &serde_json::to_vec(rec)?);
                RowOp::Put("region_aliases", k, v)
            }
            Mutation::DeleteRegionAlias(region, name) => {
                RowOp::Delete("region_aliases", region_key(region, name.as_bytes()))
            }
            Mutation::PutGrant(g) => {
                let k = grant_key(g.key_id.as_u128(), &g.grant_id);
                let v = rows.seal("grants", &k, &serde_json::to_vec(g)?);
                RowOp::Put("grants", k, v)
            }
            Mutation::DeleteGrant(key, id) => RowOp::Delete("grants", grant_key(key.as_u128(), id)),
            Mutation::PutSetting(name, json) => {
                let v = rows.seal("settings", name.as_bytes(), json);
                RowOp::Put("settings", name.as_bytes().to_vec(), v)
            }
            Mutation::DeleteSetting(name) => RowOp::Delete("settings", name.as_bytes().to_vec()),
            Mutation::PutMeta(name, value) => RowOp::PutMeta(name.to_string(), value.to_vec()),
        };
        ops.push(op);
    }
    Ok(ops)
}

pub(super) fn run_op(c: &mut Client, rows: &Rows, op: RowOp) -> Result<(), KmsError> {
    match op {
        RowOp::Put(tbl, k, v) => c.execute(
            "INSERT INTO kms_rows (tbl, k, v) VALUES ($1, $2, $3) \
             ON CONFLICT (tbl, k) DO UPDATE SET v = EXCLUDED.v",
            &[&tbl, &k, &v],
        ),
        RowOp::PutMeta(name, value) => c.execute(
            "INSERT INTO kms_meta (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&name, &value],
        ),
        RowOp::Delete(tbl, k) => c.execute(
            "DELETE FROM kms_rows WHERE tbl = $1 AND k = $2",
            &[&tbl, &k],
        ),
        RowOp::DeleteKeyRows(tbl, id) => c.execute(
            "DELETE FROM kms_rows WHERE tbl = $1 AND substr(k, 1, 16) = $2",
            &[&tbl, &id.to_vec()],
        ),
        RowOp::DeleteGrants(id, region) => {
            let found = c
                .query(
                    "SELECT k, v FROM kms_rows WHERE tbl = 'grants' AND substr(k, 1, 16) = $1",
                    &[&id.to_vec()],
                )
                .map_err(unavailable)?;
            for r in found {
                let (k, v): (Vec<u8>, Vec<u8>) = (r.get(0), r.get(1));
                let region_matches = rows
                    .open("grants", &k, &v)
                    .ok()
                    .and_then(|(json, _)| serde_json::from_slice::<Grant>(json).ok())
                    .is_none_or(|g| g.region == region);
                if region_matches {
                    c.execute(
                        "DELETE FROM kms_rows WHERE tbl = 'grants' AND k = $1",
                        &[&k],
                    )
                    .map_err(unavailable)?;
                }
            }
            Ok(0)
        }
    }
    .map_err(unavailable)?;
    Ok(())
}
