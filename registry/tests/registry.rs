//! End-to-end tests against Debian's `docker-registry` on 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rbuild_registry::{
    Client, Credential, ErrorKind, Platform, ProxyConfig, PushImage, PushOptions, Reference,
    RegistryHost,
};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;

fn amd64() -> Platform {
    Platform::parse("linux/amd64").unwrap()
}

fn reference(addr: &str, repo_tag: &str) -> Reference {
    Reference::parse(&format!("{addr}/{repo_tag}")).unwrap()
}

#[tokio::test]
async fn push_then_pull_round_trip() {
    let reg = Registry::start().await;
    let (_d1, src) = temp_store();
    // 2.5 MiB is over the test chunk threshold (1 MiB): uploaded in PATCHes.
    let img = make_image(&src, "amd64", &[(5 << 20) / 2, 100_000, 10], 1);
    let client = Client::new(test_config()).unwrap();
    let r = reference(&reg.addr, "test/app:v1");
    let digest = client
        .push_image(&r, &src, &img.manifest, &img.media_type, &img.blobs())
        .await
        .unwrap_or_else(|e| panic!("push: {e}\n{}", reg.log()));
    assert_eq!(digest, img.digest());
    // A second push finds every blob present and succeeds.
    let r2 = reference(&reg.addr, "test/app:v2");
    client
        .push_image(&r2, &src, &img.manifest, &img.media_type, &img.blobs())
        .await
        .unwrap();

    let resolved = client.resolve(&r, &amd64()).await.unwrap();
    assert_eq!(resolved.manifest_digest, digest);
    assert_eq!(resolved.manifest, img.manifest);
    assert_eq!(resolved.manifest_media_type, img.media_type);
    assert_eq!(resolved.config_digest, img.config.digest);
    assert_eq!(resolved.layers, img.layers);

    let (_d2, dst) = temp_store();
    let pulled = Client::new(test_config())
        .unwrap()
        .pull(&r, &amd64(), &dst)
        .await
        .unwrap();
    assert_eq!(pulled, resolved);
    assert_same_blobs(&src, &dst, &img.blobs());
    assert_eq!(dst.read_blob(&digest).unwrap(), img.manifest);
    assert_eq!(ingest_leftovers(&dst), 0);

    // By digest, too.
    let by_digest = Reference::parse(&format!("{}/test/app@{digest}", reg.addr)).unwrap();
    assert_eq!(
        client
            .resolve(&by_digest, &amd64())
            .await
            .unwrap()
            .manifest_digest,
        digest
    );

    // Missing things have kind NotFound.
    let missing = reference(&reg.addr, "test/app:nope");
    let e = client.resolve(&missing, &amd64()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let mut ghost = img.layers[2].clone();
    ghost.digest = rbuild_registry::Digest::sha256_of(b"ghost");
    let e = client.fetch_blob(&r, &ghost, &dst).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[tokio::test]
async fn multi_platform_index_selects_platform() {
    let reg = Registry::start().await;
    let (_d, store) = temp_store();
    let a = make_image(&store, "amd64", &[1000], 2);
    let b = make_image(&store, "arm64", &[2000], 3);
    let entry = |img: &TestImage, arch: &str, variant: Option<&str>| {
        let mut d = rbuild_registry::Descriptor::new(
            &img.media_type,
            img.digest(),
            img.manifest.len() as u64,
        );
        let mut p = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        d.platform = Some(p);
        d
    };
    let ea = entry(&a, "amd64", None);
    let eb = entry(&b, "arm64", Some("v8"));
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": rbuild_registry::media::OCI_INDEX,
        "manifests": [ea, eb],
    }))
    .unwrap();
    let client = Client::new(test_config()).unwrap();
    let r = reference(&reg.addr, "multi/app:latest");
    let images = [
        PushImage {
            manifest: ea.clone(),
            blobs: a.blobs(),
        },
        PushImage {
            manifest: eb.clone(),
            blobs: b.blobs(),
        },
    ];
    let d = client
        .push_index(
            &r,
            &store,
            &index,
            rbuild_registry::media::OCI_INDEX,
            &images,
            &PushOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(d, rbuild_registry::Digest::sha256_of(&index));

    let got = client
        .resolve(&r, &Platform::parse("linux/arm64").unwrap())
        .await
        .unwrap();
    assert_eq!(got.manifest_digest, b.digest());
    assert_eq!(got.layers, b.layers);
    let got = client.resolve(&r, &amd64()).await.unwrap();
    assert_eq!(got.manifest_digest, a.digest());
    let e = client
        .resolve(&r, &Platform::parse("linux/s390x").unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PlatformNotFound);
    assert!(e.to_string().contains("linux/arm64/v8"), "{e}");
}

