//! HTTP servers for tests: a programmable front that proxies to a
//! registry, and a forward/CONNECT proxy.

use bytes::Bytes;
use futures_util::TryStreamExt as _;
use http_body_util::{combinators::BoxBody, BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r
}

/// A failure a [`Front`] injects into requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Close the connection without answering (a connection reset).
    Reset,
    /// Send the status, headers (with the full `Content-Length`) and half
    /// the body, then drop the connection.
    Truncate,
    /// Flip the first byte of the body.
    Corrupt,
}

/// Inject `kind` into the first `times` requests with `method` whose path
/// contains `path` (`/token` for token requests).
pub struct Fault {
    /// HTTP method.
    pub method: &'static str,
    /// Substring of the path.
    pub path: String,
    /// What to do.
    pub kind: FaultKind,
    /// How many more requests to do it to.
    pub times: AtomicUsize,
}

impl Fault {
    /// A fault for the first `times` matching requests.
    pub fn new(method: &'static str, path: &str, kind: FaultKind, times: usize) -> Self {
        Fault {
            method,
            path: path.to_string(),
            kind,
            times: AtomicUsize::new(times),
        }
    }
}

/// Response header by which a handler asks [`serve`] to reset the
/// connection instead of answering.
const RESET: &str = "x-front-reset";

/// What a [`Front`] does besides proxying.
#[derive(Default)]
pub struct FrontPolicy {
    /// Failures injected into matching requests (the first matching fault
    /// with requests left applies).
    pub faults: Vec<Fault>,
    /// Require bearer tokens from the front's own `/token` endpoint, issued
    /// to this user and password.
    pub token_auth: Option<(String, String)>,
    /// Answer this many manifest GETs with 500 before proxying.
    pub fail_manifest_gets: AtomicUsize,
    /// Flip one byte of every blob body served.
    pub corrupt_blobs: bool,
    /// Cut this many blob GET bodies short (the connection is dropped
    /// after the first chunk).
    pub drop_blob_gets: AtomicUsize,
}

/// An HTTP front on 127.0.0.1 that applies a [`FrontPolicy`] and proxies
/// to a registry, rewriting `Location` headers to point back at itself.
pub struct Front {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    state: Arc<FrontState>,
}

struct FrontState {
    upstream: String,
    addr: String,
    policy: FrontPolicy,
    http: reqwest::Client,
    log: Mutex<Vec<String>>,
    token_requests: Mutex<Vec<String>>,
}

impl Front {
    /// Start a front for `upstream` (`127.0.0.1:<port>`).
    pub async fn start(upstream: &str, policy: FrontPolicy) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(FrontState {
            upstream: upstream.to_string(),
            addr: addr.clone(),
            policy,
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            log: Mutex::new(Vec::new()),
            token_requests: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        serve(listener, move |req| {
            let st = st.clone();
            async move { st.handle(req).await }
        });
        Front { addr, state }
    }

    /// `METHOD path?query` of every request received, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }

    /// How many requests match `method` and contain `needle` in their path.
    pub fn count(&self, method: &str, needle: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with(&format!("{method} ")) && r.contains(needle))
            .count()
    }

    /// The query strings of token requests received.
    pub fn token_requests(&self) -> Vec<String> {
        self.state.token_requests.lock().unwrap().clone()
    }
}

