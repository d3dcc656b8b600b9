use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};

use super::DavService;

struct Reply {
    status: StatusCode,
    body: String,
}

async fn call(dav: &DavService, root: &Path, method: &str, uri: &str, body: &str) -> Reply {
    call_with(dav, root, method, uri, body, &[]).await
}

async fn call_with(
    dav: &DavService,
    root: &Path,
    method: &str,
    uri: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = dav.serve("vol", root, "/dav/vol", request).await;
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[tokio::test]
async fn put_get_and_ownership() {
    let dir = tempfile::tempdir().unwrap();
    let dav = DavService::new(1000);
    let root = dir.path();
    let r = call(&dav, root, "MKCOL", "/dav/vol/docs/", "").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(&dav, root, "PUT", "/dav/vol/docs/a.txt", "hello").await;
    assert!(r.status.is_success(), "{}", r.status);
    let r = call(&dav, root, "GET", "/dav/vol/docs/a.txt", "").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "hello"));
    if is_root() {
        for path in ["docs", "docs/a.txt"] {
            let meta = std::fs::metadata(root.join(path)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (1000, 1000), "{path}");
        }
    }
    let r = call_with(
        &dav,
        root,
        "PROPFIND",
        "/dav/vol/docs/",
        "",
        &[("Depth", "1")],
    )
    .await;
    assert_eq!(r.status, StatusCode::MULTI_STATUS);
    assert!(r.body.contains("/dav/vol/docs/a.txt"), "{}", r.body);
}

#[tokio::test]
async fn dead_properties_survive_move() {
    let dir = tempfile::tempdir().unwrap();
    let dav = DavService::new(1000);
    let root = dir.path();
    call(&dav, root, "PUT", "/dav/vol/p", "x").await;
    let patch = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:color>blue</Z:color></D:prop></D:set></D:propertyupdate>"#;
    let r = call(&dav, root, "PROPPATCH", "/dav/vol/p", patch).await;
    assert_eq!(r.status, StatusCode::MULTI_STATUS, "{}", r.body);
    let r = call_with(
        &dav,
        root,
        "MOVE",
        "/dav/vol/p",
        "",
        &[("Destination", "http://localhost/dav/vol/q")],
    )
    .await;
    assert!(r.status.is_success(), "{}", r.status);
    let find = r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:z"><D:prop><Z:color/></D:prop></D:propfind>"#;
    let r = call_with(
        &dav,
        root,
        "PROPFIND",
        "/dav/vol/q",
        find,
        &[("Depth", "0")],
    )
    .await;
    assert!(r.body.contains("blue"), "{}", r.body);
}

#[tokio::test]
async fn paths_never_leave_the_volume() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("vol");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(dir.path().join("secret"), "host secret").unwrap();
    std::os::unix::fs::symlink("/", root.join("slash")).unwrap();
    std::os::unix::fs::symlink("../..", root.join("up")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), root.join("direct")).unwrap();
    let dav = DavService::new(1000);
    for uri in [
        "/dav/vol/../secret",
        "/dav/vol/%2e%2e/secret",
        "/dav/vol/%2E%2E%2fsecret",
        "/dav/vol/..%2fsecret",
        "/dav/vol/up/secret",
        "/dav/vol/slash/etc/passwd",
        "/dav/vol/direct",
        "/dav/vol/up/etc/passwd",
    ] {
        let r = call(&dav, &root, "GET", uri, "").await;
        assert!(!r.status.is_success(), "{uri}: {}", r.status);
        assert!(
            !r.body.contains("host secret") && !r.body.contains("root:"),
            "{uri}"
        );
    }
    // Writing through a link lands inside the volume.
    let r = call(&dav, &root, "PUT", "/dav/vol/slash/tmp-x", "inside").await;
    assert!(r.status.is_success(), "{}", r.status);
    assert!(root.join("tmp-x").is_file());
    assert!(!Path::new("/tmp-x").exists());
}