#[tokio::test]
async fn basic_auth_with_htpasswd_and_login() {
    let reg = Registry::start_with_htpasswd("alice", "s3cret").await;
    let (_d, store) = temp_store();
    let img = make_image(&store, "amd64", &[5000], 4);
    let r = reference(&reg.addr, "private/app:1");

    // No credentials: a clear 401 naming the registry.
    let anon = Client::new(test_config()).unwrap();
    let e = anon
        .push_image(&r, &store, &img.manifest, &img.media_type, &img.blobs())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(
        e.to_string().contains(&reg.addr) && e.to_string().contains("401"),
        "{e}"
    );

    // Wrong password.
    let mut cfg = test_config();
    cfg.credentials.insert(
        reg.addr.clone(),
        Credential {
            username: "alice".into(),
            password: "wrong".into(),
        },
    );
    let e = Client::new(cfg)
        .unwrap()
        .resolve(&r, &amd64())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&reg.addr) && msg.contains("401") && msg.contains("alice"),
        "{msg}"
    );

    // login: wrong password is refused and nothing is written.
    let docker_dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config();
    cfg.docker_config_dir = Some(docker_dir.path().to_path_buf());
    let client = Client::new(cfg.clone()).unwrap();
    let e = client
        .login(&reg.addr, "alice", "wrong", true)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(!docker_dir.path().join("config.json").exists());
    client
        .login(&reg.addr, "alice", "s3cret", true)
        .await
        .unwrap();
    let written = std::fs::read_to_string(docker_dir.path().join("config.json")).unwrap();
    assert!(written.contains(&reg.addr), "{written}");

    // The stored credentials work for push and pull.
    let client = Client::new(cfg.clone()).unwrap();
    client
        .push_image(&r, &store, &img.manifest, &img.media_type, &img.blobs())
        .await
        .unwrap();
    let (_d2, dst) = temp_store();
    client.pull(&r, &amd64(), &dst).await.unwrap();
    assert_same_blobs(&store, &dst, &img.blobs());

    assert!(client.logout(&reg.addr).await.unwrap());
    let e = Client::new(cfg)
        .unwrap()
        .resolve(&r, &amd64())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
}

