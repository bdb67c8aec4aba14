use base64::Engine as _;

use super::*;

const H1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const H2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn v2_manifest(media_type: &str, layer_type: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{media_type}",
        "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":10,"digest":"sha256:{H1}"}},
        "layers":[{{"mediaType":"{layer_type}","size":20,"digest":"sha256:{H2}","urls":["http://evil.example/x"]}}]}}"#
    )
}

#[test]
fn docker_v2_manifest() {
    let body = v2_manifest(
        DOCKER_V2,
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    );
    let p = parse_document(body.as_bytes(), Some(DOCKER_V2)).unwrap();
    assert_eq!(p.digest, Digest::of(body.as_bytes()));
    let Document::Manifest(m) = p.document else {
        panic!("not a manifest")
    };
    assert_eq!(m.config.digest.hex(), H1);
    let blobs: Vec<_> = m.layer_blobs().collect();
    assert_eq!(blobs[0].size, Some(20));
    let cfg = Config {
        runtime: RuntimeConfig::default(),
        diff_ids: vec![],
        platform: Platform::host(),
    };
    assert!(matches!(
        m.layers(&cfg),
        Err(ManifestError::LayerCount { .. })
    ));
}

#[test]
fn media_type_must_agree() {
    let body = v2_manifest(
        DOCKER_V2,
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    );
    let e = parse_document(body.as_bytes(), Some(OCI_INDEX)).unwrap_err();
    assert!(matches!(e, ManifestError::TypeMismatch { .. }), "{e}");
    // A content type that is no manifest type (text/plain from a proxy) does not count.
    assert!(parse_document(body.as_bytes(), Some("text/plain")).is_ok());
    let zstd = v2_manifest(OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+zstd");
    assert!(parse_document(zstd.as_bytes(), Some(OCI_MANIFEST)).is_ok());
    let weird = v2_manifest(OCI_MANIFEST, "application/x-evil");
    assert!(matches!(
        parse_document(weird.as_bytes(), None),
        Err(ManifestError::LayerType { .. })
    ));
}

#[test]
fn hostile_documents() {
    let too_big = vec![b' '; (MAX_DOCUMENT_BYTES + 1) as usize];
    assert!(matches!(
        parse_document(&too_big, None),
        Err(ManifestError::TooLarge { .. })
    ));
    for bad in [
        &b""[..],
        b"null",
        b"[]",
        b"{\"schemaVersion\":2}",
        b"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\"}",
        b"{\"schemaVersion\":\"2\"}",
        b"\xff\xfe",
    ] {
        assert!(parse_document(bad, None).is_err(), "{bad:?}");
    }
    let traversal = v2_manifest(
        DOCKER_V2,
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    )
    .replace(&format!("sha256:{H2}"), "sha256:../../../../etc/passwd");
    assert!(parse_document(traversal.as_bytes(), None).is_err());
}

#[test]
fn index_and_platform_choice() {
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
        {{"mediaType":"{OCI_MANIFEST}","size":1,"digest":"sha256:{H1}","platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
        {{"mediaType":"{OCI_MANIFEST}","size":1,"digest":"sha256:{H2}","platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
    );
    let p = parse_document(body.as_bytes(), Some(OCI_INDEX)).unwrap();
    let Document::Index(entries) = p.document else {
        panic!("not an index")
    };
    let amd = platform::select(&entries, &"linux/amd64".parse().unwrap()).unwrap();
    assert_eq!(amd.digest.hex(), H2);
    let arm = platform::select(&entries, &"linux/arm64".parse().unwrap()).unwrap();
    assert_eq!(arm.digest.hex(), H1);
    let e = platform::select(&entries, &"linux/s390x".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("linux/arm64/v8") && e.contains("linux/amd64"),
        "{e}"
    );
}

#[test]
fn config_parsing() {
    let cfg = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Entrypoint":["/bin/sh"],"Cmd":["-c","x"],"Env":["A=1"],"User":"daemon","WorkingDir":"/w","ExposedPorts":{{"80/tcp":{{}}}}}},
        "rootfs":{{"type":"layers","diff_ids":["sha256:{H1}"]}}}}"#
    );
    let c = parse_config(cfg.as_bytes()).unwrap();
    assert_eq!(c.runtime.entrypoint, ["/bin/sh"]);
    assert_eq!(c.runtime.cmd, ["-c", "x"]);
    assert_eq!(c.runtime.user.as_deref(), Some("daemon"));
    assert_eq!(c.diff_ids[0].hex(), H1);
    let bad = cfg.replace(&format!("sha256:{H1}"), "sha256:nothex");
    assert!(parse_config(bad.as_bytes()).is_err());
}

/// Builds a schema1 body the way libtrust does: the payload's closing "\n}" is cut off and
/// becomes the formatTail, and the signatures are spliced in where it stood.
pub(crate) fn signed_schema1(payload: &str) -> Vec<u8> {
    let cut = payload.rfind("\n}").expect("pretty payload");
    let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let protected = format!(
        r#"{{"formatLength":{cut},"formatTail":"{}","time":"2016-01-01T00:00:00Z"}}"#,
        enc(&payload.as_bytes()[cut..])
    );
    format!(
        "{},\n   \"signatures\": [{{\"header\":{{\"alg\":\"ES256\"}},\"signature\":\"xx\",\"protected\":\"{}\"}}]\n}}",
        &payload[..cut],
        enc(protected.as_bytes())
    )
    .into_bytes()
}

fn schema1_payload() -> String {
    let top = r#"{\"id\":\"b\",\"parent\":\"a\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"/usr/local/bin/fleetd\"],\"Env\":[\"PATH=/bin\"]}}"#;
    let throwaway = r#"{\"id\":\"t\",\"throwaway\":true}"#;
    let base = r#"{\"id\":\"a\"}"#;
    format!(
        "{{\n   \"schemaVersion\": 1,\n   \"name\": \"coreos/fleet\",\n   \"tag\": \"v1.0.0\",\n   \"architecture\": \"amd64\",\n   \"fsLayers\": [\n      {{\"blobSum\": \"sha256:{H2}\"}},\n      {{\"blobSum\": \"sha256:{H2}\"}},\n      {{\"blobSum\": \"sha256:{H1}\"}}\n   ],\n   \"history\": [\n      {{\"v1Compatibility\": \"{top}\"}},\n      {{\"v1Compatibility\": \"{throwaway}\"}},\n      {{\"v1Compatibility\": \"{base}\"}}\n   ]\n}}"
    )
}

#[test]
fn schema1_canonical_payload_and_layers() {
    let payload = schema1_payload();
    let body = signed_schema1(&payload);
    let p = parse_document(&body, Some(DOCKER_V1_SIGNED)).unwrap();
    assert_eq!(p.canonical, payload.as_bytes());
    assert_eq!(p.digest, Digest::of(payload.as_bytes()));
    assert_ne!(p.digest, Digest::of(&body));
    let Document::Schema1(img) = p.document else {
        panic!("not schema1")
    };
    // Reverse order, throwaway skipped: base (H1) then top (H2).
    let order: Vec<_> = img.layers.iter().map(|l| l.blob.digest.hex()).collect();
    assert_eq!(order, [H1, H2]);
    assert_eq!(img.config.cmd, ["/usr/local/bin/fleetd"]);
    assert!(img.layers.iter().all(|l| l.diff_id.is_none()));
}

#[test]
fn schema1_fields_come_only_from_the_signed_payload() {
    // An attacker edits the unsigned part of the body: the digest and the parsed fields follow
    // the canonical payload, so either the pin fails or nothing changes.
    let payload = schema1_payload();
    let body = String::from_utf8(signed_schema1(&payload)).unwrap();
    let tampered = body.replace(
        "\"signature\":\"xx\"",
        "\"signature\":\"yy\",\"fsLayers\":[]",
    );
    let p = parse_document(tampered.as_bytes(), None).unwrap();
    assert_eq!(p.digest, Digest::of(payload.as_bytes()));
    // A formatLength past the body is refused, not a panic.
    let huge = signed_schema1(&payload);
    let s = String::from_utf8(huge).unwrap();
    let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let bad_prot = enc(br#"{"formatLength":999999,"formatTail":"Cn0"}"#);
    let start = s.find("\"protected\":\"").unwrap() + 13;
    let end = start + s[start..].find('"').unwrap();
    let evil = format!("{}{}{}", &s[..start], bad_prot, &s[end..]);
    assert!(matches!(
        parse_document(evil.as_bytes(), None),
        Err(ManifestError::Schema1(_))
    ));
    // A content type claiming another format is refused.
    assert!(parse_document(payload.as_bytes(), Some(DOCKER_V2)).is_err());
    // Mismatched fsLayers/history lengths.
    let short = payload.replace(&format!(",\n      {{\"blobSum\": \"sha256:{H1}\"}}"), "");
    assert!(parse_document(short.as_bytes(), None).is_err());
}
