//! Streams written block by block, as quirky writers lay them out.

use super::*;

/// A header block: ustar unless `v7`, fields in octal, checksum filled in.
fn hdr(name: &[u8], typeflag: u8, size: u64, v7: bool) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..name.len()].copy_from_slice(name);
    b[100..108].copy_from_slice(b"0000755\0");
    b[108..116].copy_from_slice(b"0001750\0");
    b[116..124].copy_from_slice(b"0000012\0");
    b[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    b[136..148].copy_from_slice(b"13000000000\0");
    b[156] = typeflag;
    if !v7 {
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
    }
    seal(&mut b);
    b
}

fn seal(b: &mut [u8; BLOCK]) {
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn data(d: &[u8]) -> Vec<u8> {
    let mut v = d.to_vec();
    v.resize(d.len().div_ceil(BLOCK) * BLOCK, 0);
    v
}

use super::pax::record as pax_record;

fn end() -> Vec<u8> {
    vec![0u8; 2 * BLOCK]
}

/// Every member, with its data.
fn read_all(stream: &[u8]) -> Result<Vec<(Member, Vec<u8>)>, ArchiveError> {
    let mut a = Archive::new(stream);
    let mut out = Vec::new();
    while let Some(m) = a.next()? {
        let mut d = Vec::new();
        a.data()
            .read_to_end(&mut d)
            .map_err(|source| ArchiveError::Io { offset: 0, source })?;
        out.push((m, d));
    }
    Ok(out)
}

#[test]
fn v7_directory_with_a_size_does_not_swallow_the_next_header() {
    let s = [
        hdr(b"dir/", 0, 1, true).to_vec(),
        hdr(b"dir/file", b'0', 2, true).to_vec(),
        data(b"hi"),
        end(),
    ]
    .concat();
    let all = read_all(&s).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].0.kind, Kind::Dir);
    assert_eq!(all[1].0.path, b"dir/file");
    assert_eq!(all[1].1, b"hi");
    assert_eq!((all[1].0.uid, all[1].0.gid), (0o1750, 0o12));
}

#[test]
fn link_sizes_are_ignored() {
    let mut link = hdr(b"hard", b'1', 4096, false);
    link[157..161].copy_from_slice(b"file");
    seal(&mut link);
    let s = [
        hdr(b"file", b'0', 1, false).to_vec(),
        data(b"x"),
        link.to_vec(),
        hdr(b"after", b'0', 0, false).to_vec(),
        end(),
    ]
    .concat();
    let all = read_all(&s).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[1].0.kind, Kind::Hardlink);
    assert_eq!(all[1].0.link, b"file");
    assert_eq!(all[2].0.path, b"after");
}

#[test]
fn the_last_gnu_long_name_wins() {
    let first = b"first/long/name\0";
    let second = "second/".repeat(30);
    let s = [
        hdr(b"././@LongLink", b'L', first.len() as u64, false).to_vec(),
        data(first),
        hdr(b"././@LongLink", b'L', second.len() as u64, false).to_vec(),
        data(second.as_bytes()),
        hdr(b"short", b'0', 0, false).to_vec(),
        end(),
    ]
    .concat();
    let all = read_all(&s).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].0.path, second.as_bytes());
}

#[test]
fn unknown_typeflags_are_named() {
    let s = [hdr(b"acl-entry", b'A', 0, false).to_vec(), end()].concat();
    let e = read_all(&s).unwrap_err().to_string();
    assert!(e.contains("'A' (0x41)") && e.contains("acl-entry"), "{e}");
}

#[test]
fn pax_values_with_any_byte_and_a_path() {
    let binary: Vec<u8> = (1u8..=0x1f).collect();
    let records = [
        pax_record("SCHILY.xattr.user.binary", &binary),
        pax_record(
            "SCHILY.xattr.security.capability",
            b"\x01\x00\x00\x02\x0a\x00",
        ),
        pax_record("path", b"real/name"),
        pax_record("uid", b"70000"),
        pax_record("mtime", b"1600000000.5"),
        pax_record("size", b"3"),
    ]
    .concat();
    let s = [
        hdr(b"PaxHeaders/x", b'x', records.len() as u64, false).to_vec(),
        data(&records),
        hdr(b"truncated-name", b'0', 0, false).to_vec(),
        data(b"abc"),
        end(),
    ]
    .concat();
    let all = read_all(&s).unwrap();
    let (m, d) = &all[0];
    assert_eq!(m.path, b"real/name");
    assert_eq!(d, b"abc");
    assert_eq!(m.uid, 70000);
    assert_eq!(m.mtime, 1_600_000_000);
    assert_eq!(m.xattrs[0], ("user.binary".to_string(), binary));
    assert_eq!(m.xattrs[1].1, b"\x01\x00\x00\x02\x0a\x00");
}

#[test]
fn global_records_apply_until_overridden() {
    let g = pax_record("uid", b"7");
    let s = [
        hdr(b"g", b'g', g.len() as u64, false).to_vec(),
        data(&g),
        hdr(b"a", b'0', 0, false).to_vec(),
        hdr(b"b", b'0', 0, false).to_vec(),
        end(),
    ]
    .concat();
    let all = read_all(&s).unwrap();
    assert!(all.iter().all(|(m, _)| m.uid == 7));
}

