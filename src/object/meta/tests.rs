//! Unit tests of the object metadata: round trips, MAC coverage, tampering, old formats.

use super::*;
use crate::object::checksum::Algo;

fn envelope() -> Envelope {
    Envelope {
        alg: Alg::Kms,
        key_ref: "arn:aws:kms:us-east-1:000000000000:key/abc".into(),
        wrapped: vec![1, 2, 3],
        backend: None,
        bk_salt: None,
        context: Default::default(),
        bucket_key: false,
        customer: None,
    }
}

fn dek() -> Dek {
    Dek::from_slice(&[5; 32]).unwrap()
}

fn described(pairs: &[(&str, &str)]) -> (HeaderMap, Described) {
    let mut h = crate::test_support::headers(pairs);
    super::super::describe::prepare_write(&mut h);
    let d = Described::of(&h);
    (h, d)
}

#[test]
fn metadata_round_trips_through_headers_and_stays_small() {
    let multi = Layout {
        headers_in_body: true,
        parts: (1..=1000).map(|n| (n, 8 << 20)).collect(),
        salts: Vec::new(),
    };
    let remote = Envelope {
        backend: Some("bao".into()),
        bk_salt: Some([3; 16]),
        context: [("team".to_string(), "blue".to_string())].into(),
        ..envelope()
    };
    let (h0, d) = described(&[("content-type", "text/plain"), ("x-amz-meta-a", "b")]);
    for m in [
        ObjectMeta::single(
            envelope(),
            &dek(),
            12345,
            [9; 16],
            ETag::Store,
            d.clone(),
            None,
        ),
        ObjectMeta::single(
            envelope(),
            &dek(),
            5,
            [9; 16],
            ETag::Md5([7; 32]),
            d.clone(),
            None,
        ),
        ObjectMeta::single(remote, &dek(), 7, [9; 16], ETag::Trailer, d.clone(), None),
        ObjectMeta::single(
            envelope(),
            &dek(),
            7,
            [9; 16],
            ETag::Trailer,
            d.clone(),
            Some(Stored::Trailer(Algo::Crc64Nvme)),
        ),
        ObjectMeta::single(
            envelope(),
            &dek(),
            7,
            [9; 16],
            ETag::Store,
            d.clone(),
            Some(Stored::Sealed {
                algo: Algo::Sha256,
                sealed: vec![5; 48],
            }),
        ),
        ObjectMeta::multipart(envelope(), &dek(), multi),
    ] {
        let mut h = if m.format == 3 {
            h0.clone()
        } else {
            HeaderMap::new()
        };
        m.write(&mut h);
        let total: usize = h
            .iter()
            .filter(|(k, _)| k.as_str().starts_with(names::PREFIX))
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        assert!(total < 650, "metadata is {total} bytes");
        assert_eq!(ObjectMeta::read(&h).unwrap().unwrap(), m);
        m.verify(&dek()).unwrap();
        strip(&mut h);
        assert!(!h.keys().any(|k| k.as_str().starts_with(names::PREFIX)));
    }
}