/// Accept connections forever (until the test's runtime stops), serving
/// each with `handler`.
fn serve<F, Fut>(listener: tokio::net::TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let h = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let h = h.clone();
                    async move {
                        let resp = h(req).await;
                        if resp.headers().contains_key(RESET) {
                            // An error from the service closes the
                            // connection without an answer.
                            return Err(std::io::Error::other("injected connection reset"));
                        }
                        Ok::<_, std::io::Error>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
}

/// The token a test token server issues for these scopes.
fn make_token(scopes: &[String]) -> String {
    format!("tok.{}", hex::encode(scopes.join(" ")))
}

fn token_scopes(token: &str) -> Option<Vec<String>> {
    let hexed = token.strip_prefix("tok.")?;
    let text = String::from_utf8(hex::decode(hexed).ok()?).ok()?;
    Some(
        text.split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    )
}

fn grants(scopes: &[String], repo: &str, action: &str) -> bool {
    scopes.iter().any(|s| {
        s.strip_prefix("repository:")
            .and_then(|r| r.rsplit_once(':'))
            .is_some_and(|(name, actions)| name == repo && actions.split(',').any(|a| a == action))
    })
}

fn query_params(q: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{q}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Repository named by a `/v2/<repo>/(manifests|blobs|tags)/…` path.
fn repo_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .map(|i| &rest[..i])
}

/// Half of `resp`'s body, then an error (hyper drops the connection).
async fn truncate(resp: Response<Body>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    // Half the body; then yield once (hyper flushes the status, headers and
    // that half while the body is pending), then fail the body.
    let frames = futures_util::stream::unfold(0, move |step| {
        let half = half.clone();
        async move {
            match step {
                0 => Some((Ok(Frame::data(half)), 1)),
                1 => {
                    tokio::task::yield_now().await;
                    Some((Err(BoxError::from("injected truncation")), 2))
                }
                _ => None,
            }
        }
    });
    let mut r = Response::from_parts(parts, StreamBody::new(frames).boxed());
    r.headers_mut().insert("content-length", bytes.len().into());
    r
}

/// `resp` with the first byte of its body flipped.
async fn corrupt(resp: Response<Body>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut v = bytes.to_vec();
    if let Some(b) = v.first_mut() {
        *b ^= 0xff;
    }
    Response::from_parts(
        parts,
        Full::new(Bytes::from(v)).map_err(|e| match e {}).boxed(),
    )
}

impl FrontState {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let fault = self.policy.faults.iter().find_map(|f| {
            let hit = req.method().as_str() == f.method
                && path.contains(&f.path)
                && f.times
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            hit.then_some(f.kind)
        });
        if fault == Some(FaultKind::Reset) {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} {path}?reset", req.method()));
            let mut r = full(StatusCode::OK, "");
            r.headers_mut().insert(RESET, "1".parse().unwrap());
            return r;
        }
        let resp = self.handle_inner(req).await;
        match fault {
            Some(FaultKind::Truncate) => truncate(resp).await,
            Some(FaultKind::Corrupt) => corrupt(resp).await,
            _ => resp,
        }
    }

    async fn handle_inner(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let method = req.method().clone();
        self.log
            .lock()
            .unwrap()
            .push(format!("{method} {path}?{query}"));
        if let Some((user, pass)) = &self.policy.token_auth {
            if path == "/token" {
                return self.issue_token(&req, &query, user, pass);
            }
            if let Some(denied) = self.check_token(&req, &path, &query) {
                return denied;
            }
        }
        if method == hyper::Method::GET && path.contains("/manifests/") {
            let left = &self.policy.fail_manifest_gets;
            if left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return full(StatusCode::INTERNAL_SERVER_ERROR, "injected failure");
            }
        }
        let blob_get = method == hyper::Method::GET && path.contains("/blobs/sha256:");
        let corrupt = self.policy.corrupt_blobs && blob_get;
        let drop = blob_get
            && self
                .policy
                .drop_blob_gets
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        let resp = self.forward(req, &path, &query, corrupt).await;
        if !drop {
            return resp;
        }
        // Send half of the body, then fail it: hyper drops the connection
        // mid-response.
        let (parts, body) = resp.into_parts();
        let len: usize = parts
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut left = len / 2;
        let cut = http_body_util::BodyStream::new(body).and_then(move |f| {
            let r = match f.into_data() {
                Ok(data) if left > 0 => {
                    let n = data.len().min(left);
                    left -= n;
                    Ok(Frame::data(data.slice(..n)))
                }
                _ => Err(BoxError::from("injected connection drop")),
            };
            std::future::ready(r)
        });
        Response::from_parts(parts, StreamBody::new(cut).boxed())
    }

    fn issue_token(
        &self,
        req: &Request<Incoming>,
        query: &str,
        user: &str,
        pass: &str,
    ) -> Response<Body> {
        self.token_requests.lock().unwrap().push(query.to_string());
        use base64::Engine as _;
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        let got = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if got != Some(want.as_str()) {
            return full(
                StatusCode::UNAUTHORIZED,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}"#,
            );
        }
        let scopes: Vec<String> = query_params(query)
            .into_iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
            .collect();
        let body = serde_json::json!({"token": make_token(&scopes), "expires_in": 300});
        full(StatusCode::OK, body.to_string())
    }

    /// `None` when the request carries a token good enough for it.
    fn check_token(
        &self,
        req: &Request<Incoming>,
        path: &str,
        query: &str,
    ) -> Option<Response<Body>> {
        let scopes = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(token_scopes);
        let repo = repo_of(path);
        let action = match *req.method() {
            hyper::Method::GET | hyper::Method::HEAD => "pull",
            _ => "push",
        };
        let mount_from = query_params(query)
            .into_iter()
            .find(|(k, _)| k == "from")
            .map(|(_, v)| v);
        let ok = match (&scopes, repo) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(s), Some(repo)) => {
                grants(s, repo, action)
                    && mount_from
                        .as_deref()
                        .is_none_or(|src| grants(s, src, "pull"))
            }
        };
        if ok {
            return None;
        }
        let mut challenge = format!(
            r#"Bearer realm="http://{}/token",service="rbuild-test""#,
            self.addr
        );
        if let Some(repo) = repo {
            challenge.push_str(&format!(r#",scope="repository:{repo}:{action}""#));
        }
        let mut r = full(
            StatusCode::UNAUTHORIZED,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
        r.headers_mut()
            .insert("www-authenticate", challenge.parse().unwrap());
        Some(r)
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        path: &str,
        query: &str,
        corrupt: bool,
    ) -> Response<Body> {
        forward_to(
            &self.http,
            &self.upstream,
            &self.addr,
            req,
            path,
            query,
            corrupt,
        )
        .await
    }
}

/// Send `req` to `http://upstream{path}?{query}` and stream the answer back,
/// rewriting `Location` from `upstream` to `public`.
async fn forward_to(
    http: &reqwest::Client,
    upstream: &str,
    public: &str,
    req: Request<Incoming>,
    path: &str,
    query: &str,
    corrupt: bool,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let url = if query.is_empty() {
        format!("http://{upstream}{path}")
    } else {
        format!("http://{upstream}{path}?{query}")
    };
    let mut rb = http.request(parts.method.clone(), &url);
    for (k, v) in &parts.headers {
        if !matches!(
            k.as_str(),
            "host" | "connection" | "transfer-encoding" | "authorization" | "proxy-connection"
        ) {
            rb = rb.header(k, v);
        }
    }
    let len = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let has_body = len.is_some_and(|l| l > 0) || parts.headers.contains_key("transfer-encoding");
    if has_body {
        rb = rb.body(reqwest::Body::wrap_stream(
            http_body_util::BodyDataStream::new(body),
        ));
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return full(StatusCode::BAD_GATEWAY, format!("front: {e}")),
    };
    let mut out = Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        if matches!(k.as_str(), "connection" | "transfer-encoding") {
            continue;
        }
        if k.as_str() == "location" {
            let loc = v.to_str().unwrap_or("").replace(upstream, public);
            out = out.header(k, loc);
        } else {
            out = out.header(k, v);
        }
    }
    let mut flipped = !corrupt;
    let stream = resp
        .bytes_stream()
        .map_err(BoxError::from)
        .map_ok(move |b| {
            if !flipped && !b.is_empty() {
                flipped = true;
                let mut v = b.to_vec();
                v[0] ^= 0xff;
                Frame::data(Bytes::from(v))
            } else {
                Frame::data(b)
            }
        });
    out.body(StreamBody::new(stream).boxed()).unwrap()
}

