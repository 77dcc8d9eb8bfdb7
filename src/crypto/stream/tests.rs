//! Unit tests of the segment streams (`super`).
use super::*;
use futures::StreamExt;

fn dek() -> Dek {
    Dek::from_slice(&[7u8; 32]).unwrap()
}

fn chunks(data: Vec<u8>, size: usize) -> ByteStream {
    let v: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(size.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(v).boxed()
}

async fn collect(
    s: impl Stream<Item = Result<Bytes, std::io::Error>>,
) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    futures::pin_mut!(s);
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out)
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

async fn encrypt_single(plain: &[u8], chunk: usize) -> (Vec<u8>, PartHeader) {
    let h = PartHeader {
        part_number: 1,
        salt: [3; 16],
        plain_len: plain.len() as u64,
    };
    let e = Encryptor::new(chunks(plain.to_vec(), chunk), &dek(), h, false);
    (collect(e).await.unwrap(), h)
}

async fn decrypt(
    cipher: &[u8],
    layout: &Layout,
    start: u64,
    end: u64,
    first: PartHeader,
) -> Result<Vec<u8>, std::io::Error> {
    let p = format::plan(layout, start, end).unwrap();
    let first = if layout.headers_in_body && p.first_segment == 0 {
        None
    } else {
        Some(first)
    };
    let start = if first.is_none() {
        p.cipher_start - HEADER_LEN
    } else {
        p.cipher_start
    };
    let slice = cipher[start as usize..p.cipher_end as usize].to_vec();
    let d = Decryptor::new(chunks(slice, 10_000), dek(), layout.clone(), &p, first);
    collect(d).await
}

#[tokio::test]
async fn round_trips_at_segment_boundaries_and_odd_chunkings() {
    for n in [0usize, 1, 65_535, 65_536, 65_537, 200_000] {
        for chunk in [1usize << 20, 4096, 65_536, 7] {
            if n > 70_000 && chunk == 7 {
                continue;
            }
            let plain = data(n);
            let (c, h) = encrypt_single(&plain, chunk).await;
            assert_eq!(c.len() as u64, format::part_cipher_len(n as u64, false));
            if n > 0 {
                let got = decrypt(&c, &Layout::single(n as u64), 0, n as u64, h)
                    .await
                    .unwrap();
                assert_eq!(got, plain, "n={n} chunk={chunk}");
            }
        }
    }
}

#[tokio::test]
async fn ranges_return_exactly_the_requested_bytes() {
    let plain = data(300_000);
    let (c, h) = encrypt_single(&plain, 65_536).await;
    let l = Layout::single(300_000);
    for (a, b) in [
        (0, 1),
        (65_535, 65_537),
        (131_072, 131_073),
        (299_999, 300_000),
        (10, 250_000),
    ] {
        assert_eq!(
            decrypt(&c, &l, a, b, h).await.unwrap(),
            &plain[a as usize..b as usize]
        );
    }
}

#[tokio::test]
async fn short_and_long_bodies_never_produce_a_final_segment() {
    let h = PartHeader {
        part_number: 1,
        salt: [1; 16],
        plain_len: 100,
    };
    let short = collect(Encryptor::new(chunks(data(99), 50), &dek(), h, false)).await;
    assert!(short.is_err());
    let long = collect(Encryptor::new(chunks(data(101), 50), &dek(), h, false)).await;
    assert!(long.is_err());
}

#[tokio::test]
async fn tampering_is_detected_and_no_bad_bytes_are_served() {
    let plain = data(200_000);
    let (c, h) = encrypt_single(&plain, 65_536).await;
    let l = Layout::single(200_000);
    // Flip a byte in segment 1: segment 0 may be served, nothing from segment 1 on.
    let mut flipped = c.clone();
    flipped[70_000] ^= 1;
    let p = format::plan(&l, 0, 200_000).unwrap();
    let mut d = Decryptor::new(chunks(flipped, 65_552), dek(), l.clone(), &p, Some(h));
    let first = d.next().await.unwrap().unwrap();
    assert_eq!(&first[..], &plain[..65_536]);
    assert!(d.next().await.unwrap().is_err());
    assert!(d.next().await.is_none());
    // Truncation at a segment boundary: the new last segment lacks the final flag.
    let truncated = c[..2 * 65_552].to_vec();
    let p = format::plan(&Layout::single(131_072), 0, 131_072).unwrap();
    let d = Decryptor::new(
        chunks(truncated, 65_552),
        dek(),
        Layout::single(131_072),
        &p,
        Some(PartHeader {
            plain_len: 131_072,
            ..h
        }),
    );
    assert!(
        collect(d).await.is_err(),
        "a part cut at a segment boundary must not verify"
    );
    // Reordered segments fail.
    let mut swapped = c.clone();
    let (a, b) = swapped.split_at_mut(65_552);
    a[..65_552].swap_with_slice(&mut b[..65_552]);
    assert!(decrypt(&swapped, &l, 0, 200_000, h).await.is_err());
    // A different salt (another upload attempt) fails.
    assert!(
        decrypt(&c, &l, 0, 10, PartHeader { salt: [0; 16], ..h })
            .await
            .is_err()
    );
}

#[tokio::test]
async fn multipart_parts_decrypt_across_boundaries_and_reject_reordering() {
    let p1 = data(100_000);
    let p2: Vec<u8> = data(70_000).iter().map(|b| b ^ 0x55).collect();
    let h1 = PartHeader {
        part_number: 1,
        salt: [1; 16],
        plain_len: 100_000,
    };
    let h2 = PartHeader {
        part_number: 2,
        salt: [2; 16],
        plain_len: 70_000,
    };
    let c1 = collect(Encryptor::new(chunks(p1.clone(), 9999), &dek(), h1, true))
        .await
        .unwrap();
    let c2 = collect(Encryptor::new(chunks(p2.clone(), 9999), &dek(), h2, true))
        .await
        .unwrap();
    let layout = Layout {
        headers_in_body: true,
        parts: vec![(1, 100_000), (2, 70_000)],
        salts: Vec::new(),
    };
    let whole: Vec<u8> = [c1.clone(), c2.clone()].concat();
    let want: Vec<u8> = [p1.clone(), p2.clone()].concat();
    let got = decrypt(&whole, &layout, 99_000, 101_000, h1).await.unwrap();
    assert_eq!(got, &want[99_000..101_000]);
    let got = decrypt(&whole, &layout, 0, 170_000, h1).await.unwrap();
    assert_eq!(got, want);
    // Parts swapped in the store: the header check refuses part 1 where part 2 belongs.
    let swapped: Vec<u8> = [c2.clone(), c1.clone()].concat();
    let l2 = Layout {
        headers_in_body: true,
        parts: vec![(1, 70_000), (2, 100_000)],
        salts: Vec::new(),
    };
    assert!(decrypt(&swapped, &l2, 0, 170_000, h1).await.is_err());
}