#[test]
fn every_served_field_of_format_3_is_authenticated() {
    let (h0, d) = described(&[
        ("content-type", "text/plain"),
        ("cache-control", "no-cache"),
        ("x-amz-meta-owner", "bob"),
    ]);
    let m = ObjectMeta::single(
        envelope(),
        &dek(),
        5,
        [9; 16],
        ETag::Md5([1; 32]),
        d,
        Some(Stored::Trailer(Algo::Crc32)),
    );
    let mut h = h0.clone();
    m.write(&mut h);
    for (name, value) in [
        // Another algorithm, or a checksum moved from the trailer into the metadata.
        (names::CHECKSUM, "CRC32C:trailer"),
        (names::CHECKSUM, "CRC32:AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        (names::ALG, "AES256"),
        (names::KEY, "arn:aws:kms:us-east-1:000000000000:key/other"),
        (names::SIZE, "6"),
        (names::ETAG, "store"),
        (names::CONTENT_TYPE, "text/html"),
        ("cache-control", "max-age=1"),
        ("x-amz-meta-owner", "mallory"),
        ("x-amz-meta-added", "x"),
        ("content-disposition", "attachment"),
    ] {
        let mut t = h.clone();
        t.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        let read = ObjectMeta::read(&t).unwrap().unwrap();
        assert!(
            matches!(read.verify(&dek()), Err(Error::Tampered(_))),
            "{name} changed undetected"
        );
    }
    for removed in ["cache-control", names::CHECKSUM] {
        let mut t = h.clone();
        t.remove(removed);
        let read = ObjectMeta::read(&t).unwrap().unwrap();
        assert!(
            read.verify(&dek()).is_err(),
            "a removed {removed} is detected"
        );
    }
    ObjectMeta::read(&h)
        .unwrap()
        .unwrap()
        .verify(&dek())
        .unwrap();
}

fn customer_envelope(dek: &Dek) -> (Envelope, super::super::customer::CustomerKey) {
    use super::super::customer::{CustomerKey, wrap};
    let ck = CustomerKey::new(vec![9; 32]);
    let check = KeyCheck::new(&ck);
    let env = Envelope {
        alg: Alg::Customer,
        key_ref: String::new(),
        wrapped: wrap(&ck, &check, dek, "b", "k"),
        backend: None,
        bk_salt: None,
        context: Default::default(),
        bucket_key: false,
        customer: Some(check),
    };
    (env, ck)
}

#[test]
fn sse_c_metadata_round_trips_holds_no_key_and_authenticates_its_check() {
    let (env, ck) = customer_envelope(&dek());
    let (h0, d) = described(&[("content-type", "text/plain")]);
    let m = ObjectMeta::single(
        env.clone(),
        &dek(),
        5,
        [9; 16],
        ETag::Store,
        d.clone(),
        None,
    );
    let mut h = h0.clone();
    m.write(&mut h);
    assert_eq!(get(&h, names::ALG), Some("SSE-C"));
    assert!(get(&h, names::KEY).is_none(), "no KMS key");
    let md5 = ck.md5_b64();
    for (k, v) in &h {
        let v = v.to_str().unwrap();
        assert!(!v.contains(&md5), "{k} holds the key's MD5");
        assert!(!v.contains(&B64.encode([9u8; 32])), "{k} holds the key");
    }
    let read = ObjectMeta::read(&h).unwrap().unwrap();
    assert_eq!(read, m);
    read.verify(&dek()).unwrap();
    // Another key's check (a valid one) in place of the object's: the MAC fails.
    let mut t = h.clone();
    let other = KeyCheck::new(&super::super::customer::CustomerKey::new(vec![1; 32]));
    t.insert(
        names::CUSTOMER_KEY,
        B64.encode(other.encode()).parse().unwrap(),
    );
    let read = ObjectMeta::read(&t).unwrap().unwrap();
    assert!(matches!(read.verify(&dek()), Err(Error::Tampered(_))));
    // KMS fields on an SSE-C object, or a check on a KMS object, do not parse.
    let mut t = h.clone();
    t.insert(
        names::KEY,
        "arn:aws:kms:us-east-1:000000000000:key/k".parse().unwrap(),
    );
    assert!(matches!(ObjectMeta::read(&t), Err(Error::Tampered(_))));
    let mut t = h.clone();
    t.insert(names::VERSION, "1".parse().unwrap());
    assert!(matches!(ObjectMeta::read(&t), Err(Error::Tampered(_))));
    let kms = ObjectMeta::single(envelope(), &dek(), 5, [9; 16], ETag::Store, d, None);
    let mut t = h0.clone();
    kms.write(&mut t);
    t.insert(
        names::CUSTOMER_KEY,
        B64.encode(other.encode()).parse().unwrap(),
    );
    assert!(matches!(ObjectMeta::read(&t), Err(Error::Tampered(_))));
}

#[test]
fn an_sse_c_copy_gets_the_stores_etag() {
    let (env, _) = customer_envelope(&dek());
    let m = ObjectMeta::single(
        envelope(),
        &dek(),
        5,
        [9; 16],
        ETag::Md5([1; 32]),
        Described::default(),
        None,
    );
    assert!(m.rewraps_to_customer());
    let c = m.rewrapped(env, &dek(), Described::default());
    assert_eq!(c.etag, ETag::Store);
    c.verify(&dek()).unwrap();
    let t = ObjectMeta::single(
        envelope(),
        &dek(),
        5,
        [9; 16],
        ETag::Trailer,
        Described::default(),
        None,
    );
    assert!(
        !t.rewraps_to_customer(),
        "a trailer is in the body: the copy re-encrypts"
    );
}

#[test]
fn a_tampered_size_fails_the_mac() {
    let mut m = ObjectMeta::multipart(
        envelope(),
        &dek(),
        Layout {
            headers_in_body: true,
            parts: vec![(1, 10), (2, 5)],
            salts: Vec::new(),
        },
    );
    m.layout.parts.pop();
    m.size = 10;
    assert!(matches!(m.verify(&dek()), Err(Error::Tampered(_))));
}

#[test]
fn objects_without_sealgate_metadata_are_not_sealgate_objects() {
    assert_eq!(ObjectMeta::read(&HeaderMap::new()).unwrap(), None);
    let mut h = HeaderMap::new();
    h.insert(names::VERSION, "9".parse().unwrap());
    assert!(matches!(ObjectMeta::read(&h), Err(Error::Tampered(_))));
}