#[tokio::test]
async fn bearer_token_auth_scopes_caching_and_mount() {
    let reg = Registry::start().await;
    let front = Front::start(
        &reg.addr,
        FrontPolicy {
            token_auth: Some(("bob".into(), "pw".into())),
            ..Default::default()
        },
    )
    .await;
    let (_d, store) = temp_store();
    // 1.5 MiB is over the test chunk threshold: uploaded in 4 PATCHes.
    let img = make_image(&store, "amd64", &[3000, 4000, (3 << 20) / 2], 5);
    let mut cfg = test_config();
    cfg.credentials.insert(
        front.addr.clone(),
        Credential {
            username: "bob".into(),
            password: "pw".into(),
        },
    );
    let client = Client::new(cfg.clone()).unwrap();
    let src = reference(&front.addr, "team/base:1");
    client
        .push_image(&src, &store, &img.manifest, &img.media_type, &img.blobs())
        .await
        .unwrap();
    let push_tokens = front.token_requests();
    assert_eq!(
        push_tokens.len(),
        1,
        "one token for the whole push: {push_tokens:?}"
    );
    assert!(push_tokens[0].contains("pull%2Cpush"), "{push_tokens:?}");
    assert_eq!(front.count("PATCH", "/team/base/blobs/uploads/"), 4);

    // Cross-repository mount: every blob is mounted, none uploaded; the
    // token covers pull on the source repository.
    let dst = reference(&front.addr, "team/derived:1");
    let mut opts = PushOptions::default();
    for b in img.blobs() {
        opts.mount_from.insert(b.digest, "team/base".into());
    }
    client
        .push_image_with(
            &dst,
            &store,
            &img.manifest,
            &img.media_type,
            &img.blobs(),
            &opts,
        )
        .await
        .unwrap();
    assert_eq!(
        front.count("POST", "/team/derived/blobs/uploads/?mount="),
        4
    );
    assert_eq!(front.count("PUT", "/team/derived/blobs/uploads/"), 0);
    let last_token = front.token_requests().last().cloned().unwrap();
    assert!(
        last_token.contains("repository%3Ateam%2Fbase%3Apull"),
        "{last_token}"
    );

    // Pull with a fresh client: one token for the pull scope.
    let before = front.token_requests().len();
    let (_d2, out) = temp_store();
    Client::new(cfg)
        .unwrap()
        .pull(&dst, &amd64(), &out)
        .await
        .unwrap();
    assert_same_blobs(&store, &out, &img.blobs());
    assert_eq!(
        front.token_requests().len() - before,
        1,
        "{:?}",
        front.token_requests()
    );

    // Wrong password: Unauthorized naming the registry.
    let mut bad = test_config();
    bad.credentials.insert(
        front.addr.clone(),
        Credential {
            username: "bob".into(),
            password: "nope".into(),
        },
    );
    let e = Client::new(bad)
        .unwrap()
        .resolve(&src, &amd64())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(e.to_string().contains(&front.addr), "{e}");
}

#[tokio::test]
async fn mirror_without_the_image_falls_back_to_primary() {
    let primary = Registry::start().await;
    let mirror = Registry::start().await;
    let mirror_front = Front::start(&mirror.addr, FrontPolicy::default()).await;
    let (_d, store) = temp_store();
    let img = make_image(&store, "amd64", &[7000], 6);
    let r = reference(&primary.addr, "lib/app:1");
    Client::new(test_config())
        .unwrap()
        .push_image(&r, &store, &img.manifest, &img.media_type, &img.blobs())
        .await
        .unwrap();

    let mut cfg = test_config();
    cfg.registries.insert(
        primary.addr.clone(),
        RegistryHost {
            mirrors: vec![format!("http://{}", mirror_front.addr)],
            ..Default::default()
        },
    );
    let (_d2, out) = temp_store();
    Client::new(cfg)
        .unwrap()
        .pull(&r, &amd64(), &out)
        .await
        .unwrap();
    assert_same_blobs(&store, &out, &img.blobs());
    assert!(
        mirror_front.count("GET", "/v2/lib/app/manifests/1") >= 1,
        "{:?}",
        mirror_front.requests()
    );
}

#[tokio::test]
async fn mirror_with_the_image_is_used_first() {
    let mirror = Registry::start().await;
    let (_d, store) = temp_store();
    let img = make_image(&store, "amd64", &[7000], 7);
    let in_mirror = reference(&mirror.addr, "lib/app:1");
    Client::new(test_config())
        .unwrap()
        .push_image(
            &in_mirror,
            &store,
            &img.manifest,
            &img.media_type,
            &img.blobs(),
        )
        .await
        .unwrap();
    // The primary is not running at all.
    let primary = dead_addr().to_string();
    let mut cfg = test_config();
    cfg.registries.insert(
        primary.clone(),
        RegistryHost {
            mirrors: vec![format!("http://{}", mirror.addr)],
            ..Default::default()
        },
    );
    let (_d2, out) = temp_store();
    Client::new(cfg)
        .unwrap()
        .pull(&reference(&primary, "lib/app:1"), &amd64(), &out)
        .await
        .unwrap();
    assert_same_blobs(&store, &out, &img.blobs());
}

