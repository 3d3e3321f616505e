//! Every GET is retried like blob downloads are: a connection reset, a
//! body cut short (shorter than its `Content-Length`) or one failing its
//! digest is fetched again; a failure that persists names the URL.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rbuild_registry::{Client, Credential, ErrorKind, Platform, Reference};

fn amd64() -> Platform {
    Platform::parse("linux/amd64").unwrap()
}

/// A registry with `retry/app:1` pushed, and a front injecting `faults`.
async fn setup(
    faults: impl FnOnce(&TestImage) -> Vec<Fault>,
    token_auth: bool,
) -> (Registry, Front, TestImage, tempfile::TempDir) {
    let reg = Registry::start().await;
    let (dir, store) = temp_store();
    let img = make_image(&store, "amd64", &[200_000], 21);
    let r = Reference::parse(&format!("{}/retry/app:1", reg.addr)).unwrap();
    Client::new(test_config())
        .unwrap()
        .push_image(&r, &store, &img.manifest, &img.media_type, &img.blobs())
        .await
        .unwrap();
    let front = Front::start(
        &reg.addr,
        FrontPolicy {
            faults: faults(&img),
            token_auth: token_auth.then(|| ("bob".into(), "pw".into())),
            ..Default::default()
        },
    )
    .await;
    (reg, front, img, dir)
}

fn client(front: &Front, max_attempts: u32) -> Client {
    let mut cfg = test_config();
    cfg.max_attempts = max_attempts;
    cfg.credentials.insert(
        front.addr.clone(),
        Credential {
            username: "bob".into(),
            password: "pw".into(),
        },
    );
    Client::new(cfg).unwrap()
}

fn app(front: &Front) -> Reference {
    Reference::parse(&format!("{}/retry/app:1", front.addr)).unwrap()
}

/// Regression: a manifest or config body cut short failed the pull (only
/// layer blobs were fetched again).
#[tokio::test]
async fn manifest_and_config_cut_short_or_reset_once_are_fetched_again() {
    let (_reg, front, img, _d) = setup(
        |img| {
            let config = format!("/blobs/{}", img.config.digest);
            vec![
                Fault::new("GET", "/manifests/", FaultKind::Reset, 1),
                Fault::new("GET", "/manifests/", FaultKind::Truncate, 1),
                Fault::new("GET", &config, FaultKind::Truncate, 1),
                Fault::new("GET", &config, FaultKind::Corrupt, 1),
            ]
        },
        false,
    )
    .await;
    let (_d2, out) = temp_store();
    let got = client(&front, 4)
        .pull(&app(&front), &amd64(), &out)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{:?}", front.requests()));
    assert_eq!(got.manifest_digest, img.digest());
    assert_eq!(
        front.count("GET", "/manifests/"),
        3,
        "{:?}",
        front.requests()
    );
    let config = format!("/blobs/{}", img.config.digest);
    assert_eq!(front.count("GET", &config), 3, "{:?}", front.requests());
}

/// Regression: a token body cut short failed the request.
#[tokio::test]
async fn token_fetch_reset_or_cut_short_once_is_fetched_again() {
    let (_reg, front, img, _d) = setup(
        |_| {
            vec![
                Fault::new("GET", "/token", FaultKind::Reset, 1),
                Fault::new("GET", "/token", FaultKind::Truncate, 1),
            ]
        },
        true,
    )
    .await;
    let got = client(&front, 4)
        .resolve(&app(&front), &amd64())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{:?}", front.requests()));
    assert_eq!(got.manifest_digest, img.digest());
    assert_eq!(front.count("GET", "/token"), 3, "{:?}", front.requests());
}

/// A layer that fails its digest once (a corrupted transfer) is fetched
/// again; nothing corrupt is stored.
#[tokio::test]
async fn layer_failing_its_digest_once_is_fetched_again() {
    let (_reg, front, img, _d) = setup(
        |img| {
            let layer = format!("/blobs/{}", img.layers[0].digest);
            vec![Fault::new("GET", &layer, FaultKind::Corrupt, 1)]
        },
        false,
    )
    .await;
    let (_d2, out) = temp_store();
    client(&front, 4)
        .fetch_blob(&app(&front), &img.layers[0], &out)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{:?}", front.requests()));
    assert!(out.contains(&img.layers[0].digest));
    let layer = format!("/blobs/{}", img.layers[0].digest);
    assert_eq!(front.count("GET", &layer), 2);
}

#[tokio::test]
async fn persistent_failures_name_the_url_after_every_attempt() {
    let (_reg, front, _img, _d) = setup(
        |_| vec![Fault::new("GET", "/manifests/", FaultKind::Truncate, 1000)],
        false,
    )
    .await;
    let e = client(&front, 3)
        .resolve(&app(&front), &amd64())
        .await
        .unwrap_err();
    let url = format!("http://{}/v2/retry/app/manifests/1", front.addr);
    let msg = e.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains("reading the body of GET"), "{msg}");
    assert!(msg.contains("(after 3 attempts)"), "{msg}");
    assert_eq!(e.kind(), ErrorKind::Network, "{msg}");
    assert_eq!(front.count("GET", "/manifests/"), 3);

    let (_reg, front, _img, _d) = setup(
        |_| vec![Fault::new("GET", "/manifests/", FaultKind::Reset, 1000)],
        false,
    )
    .await;
    let e = client(&front, 3)
        .resolve(&app(&front), &amd64())
        .await
        .unwrap_err();
    let url = format!("http://{}/v2/retry/app/manifests/1", front.addr);
    assert!(e.to_string().contains(&url), "{e}");
    assert_eq!(front.count("GET", "/manifests/"), 3);
}