/// A forward proxy on 127.0.0.1: absolute-form requests are forwarded and
/// CONNECT is tunnelled; host names are mapped through `hosts` (so a test
/// can use a name that only the proxy knows).
pub struct ForwardProxy {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    forwarded: Arc<AtomicUsize>,
    connects: Arc<AtomicUsize>,
}

impl ForwardProxy {
    /// Start a proxy mapping `name:port` authorities to real addresses.
    pub async fn start(hosts: BTreeMap<String, String>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let forwarded = Arc::new(AtomicUsize::new(0));
        let connects = Arc::new(AtomicUsize::new(0));
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let hosts = Arc::new(hosts);
        let (f, c) = (forwarded.clone(), connects.clone());
        serve(listener, move |req: Request<Incoming>| {
            let (hosts, http, f, c) = (hosts.clone(), http.clone(), f.clone(), c.clone());
            async move {
                let authority = req
                    .uri()
                    .authority()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let Some(target) = hosts.get(&authority).cloned() else {
                    return full(
                        StatusCode::BAD_GATEWAY,
                        format!("proxy: unknown host {authority}"),
                    );
                };
                if req.method() == hyper::Method::CONNECT {
                    c.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        if let Ok(upgraded) = hyper::upgrade::on(req).await {
                            if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                                let mut client = TokioIo::new(upgraded);
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        }
                    });
                    return full(StatusCode::OK, Bytes::new());
                }
                f.fetch_add(1, Ordering::SeqCst);
                let path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or("").to_string();
                forward_to(&http, &target, &authority, req, &path, &query, false).await
            }
        });
        ForwardProxy {
            addr,
            forwarded,
            connects,
        }
    }

    /// Plain (absolute-form) requests forwarded so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }

    /// CONNECT tunnels opened so far.
    pub fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }
}