#[tokio::test]
async fn every_request_goes_through_the_configured_proxy() {
    let reg = Registry::start().await;
    let port = reg.addr.rsplit_once(':').unwrap().1;
    // A name only the proxy can resolve: a request that bypassed the proxy
    // could not reach the registry.
    let name = format!("registry.invalid:{port}");
    let proxy = ForwardProxy::start(BTreeMap::from([(name.clone(), reg.addr.clone())])).await;
    let mut cfg = test_config();
    cfg.proxy = ProxyConfig {
        http: Some(format!("http://{}", proxy.addr)),
        https: Some(format!("http://{}", proxy.addr)),
        no_proxy: Some("localhost,127.0.0.1".into()),
    };
    cfg.registries.insert(
        name.clone(),
        RegistryHost {
            insecure: true,
            ..Default::default()
        },
    );
    let (_d, store) = temp_store();
    let img = make_image(&store, "amd64", &[(3 << 20) / 2, 10], 8);
    let r = reference(&name, "via/proxy:1");
    let client = Client::new(cfg).unwrap();
    client
        .push_image(&r, &store, &img.manifest, &img.media_type, &img.blobs())
        .await
        .unwrap();
    let (_d2, out) = temp_store();
    client.pull(&r, &amd64(), &out).await.unwrap();
    assert_same_blobs(&store, &out, &img.blobs());
    // https was tried first through a CONNECT tunnel, then plain http.
    assert!(proxy.connects() >= 1, "connects: {}", proxy.connects());
    assert!(proxy.forwarded() >= 10, "forwarded: {}", proxy.forwarded());
}

#[tokio::test]
async fn https_registry_through_connect_proxy_with_ca_or_insecure() {
    let tls = TestTls::generate("tls.invalid");
    let reg = Registry::start_tls(&tls).await;
    let port = reg.addr.rsplit_once(':').unwrap().1;
    let name = format!("tls.invalid:{port}");
    let proxy = ForwardProxy::start(BTreeMap::from([(name.clone(), reg.addr.clone())])).await;
    let base = || {
        let mut cfg = test_config();
        cfg.max_attempts = 2;
        cfg.proxy = ProxyConfig {
            http: Some(format!("http://{}", proxy.addr)),
            https: Some(format!("http://{}", proxy.addr)),
            no_proxy: None,
        };
        cfg
    };
    let (_d, store) = temp_store();
    let img = make_image(&store, "amd64", &[50_000], 12);
    let r = reference(&name, "tls/app:1");

    // Unknown CA: refused.
    let e = Client::new(base())
        .unwrap()
        .push_image(&r, &store, &img.manifest, &img.media_type, &img.blobs())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network, "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    // The test CA configured: verified TLS works for push and pull.
    let mut cfg = base();
    cfg.ca_files = vec![tls.ca.clone()];
    let client = Client::new(cfg).unwrap();
    client
        .push_image(&r, &store, &img.manifest, &img.media_type, &img.blobs())
        .await
        .unwrap();
    let (_d2, out) = temp_store();
    client.pull(&r, &amd64(), &out).await.unwrap();
    assert_same_blobs(&store, &out, &img.blobs());

    // Insecure (unverified TLS) without the CA works too.
    let mut cfg = base();
    cfg.registries.insert(
        name.clone(),
        RegistryHost {
            insecure: true,
            ..Default::default()
        },
    );
    let (_d3, out) = temp_store();
    Client::new(cfg)
        .unwrap()
        .pull(&r, &amd64(), &out)
        .await
        .unwrap();
    assert_same_blobs(&store, &out, &img.blobs());
    // https only: everything was tunnelled.
    assert!(proxy.connects() >= 3, "connects: {}", proxy.connects());
    assert_eq!(proxy.forwarded(), 0);

    // A CA file that is not PEM is a configuration error at construction.
    let mut cfg = base();
    cfg.ca_files = vec![tls.key.with_file_name("ext.cnf")];
    let e = Client::new(cfg).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

#[tokio::test]
async fn server_errors_are_retried_with_a_bound() {
    let reg = Registry::start().await;
    let (_d, store) = temp_store();
    let img = make_image(&store, "amd64", &[100], 9);
    let r0 = reference(&reg.addr, "retry/app:1");
    Client::new(test_config())
        .unwrap()
        .push_image(&r0, &store, &img.manifest, &img.media_type, &img.blobs())
        .await
        .unwrap();

    let front = Front::start(
        &reg.addr,
        FrontPolicy {
            fail_manifest_gets: AtomicUsize::new(2),
            ..Default::default()
        },
    )
    .await;
    let r = reference(&front.addr, "retry/app:1");
    let got = Client::new(test_config())
        .unwrap()
        .resolve(&r, &amd64())
        .await
        .unwrap();
    assert_eq!(got.manifest_digest, img.digest());
    assert_eq!(front.count("GET", "/manifests/"), 3);

    let always = Front::start(
        &reg.addr,
        FrontPolicy {
            fail_manifest_gets: AtomicUsize::new(1000),
            ..Default::default()
        },
    )
    .await;
    let mut cfg = test_config();
    cfg.max_attempts = 3;
    let e = Client::new(cfg)
        .unwrap()
        .resolve(&reference(&always.addr, "retry/app:1"), &amd64())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network, "{e}");
    assert!(e.to_string().contains("500"), "{e}");
    assert_eq!(always.count("GET", "/manifests/"), 3);
}