#[test]
fn pax_sparse_1_0_map_and_name() {
    let records = [
        pax_record("GNU.sparse.major", b"1"),
        pax_record("GNU.sparse.minor", b"0"),
        pax_record("GNU.sparse.name", b"real"),
        pax_record("GNU.sparse.realsize", b"10000"),
    ]
    .concat();
    let map = data(b"2\n100\n3\n9000\n2\n");
    let stored = [map.clone(), b"abcde".to_vec()].concat();
    let s = [
        hdr(b"x", b'x', records.len() as u64, false).to_vec(),
        data(&records),
        hdr(b"GNUSparseFile.1/real", b'0', stored.len() as u64, false).to_vec(),
        data(&stored),
        hdr(b"next", b'0', 0, false).to_vec(),
        end(),
    ]
    .concat();
    let all = read_all(&s).unwrap();
    let (m, d) = &all[0];
    assert_eq!(m.path, b"real");
    assert_eq!(m.size, 10000);
    let (format, regions) = m.sparse.as_ref().unwrap();
    assert_eq!(*format, SparseFormat::Pax10);
    assert_eq!(
        regions,
        &vec![
            Region {
                offset: 100,
                len: 3
            },
            Region {
                offset: 9000,
                len: 2
            }
        ]
    );
    assert_eq!(d, b"abcde");
    assert_eq!(all[1].0.path, b"next");
}

#[test]
fn a_sparse_map_that_lies_is_refused() {
    let records = [
        pax_record("GNU.sparse.size", b"100"),
        pax_record("GNU.sparse.map", b"0,10,50,10"),
    ]
    .concat();
    let s = [
        hdr(b"x", b'x', records.len() as u64, false).to_vec(),
        data(&records),
        hdr(b"f", b'0', 5, false).to_vec(),
        data(b"12345"),
        end(),
    ]
    .concat();
    let e = read_all(&s).unwrap_err().to_string();
    assert!(e.contains("GNU PAX 0.1") && e.contains("\"f\""), "{e}");
}

#[test]
fn hostile_streams_are_refused() {
    let mut bad_sum = hdr(b"f", b'0', 0, false);
    bad_sum[0] = b'g';
    let huge = hdr(b"x", b'x', 2 << 20, false);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        ([bad_sum.to_vec(), end()].concat(), "checksum"),
        ([huge.to_vec(), end()].concat(), "more than"),
        (hdr(b"f", b'0', 10, false)[..300].to_vec(), "truncated"),
        (
            [
                hdr(b"x", b'x', 8, false).to_vec(),
                data(b"99 a=b\n\n"),
                end(),
            ]
            .concat(),
            "PAX",
        ),
    ];
    for (stream, want) in cases {
        let e = read_all(&stream).unwrap_err();
        let chain = format!("{e}: {:?}", std::error::Error::source(&e));
        assert!(chain.contains(want), "{want}: {chain}");
    }
    // Data cut short is an error, not a short file.
    let short = [hdr(b"f", b'0', 1000, false).to_vec(), vec![b'a'; 100]].concat();
    assert!(read_all(&short).is_err());
}

#[test]
fn a_stream_without_end_blocks_ends_cleanly() {
    let s = [hdr(b"f", b'0', 1, false).to_vec(), data(b"x")].concat();
    assert_eq!(read_all(&s).unwrap().len(), 1);
}

/// One member whose PAX header holds `LIBARCHIVE.xattr.user.v=value`.
fn libarchive_xattr(value: &[u8]) -> Result<Vec<(Member, Vec<u8>)>, ArchiveError> {
    let r = pax_record("LIBARCHIVE.xattr.user.v", value);
    let s = [
        hdr(b"PaxHeaders/f", b'x', r.len() as u64, false).to_vec(),
        data(&r),
        hdr(b"f", b'0', 0, false).to_vec(),
        end(),
    ]
    .concat();
    read_all(&s)
}

#[test]
fn libarchive_xattrs_are_base64_with_or_without_padding() {
    // libarchive's own writer leaves the `=` out; other writers keep it.
    for (value, want) in [
        (&b"QUJDREVGRw"[..], &b"ABCDEFG"[..]),
        (b"QUJDREVGRw==", b"ABCDEFG"),
        (b"QUJDREVGRw=", b"ABCDEFG"),
        (b"QUJDREVG", b"ABCDEF"),
        (b"AQ", b"\x01"),
        (b"", b""),
    ] {
        let all = libarchive_xattr(value).unwrap();
        assert_eq!(
            all[0].0.xattrs,
            vec![("user.v".to_string(), want.to_vec())],
            "{}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn libarchive_xattrs_that_are_not_base64_are_refused() {
    for value in [
        &b"QUJD!"[..],
        b"QUJDREVGR",     // a length no base64 has
        b"QUJDREVGRx",    // bits after the last byte
        b"-_-_",          // the URL-safe alphabet
        b"QUJD\nREVG",    // a line break
        b"QU JD",         // a space
        b"QUJDREVGRw===", // more padding than any length needs
        b"=QUJD",
        b"QQ==QUJD", // padding in the middle
        b"\xff\xfe",
    ] {
        let e = libarchive_xattr(value)
            .map(|all| all[0].0.xattrs.clone())
            .unwrap_err();
        let mut chain = e.to_string();
        let mut cur: &dyn std::error::Error = &e;
        while let Some(next) = cur.source() {
            chain = format!("{chain}: {next}");
            cur = next;
        }
        let e = chain;
        assert!(
            e.contains("user.v") && e.contains("is not base64"),
            "{}: {e}",
            String::from_utf8_lossy(value)
        );
    }
}
