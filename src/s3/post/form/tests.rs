//! The form reader at every chunking: fields, streamed files, the length prediction and
//! its failures, the 20 KiB bound, malformed bodies.

use super::*;

fn body_of(chunks: Vec<Vec<u8>>) -> ByteStream {
    futures::stream::iter(
        chunks
            .into_iter()
            .map(|c| Ok::<_, std::io::Error>(Bytes::from(c))),
    )
    .boxed()
}

/// A form as a browser builds it: fields, then the file, then the closing delimiter.
fn form(boundary: &str, fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, data)) = file {
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    b
}

async fn parse(
    body: Vec<u8>,
    piece: usize,
) -> Result<(Prefix, Option<Result<Vec<u8>, FormError>>), FormError> {
    let len = body.len() as u64;
    let chunks = body.chunks(piece.max(1)).map(<[u8]>::to_vec).collect();
    let (prefix, file) = read(body_of(chunks), "XyZ", len).await?;
    let Some(file) = file else {
        return Ok((prefix, None));
    };
    let failure = file.failure();
    let mut s = file.into_stream();
    let mut out = Vec::new();
    let mut failed = false;
    while let Some(c) = s.next().await {
        match c {
            Ok(c) => out.extend_from_slice(&c),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    let r = if failed {
        Err(failure.get().unwrap_or(FormError::Body { stalled: false }))
    } else {
        Ok(out)
    };
    Ok((prefix, Some(r)))
}

#[tokio::test]
async fn fields_then_a_streamed_file_of_the_predicted_length_whatever_the_chunking() {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let body = form(
        "XyZ",
        &[("key", "a/${filename}"), ("Policy", "eyJ9")],
        Some(("d/x.bin", &data)),
    );
    for piece in [1, 2, 7, 100, 4096, 65_536, body.len()] {
        let (p, file) = parse(body.clone(), piece).await.unwrap();
        assert_eq!(
            p.fields,
            vec![
                Field {
                    name: "key".into(),
                    value: "a/${filename}".into()
                },
                Field {
                    name: "Policy".into(),
                    value: "eyJ9".into()
                },
            ]
        );
        let head = p.file.unwrap();
        assert_eq!(head.len, data.len() as u64);
        assert_eq!(head.filename.as_deref(), Some("d/x.bin"));
        assert_eq!(file.unwrap().unwrap(), data, "piece {piece}");
    }
}

#[tokio::test]
async fn a_file_containing_almost_the_delimiter_is_kept_whole() {
    let data = b"--XyZ\r\n--Xy\r\n-\r\n--XyQ\r\n--X".repeat(5000);
    let body = form("XyZ", &[("key", "k")], Some(("f", &data[..data.len() - 1])));
    for piece in [1, 3, 9, 1000] {
        let (_, file) = parse(body.clone(), piece).await.unwrap();
        assert_eq!(file.unwrap().unwrap(), data[..data.len() - 1].to_vec());
    }
}

#[tokio::test]
async fn empty_files_and_forms_without_a_file() {
    let (p, file) = parse(form("XyZ", &[("key", "k")], Some(("", b""))), 5)
        .await
        .unwrap();
    assert_eq!(p.file.unwrap().len, 0);
    assert_eq!(file.unwrap().unwrap(), Vec::<u8>::new());
    let (p, file) = parse(form("XyZ", &[("key", "k")], None), 5).await.unwrap();
    assert!(p.file.is_none() && file.is_none());
    assert_eq!(p.fields.len(), 1);
}

#[tokio::test]
async fn a_file_followed_by_anything_but_the_closing_delimiter_fails_before_its_end() {
    let data = vec![7u8; 100_000];
    // A field after the file (AWS ignores it; sealgate's length prediction is off).
    let mut body = form("XyZ", &[("key", "k")], Some(("f", &data)));
    let close = body.len() - "--XyZ--\r\n".len();
    body.truncate(close);
    body.extend_from_slice(
        b"--XyZ\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nv\r\n--XyZ--\r\n",
    );
    let (_, file) = parse(body, 4096).await.unwrap();
    assert_eq!(file.unwrap().unwrap_err(), FormError::Layout);
    // No CRLF after the close delimiter: one byte longer than predicted.
    let mut body = form("XyZ", &[("key", "k")], Some(("f", &data)));
    body.truncate(body.len() - 2);
    let (_, file) = parse(body, 4096).await.unwrap();
    assert_eq!(file.unwrap().unwrap_err(), FormError::Layout);
    // An epilogue after it.
    let mut body = form("XyZ", &[("key", "k")], Some(("f", &data)));
    body.extend_from_slice(b"epilogue");
    let (_, file) = parse(body, 4096).await.unwrap();
    assert_eq!(file.unwrap().unwrap_err(), FormError::Layout);
    // A body cut short.
    let mut body = form("XyZ", &[("key", "k")], Some(("f", &data)));
    let full = body.len() as u64;
    body.truncate(body.len() - 500);
    let chunks = body.chunks(4096).map(<[u8]>::to_vec).collect();
    let (_, file) = read(body_of(chunks), "XyZ", full).await.unwrap();
    let file = file.unwrap();
    let failure = file.failure();
    let mut s = file.into_stream();
    let mut got = 0;
    let mut ended_with_error = false;
    while let Some(c) = s.next().await {
        match c {
            Ok(c) => got += c.len(),
            Err(_) => ended_with_error = true,
        }
    }
    assert!(ended_with_error && got < data.len());
    assert!(matches!(failure.get(), Some(FormError::Malformed(_))));
}

#[tokio::test]
async fn fields_over_twenty_kib_are_refused_before_the_file() {
    let big = "x".repeat(MAX_PRE_DATA);
    let body = form(
        "XyZ",
        &[("key", "k"), ("x-amz-meta-a", &big)],
        Some(("f", b"data")),
    );
    assert_eq!(
        parse(body, 1000).await.unwrap_err(),
        FormError::PreDataTooLong
    );
    // Endless headers are bounded the same way.
    let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n".to_vec();
    body.extend(std::iter::repeat_n(b'a', 100_000));
    assert_eq!(
        parse(body, 1000).await.unwrap_err(),
        FormError::PreDataTooLong
    );
    // Just under the bound is fine.
    let fill = "y".repeat(MAX_PRE_DATA - 400);
    let body = form(
        "XyZ",
        &[("key", "k"), ("x-ignore-fill", &fill)],
        Some(("f", b"data")),
    );
    let (p, file) = parse(body, 1000).await.unwrap();
    assert_eq!(p.fields.len(), 2);
    assert_eq!(file.unwrap().unwrap(), b"data");
}

#[tokio::test]
async fn malformed_bodies_are_malformed() {
    for body in [
        b"no boundary at all".to_vec(),
        b"--XyZ\r\nno-colon-header\r\n\r\nv\r\n--XyZ--\r\n".to_vec(),
        b"--XyZ\r\nContent-Disposition: attachment; name=\"k\"\r\n\r\nv\r\n--XyZ--\r\n".to_vec(),
        b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nv\r\n--XyZ--\r\n".to_vec(),
        b"--XyZ\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\nv".to_vec(),
        b"--XyZjunk\r\n".to_vec(),
        b"--XyZ\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n\xff\r\n--XyZ--\r\n".to_vec(),
    ] {
        assert!(
            matches!(parse(body.clone(), 3).await, Err(FormError::Malformed(_))),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn disposition_parameters_and_boundaries() {
    let p = part_headers(
        b"Content-Disposition: form-data; name=\"a\\\"b\"; filename*=UTF-8''%E2%82%AC.txt; filename=\"x\"",
    )
    .unwrap();
    assert_eq!(p.name, "a\"b");
    assert_eq!(p.filename.as_deref(), Some("\u{20ac}.txt"));
    let p =
        part_headers(b"Content-Disposition: form-data; name=\"file\"; filename=\"C:\\a\\b.txt\"")
            .unwrap();
    assert_eq!(p.filename.as_deref(), Some("C:\\a\\b.txt"));
    let p = part_headers(b"content-disposition: FORM-DATA; NAME=key\r\nContent-Type: text/plain")
        .unwrap();
    assert_eq!(p.name, "key");
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        boundary("multipart/form-data; boundary=abc"),
        Some(Ok("abc".into()))
    );
    assert_eq!(
        boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\""),
        Some(Ok("a b".into()))
    );
    assert_eq!(boundary("multipart/form-data"), Some(Err(())));
    assert_eq!(
        boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
        Some(Err(()))
    );
    assert_eq!(boundary("application/x-www-form-urlencoded"), None);
}