#[tokio::test]
async fn corrupted_blob_is_rejected_and_not_stored() {
    let reg = Registry::start().await;
    let (_d, store) = temp_store();
    let img = make_image(&store, "amd64", &[300_000], 10);
    let r0 = reference(&reg.addr, "bad/app:1");
    Client::new(test_config())
        .unwrap()
        .push_image(&r0, &store, &img.manifest, &img.media_type, &img.blobs())
        .await
        .unwrap();
    let front = Front::start(
        &reg.addr,
        FrontPolicy {
            corrupt_blobs: true,
            ..Default::default()
        },
    )
    .await;
    let r = reference(&front.addr, "bad/app:1");
    let client = Client::new(test_config()).unwrap();
    let (_d2, out) = temp_store();
    let layer = &img.layers[0];
    let e = client.fetch_blob(&r, layer, &out).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert!(!out.contains(&layer.digest));
    assert_eq!(out.list().unwrap(), vec![]);
    assert_eq!(ingest_leftovers(&out), 0);
    // The config is verified too, so resolve fails the same way.
    let e = client.pull(&r, &amd64(), &out).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Integrity, "{e}");
    assert_eq!(out.list().unwrap(), vec![]);
}

#[tokio::test]
async fn dropped_connections_are_retried() {
    let reg = Registry::start().await;
    let (_d, store) = temp_store();
    let img = make_image(&store, "amd64", &[2 << 20], 11);
    let r0 = reference(&reg.addr, "drop/app:1");
    Client::new(test_config())
        .unwrap()
        .push_image(&r0, &store, &img.manifest, &img.media_type, &img.blobs())
        .await
        .unwrap();
    let front = Front::start(
        &reg.addr,
        FrontPolicy {
            drop_blob_gets: AtomicUsize::new(2),
            ..Default::default()
        },
    )
    .await;
    let r = reference(&front.addr, "drop/app:1");
    let (_d2, out) = temp_store();
    Client::new(test_config())
        .unwrap()
        .pull(&r, &amd64(), &out)
        .await
        .unwrap();
    assert_same_blobs(&store, &out, &img.blobs());
    assert_eq!(ingest_leftovers(&out), 0);
    // Config and layer: 2 blobs, 2 dropped answers retried.
    assert_eq!(
        front.count("GET", "/blobs/sha256:"),
        4,
        "{:?}",
        front.requests()
    );
}

/// The futures callers spawn onto a multi-threaded runtime must be `Send`.
#[allow(dead_code)]
fn futures_are_send(
    c: &Client,
    r: &Reference,
    s: &rbuild_registry::ContentStore,
    d: &rbuild_registry::Descriptor,
) {
    fn send<T: Send>(_: T) {}
    send(c.resolve(r, &amd64()));
    send(c.fetch_blob(r, d, s));
    send(c.pull(r, &amd64(), s));
    send(c.push_image(r, s, b"", "", &[]));
    send(c.login("x", "u", "p", true));
}
